package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// OpenBackendOptions configure OpenBackend.
type OpenBackendOptions struct {
	// Create makes a local directory (and its parents) when missing; set
	// it for `pool init`, leave it off when opening so a mistyped path is
	// "no pool there" rather than a new empty directory.
	Create bool
	// Decorate is the base decorator configuration; a scheme may add its
	// defaults (S3: retries) and URL query parameters override both.
	Decorate DecorateOptions
	// Getenv looks up credentials (CAIRN_S3_ACCESS_KEY,
	// CAIRN_S3_SECRET_KEY); os.Getenv when nil.
	Getenv func(string) string
	// OpenRetries is how often opening a remote store (S3: the bucket
	// check) is retried after a transient failure — 503, SlowDown, a
	// reset or refused connection, no answer within OpenTimeout — with
	// the decorator's backoff (Decorate.RetryBase doubling up to RetryMax,
	// jittered; Decorate.Sleep). 0 means DefaultOpenRetries, negative
	// none; the URL parameter open_retries=N overrides it. OpenTimeout
	// bounds each attempt (default 30s). A host name that does not
	// resolve, refused credentials or a missing bucket fail at once.
	OpenRetries int
	OpenTimeout time.Duration
}

// DefaultOpenRetries: with the default backoff (100ms doubling, capped at
// 10s, each delay 50–100% of its step) opening gives up after 9 attempts
// and at most 22.7s of waiting (about 17s on average).
const DefaultOpenRetries = 8

// A BackendFactory opens a backend for a parsed location URL. It returns
// the backend and the decorator settings it wants (its defaults merged
// with o.Decorate and the URL's query); OpenBackend applies them.
type BackendFactory func(ctx context.Context, u *url.URL, o OpenBackendOptions) (Backend, DecorateOptions, error)

var (
	factoriesMu sync.RWMutex
	factories   = map[string]BackendFactory{}
)

// RegisterBackend makes a backend available to OpenBackend under a URL
// scheme. It panics on a duplicate, like database/sql.Register.
func RegisterBackend(scheme string, f BackendFactory) {
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	if _, dup := factories[scheme]; dup {
		panic("pool: backend scheme registered twice: " + scheme)
	}
	factories[scheme] = f
}

// BackendSchemes lists the registered schemes.
func BackendSchemes() []string {
	factoriesMu.RLock()
	defer factoriesMu.RUnlock()
	var s []string
	for k := range factories {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

func init() {
	RegisterBackend("file", openDir)
	RegisterBackend("s3", openS3)
}

// OpenBackend opens a location — a plain path or file:///path for a local
// directory, or s3://[access:secret@]host:port/bucket[/prefix]?region=…&insecure=1
// — and wraps it in its decorators (Decorate, the one place they are
// composed). Common query parameters: retries=N, verify=1, rps=F,
// burst=N, concurrency=N, retry_base=DURATION; s3 also takes
// open_retries=N (see OpenBackendOptions.OpenRetries: opening is retried
// through 503s, SlowDown, timeouts and refused connections). Errors never
// contain the credentials.
func OpenBackend(ctx context.Context, location string, o OpenBackendOptions) (Backend, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	var u *url.URL
	if !strings.Contains(location, "://") {
		if location == "" {
			return nil, fmt.Errorf("open storage: empty location")
		}
		u = &url.URL{Scheme: "file", Path: location}
	} else {
		var err error
		u, err = url.Parse(location)
		if err != nil {
			return nil, fmt.Errorf("open storage %s: bad URL", RedactLocation(location))
		}
	}
	factoriesMu.RLock()
	f := factories[u.Scheme]
	factoriesMu.RUnlock()
	if f == nil {
		return nil, fmt.Errorf("open storage %s: unknown scheme %q (known: %s)", RedactLocation(location), u.Scheme, strings.Join(BackendSchemes(), ", "))
	}
	b, d, err := f(ctx, u, o)
	if err != nil {
		return nil, err
	}
	return Decorate(b, d), nil
}

// RedactLocation removes credentials from a location string, for
// messages and logs.
func RedactLocation(location string) string {
	i := strings.Index(location, "://")
	if i < 0 {
		return location
	}
	rest := location[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		return location[:i+3] + "***@" + rest[at+1:]
	}
	return location
}

func openDir(ctx context.Context, u *url.URL, o OpenBackendOptions) (Backend, DecorateOptions, error) {
	if u.Host != "" && u.Host != "localhost" {
		return nil, o.Decorate, fmt.Errorf("open storage %s: file URLs must be local (file:///path)", u.String())
	}
	d, err := applyQuery(u, o.Decorate)
	if err != nil {
		return nil, d, err
	}
	var b *DirBackend
	if o.Create {
		b, err = CreateDirBackend(u.Path)
	} else {
		b, err = NewDirBackend(u.Path)
	}
	return b, d, err
}

func openS3(ctx context.Context, u *url.URL, o OpenBackendOptions) (Backend, DecorateOptions, error) {
	loc := RedactLocation(u.String())
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	cfg := S3Config{Endpoint: u.Host, Bucket: bucket, Prefix: prefix}
	if u.User != nil {
		cfg.AccessKey = u.User.Username()
		cfg.SecretKey, _ = u.User.Password()
	}
	if cfg.AccessKey == "" {
		cfg.AccessKey = o.Getenv("CAIRN_S3_ACCESS_KEY")
	}
	if cfg.SecretKey == "" {
		cfg.SecretKey = o.Getenv("CAIRN_S3_SECRET_KEY")
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, o.Decorate, fmt.Errorf("open storage %s: no S3 credentials (put them in the URL or set CAIRN_S3_ACCESS_KEY and CAIRN_S3_SECRET_KEY)", loc)
	}
	q := u.Query()
	cfg.Region = q.Get("region")
	if v := q.Get("insecure"); v != "" {
		ins, err := strconv.ParseBool(v)
		if err != nil {
			return nil, o.Decorate, fmt.Errorf("open storage %s: insecure=%q: want 0 or 1", loc, v)
		}
		cfg.Insecure = ins
	}
	if v := q.Get("open_retries"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, o.Decorate, fmt.Errorf("open storage %s: open_retries=%q: %v", loc, v, err)
		}
		o.OpenRetries = n
		if n == 0 {
			o.OpenRetries = -1
		}
	}
	d := o.Decorate
	if d.Retries == 0 {
		d.Retries = 5
	}
	d, err := applyQuery(u, d, "region", "insecure", "open_retries")
	if err != nil {
		return nil, d, err
	}
	b, err := openRetrying(ctx, loc, o, d, func(ctx context.Context) (*S3Backend, error) { return NewS3Backend(ctx, cfg) })
	return b, d, err
}

// OpenS3 connects to a bucket like NewS3Backend, retrying transient
// failures as OpenBackend does (o.OpenRetries, o.OpenTimeout and the
// backoff of o.Decorate). It does not decorate the result.
func OpenS3(ctx context.Context, cfg S3Config, o OpenBackendOptions) (*S3Backend, error) {
	loc := "s3://" + cfg.Endpoint + "/" + cfg.Bucket
	if p := strings.Trim(cfg.Prefix, "/"); p != "" {
		loc += "/" + p
	}
	return openRetrying(ctx, loc, o, o.Decorate, func(ctx context.Context) (*S3Backend, error) { return NewS3Backend(ctx, cfg) })
}

// openRetrying runs open until it succeeds, fails for good, or
// o.OpenRetries retries of transient failures are spent (see
// OpenBackendOptions). The final error names the location (endpoint and
// bucket), the attempts, the time spent and the last cause.
func openRetrying[B any](ctx context.Context, loc string, o OpenBackendOptions, d DecorateOptions, open func(context.Context) (B, error)) (B, error) {
	retries := o.OpenRetries
	switch {
	case retries == 0:
		retries = DefaultOpenRetries
	case retries < 0:
		retries = 0
	}
	timeout := o.OpenTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if d.RetryBase <= 0 {
		d.RetryBase = 100 * time.Millisecond
	}
	if d.RetryMax <= 0 {
		d.RetryMax = 10 * time.Second
	}
	sleep, logger := d.Sleep, d.Logger
	if sleep == nil {
		sleep = sleepCtx
	}
	if logger == nil {
		logger = slog.Default()
	}
	start := time.Now()
	for i := 0; ; i++ {
		actx, cancel := context.WithTimeout(ctx, timeout)
		b, err := open(actx)
		cancel()
		if err == nil {
			if i > 0 {
				logger.Info("storage opened after retries", "location", loc, "attempts", i+1, "took", time.Since(start).Round(time.Millisecond))
			}
			return b, nil
		}
		var zero B
		if ctx.Err() != nil {
			return zero, fmt.Errorf("open storage %s: %w (attempt %d: %v)", loc, ctx.Err(), i+1, err)
		}
		var dnsErr *net.DNSError
		switch {
		case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
			return zero, fmt.Errorf("open storage %s: %w", loc, err) // a typo, not an outage
		case errors.Is(err, context.DeadlineExceeded):
			err = fmt.Errorf("%w: no answer within %s: %v", ErrTransient, timeout, err)
		case !errors.Is(err, ErrTransient):
			return zero, err
		}
		if i >= retries {
			return zero, fmt.Errorf("open storage %s: giving up after %d attempts in %s: %w", loc, i+1, time.Since(start).Round(time.Millisecond), err)
		}
		delay := d.backoff(i)
		logger.Warn("storage open retry", "location", loc, "attempt", i+1, "delay", delay, "err", err)
		if serr := sleep(ctx, delay); serr != nil {
			return zero, fmt.Errorf("open storage %s: %w (attempt %d: %v)", loc, serr, i+1, err)
		}
	}
}

// applyQuery reads the decorator parameters from the URL query and rejects
// unknown ones (a typo must not silently drop a limit).
func applyQuery(u *url.URL, d DecorateOptions, extra ...string) (DecorateOptions, error) {
	loc := RedactLocation(u.String())
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		var err error
		switch k {
		case "retries":
			d.Retries, err = strconv.Atoi(v)
		case "verify":
			d.Verify, err = strconv.ParseBool(v)
		case "rps":
			d.RateLimit, err = strconv.ParseFloat(v, 64)
		case "burst":
			d.RateBurst, err = strconv.Atoi(v)
		case "concurrency":
			d.Concurrency, err = strconv.Atoi(v)
		case "retry_base":
			d.RetryBase, err = time.ParseDuration(v)
		default:
			known := false
			for _, e := range extra {
				known = known || e == k
			}
			if !known {
				return d, fmt.Errorf("open storage %s: unknown parameter %q", loc, k)
			}
		}
		if err != nil {
			return d, fmt.Errorf("open storage %s: %s=%q: %v", loc, k, v, err)
		}
	}
	return d, nil
}
