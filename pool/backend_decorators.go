package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// DecorateOptions choose the decorators Decorate wraps around a backend.
// Zero values disable each one.
type DecorateOptions struct {
	// Retries is how many times a call failing with ErrTransient is
	// retried (so up to Retries+1 attempts), with exponential backoff
	// from RetryBase (default 100ms) up to RetryMax (default 10s), jittered.
	Retries   int
	RetryBase time.Duration
	RetryMax  time.Duration

	// Verify checks every Put by Stat-ing the name until it is visible
	// with the right size (up to VerifyAttempts polls, default 5, backing
	// off like retries). A write that never shows up is ErrTransient, so
	// the retry decorator writes it again.
	Verify         bool
	VerifyAttempts int

	// RateLimit caps requests per second (each call is one request),
	// allowing bursts of RateBurst (default 1).
	RateLimit float64
	RateBurst int

	// Concurrency caps calls in flight at once. A Get holds its slot until
	// its body is read to the end or closed; List releases its slot while
	// its callback runs, so a callback may use the backend.
	Concurrency int

	// Sleep waits for d or until ctx is done (default: a timer). Now is
	// the clock of the rate limiter (default time.Now). Tests inject both.
	Sleep func(ctx context.Context, d time.Duration) error
	Now   func() time.Time

	// Logger receives retry notices (default slog.Default()).
	Logger *slog.Logger
}

// Decorate composes the decorators — the one place they are put in
// order. Outermost first: retry → verify-after-write → rate limit →
// concurrency limit → b. So every retried attempt and every verification
// Stat is itself rate- and concurrency-limited, and a lost write is
// re-written by the retry. The result forwards Sync to b when b is a
// Syncer.
func Decorate(b Backend, o DecorateOptions) Backend {
	if o.Sleep == nil {
		o.Sleep = sleepCtx
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 100 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 10 * time.Second
	}
	if o.Concurrency > 0 {
		b = &limitBackend{inner: b, sem: make(chan struct{}, o.Concurrency)}
	}
	if o.RateLimit > 0 {
		burst := max(o.RateBurst, 1)
		interval := time.Duration(float64(time.Second) / o.RateLimit)
		b = &rateBackend{inner: b, interval: interval, tolerance: time.Duration(burst-1) * interval, now: o.Now, sleep: o.Sleep}
	}
	if o.Verify {
		b = &verifyBackend{inner: b, attempts: max(o.VerifyAttempts, 1), o: o}
	}
	if o.Retries > 0 {
		b = &retryBackend{inner: b, o: o}
	}
	return b
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// backoff returns the jittered delay before retry number i (0-based).
func (o *DecorateOptions) backoff(i int) time.Duration {
	d := o.RetryBase << min(i, 30)
	if d > o.RetryMax || d <= 0 {
		d = o.RetryMax
	}
	return d/2 + rand.N(d/2+1)
}

// closeInner closes b when it is an io.Closer (a DirBackend's root handle).
func closeInner(b Backend) error {
	if c, ok := b.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

func syncInner(ctx context.Context, b Backend) error {
	if s, ok := b.(Syncer); ok {
		return s.Sync(ctx)
	}
	return nil
}

// ---- retry ----

type retryBackend struct {
	inner Backend
	o     DecorateOptions
}

func (r *retryBackend) Close() error                   { return closeInner(r.inner) }
func (r *retryBackend) Unwrap() Backend                { return r.inner }
func (r *retryBackend) Location() string               { return r.inner.Location() }
func (r *retryBackend) Sync(ctx context.Context) error { return syncInner(ctx, r.inner) }

func (r *retryBackend) do(ctx context.Context, op, name string, fn func() error) error {
	return r.doIf(ctx, op, name, nil, fn)
}

// doIf runs fn until it succeeds or fails with a non-transient error, or
// until retries run out; canRetry (when set) can veto a retry.
func (r *retryBackend) doIf(ctx context.Context, op, name string, canRetry func() bool, fn func() error) error {
	var err error
	for i := 0; ; i++ {
		err = fn()
		if err == nil || !errors.Is(err, ErrTransient) || ctx.Err() != nil || (canRetry != nil && !canRetry()) {
			return err
		}
		if i >= r.o.Retries {
			return fmt.Errorf("%s %s: giving up after %d attempts: %w", op, name, i+1, err)
		}
		d := r.o.backoff(i)
		r.o.Logger.Warn("storage retry", "op", op, "name", name, "location", r.inner.Location(), "attempt", i+1, "delay", d, "err", err)
		if serr := r.o.Sleep(ctx, d); serr != nil {
			return fmt.Errorf("%s %s: %w (while retrying after: %v)", op, name, serr, err)
		}
	}
}

func (r *retryBackend) Put(ctx context.Context, name string, rd io.Reader, size int64) error {
	seeker, ok := rd.(io.Seeker)
	var start int64
	if ok {
		var err error
		if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			ok = false
		}
	}
	if !ok {
		return r.inner.Put(ctx, name, rd, size) // cannot rewind: one attempt
	}
	first := true
	return r.do(ctx, "put", name, func() error {
		if !first {
			if _, err := seeker.Seek(start, io.SeekStart); err != nil {
				return fmt.Errorf("put %s: rewind input: %w", name, err)
			}
		}
		first = false
		return r.inner.Put(ctx, name, rd, size)
	})
}

func (r *retryBackend) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := r.do(ctx, "get", name, func() error {
		var err error
		rc, err = r.inner.Get(ctx, name, off, length)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &resumeReader{r: r, ctx: ctx, name: name, off: off, length: length, rc: rc}, nil
}

// resumeReader continues a Get whose body broke with a transient error
// (a connection dropped mid-body: a short read) by asking for the rest,
// from the offset reached, within the same retry budget. Objects are
// immutable, so the rest is the same bytes.
type resumeReader struct {
	r      *retryBackend
	ctx    context.Context
	name   string
	off    int64 // next byte to read
	length int64 // bytes still wanted; < 0: to the end
	rc     io.ReadCloser
	broken error // transient error of rc, to resume at the next Read
	tries  int
}

func (rr *resumeReader) Read(p []byte) (int, error) {
	for {
		if rr.broken != nil {
			if rr.tries >= rr.r.o.Retries || rr.ctx.Err() != nil {
				return 0, rr.broken
			}
			d := rr.r.o.backoff(rr.tries)
			rr.tries++
			rr.r.o.Logger.Warn("storage retry", "op", "read", "name", rr.name, "location", rr.r.inner.Location(),
				"offset", rr.off, "attempt", rr.tries, "delay", d, "err", rr.broken)
			if err := rr.r.o.Sleep(rr.ctx, d); err != nil {
				return 0, rr.broken
			}
			rr.rc.Close()
			rc, err := rr.r.inner.Get(rr.ctx, rr.name, rr.off, rr.length)
			if err != nil {
				if errors.Is(err, ErrTransient) {
					rr.broken = err
					rr.rc = io.NopCloser(strings.NewReader(""))
					continue
				}
				return 0, err
			}
			rr.rc, rr.broken = rc, nil
		}
		if rr.length == 0 {
			return 0, io.EOF
		}
		q := p
		if rr.length > 0 && int64(len(q)) > rr.length {
			q = q[:rr.length]
		}
		n, err := rr.rc.Read(q)
		rr.off += int64(n)
		if rr.length > 0 {
			rr.length -= int64(n)
		}
		if err != nil && err != io.EOF && errors.Is(err, ErrTransient) {
			rr.broken = err
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (rr *resumeReader) Close() error { return rr.rc.Close() }

func (r *retryBackend) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	var oi ObjectInfo
	err := r.do(ctx, "stat", name, func() error {
		var err error
		oi, err = r.inner.Stat(ctx, name)
		return err
	})
	return oi, err
}

// List is retried only while fn has not seen a name yet, so fn never sees
// one twice; an error of fn itself is never retried.
func (r *retryBackend) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	called := false
	var fnErr error
	return r.doIf(ctx, "list", prefix, func() bool { return !called && fnErr == nil }, func() error {
		return r.inner.List(ctx, prefix, func(oi ObjectInfo) error {
			called = true
			fnErr = fn(oi)
			return fnErr
		})
	})
}

func (r *retryBackend) Delete(ctx context.Context, name string) error {
	return r.do(ctx, "delete", name, func() error { return r.inner.Delete(ctx, name) })
}

// ---- verify after write ----

type verifyBackend struct {
	inner    Backend
	attempts int
	o        DecorateOptions
}

func (v *verifyBackend) Close() error                   { return closeInner(v.inner) }
func (v *verifyBackend) Unwrap() Backend                { return v.inner }
func (v *verifyBackend) Location() string               { return v.inner.Location() }
func (v *verifyBackend) Sync(ctx context.Context) error { return syncInner(ctx, v.inner) }
func (v *verifyBackend) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	return v.inner.Get(ctx, name, off, length)
}
func (v *verifyBackend) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	return v.inner.Stat(ctx, name)
}
func (v *verifyBackend) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	return v.inner.List(ctx, prefix, fn)
}
func (v *verifyBackend) Delete(ctx context.Context, name string) error {
	return v.inner.Delete(ctx, name)
}

func (v *verifyBackend) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := v.inner.Put(ctx, name, r, size); err != nil {
		return err
	}
	var last string
	for i := 0; i < v.attempts; i++ {
		if i > 0 {
			if err := v.o.Sleep(ctx, v.o.backoff(i-1)); err != nil {
				return err
			}
		}
		oi, err := v.inner.Stat(ctx, name)
		switch {
		case err == nil && (size < 0 || oi.Size == size):
			return nil
		case err == nil:
			last = fmt.Sprintf("size %d, wrote %d", oi.Size, size)
		case errors.Is(err, ErrNotFound):
			last = "not found"
		default:
			return fmt.Errorf("verify %s after write: %w", name, err)
		}
	}
	return fmt.Errorf("verify %s at %s after write: %w: written object not visible after %d checks (%s)", name, v.inner.Location(), ErrTransient, v.attempts, last)
}

// ---- rate limit ----

// rateBackend is a GCRA limiter: request k may start at tat-tolerance,
// where tat advances by interval per request.
type rateBackend struct {
	inner     Backend
	interval  time.Duration
	tolerance time.Duration
	now       func() time.Time
	sleep     func(context.Context, time.Duration) error
	mu        sync.Mutex
	tat       time.Time
}

func (rl *rateBackend) wait(ctx context.Context) error {
	rl.mu.Lock()
	now := rl.now()
	if rl.tat.Before(now) {
		rl.tat = now
	}
	startAt := rl.tat.Add(-rl.tolerance)
	rl.tat = rl.tat.Add(rl.interval)
	rl.mu.Unlock()
	return rl.sleep(ctx, startAt.Sub(now))
}

func (rl *rateBackend) Close() error                   { return closeInner(rl.inner) }
func (rl *rateBackend) Unwrap() Backend                { return rl.inner }
func (rl *rateBackend) Location() string               { return rl.inner.Location() }
func (rl *rateBackend) Sync(ctx context.Context) error { return syncInner(ctx, rl.inner) }

func (rl *rateBackend) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := rl.wait(ctx); err != nil {
		return err
	}
	return rl.inner.Put(ctx, name, r, size)
}
func (rl *rateBackend) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := rl.wait(ctx); err != nil {
		return nil, err
	}
	return rl.inner.Get(ctx, name, off, length)
}
func (rl *rateBackend) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	if err := rl.wait(ctx); err != nil {
		return ObjectInfo{}, err
	}
	return rl.inner.Stat(ctx, name)
}
func (rl *rateBackend) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := rl.wait(ctx); err != nil {
		return err
	}
	return rl.inner.List(ctx, prefix, fn)
}
func (rl *rateBackend) Delete(ctx context.Context, name string) error {
	if err := rl.wait(ctx); err != nil {
		return err
	}
	return rl.inner.Delete(ctx, name)
}

// ---- concurrency limit ----

type limitBackend struct {
	inner Backend
	sem   chan struct{}
}

func (l *limitBackend) acquire(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *limitBackend) release() { <-l.sem }

func (l *limitBackend) Close() error                   { return closeInner(l.inner) }
func (l *limitBackend) Unwrap() Backend                { return l.inner }
func (l *limitBackend) Location() string               { return l.inner.Location() }
func (l *limitBackend) Sync(ctx context.Context) error { return syncInner(ctx, l.inner) }

func (l *limitBackend) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := l.acquire(ctx); err != nil {
		return err
	}
	defer l.release()
	return l.inner.Put(ctx, name, r, size)
}

func (l *limitBackend) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	rc, err := l.inner.Get(ctx, name, off, length)
	if err != nil {
		l.release()
		return nil, err
	}
	return &limitBody{rc: rc, release: l.release}, nil
}

// limitBody gives the slot back exactly once, at EOF or Close.
type limitBody struct {
	rc      io.ReadCloser
	once    sync.Once
	release func()
}

func (b *limitBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		b.once.Do(b.release)
	}
	return n, err
}

func (b *limitBody) Close() error {
	b.once.Do(b.release)
	return b.rc.Close()
}

func (l *limitBackend) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	if err := l.acquire(ctx); err != nil {
		return ObjectInfo{}, err
	}
	defer l.release()
	return l.inner.Stat(ctx, name)
}

func (l *limitBackend) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := l.acquire(ctx); err != nil {
		return err
	}
	held := true
	defer func() {
		if held {
			l.release()
		}
	}()
	return l.inner.List(ctx, prefix, func(oi ObjectInfo) error {
		l.release()
		held = false
		err := fn(oi)
		if aerr := l.acquire(ctx); aerr != nil {
			return errors.Join(err, aerr)
		}
		held = true
		return err
	})
}

func (l *limitBackend) Delete(ctx context.Context, name string) error {
	if err := l.acquire(ctx); err != nil {
		return err
	}
	defer l.release()
	return l.inner.Delete(ctx, name)
}

// Size forwards the wrapped body's size hint (see sizeHint).
func (b *limitBody) Size() int64 { return sizeHint(b.rc) }
