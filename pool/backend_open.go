package pool

import (
	"context"
	"fmt"
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
}

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
// burst=N, concurrency=N. Errors never contain the credentials.
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
	d := o.Decorate
	if d.Retries == 0 {
		d.Retries = 5
	}
	d, err := applyQuery(u, d, "region", "insecure")
	if err != nil {
		return nil, d, err
	}
	b, err := NewS3Backend(ctx, cfg)
	return b, d, err
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
