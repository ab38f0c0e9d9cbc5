package pool_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pool/backendtest"
)

// fakeTime is a clock that only moves when something sleeps on it.
type fakeTime struct {
	mu     sync.Mutex
	now    time.Time
	slept  time.Duration
	sleeps int
}

func newFakeTime() *fakeTime { return &fakeTime{now: time.Unix(1_700_000_000, 0)} }

func (f *fakeTime) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeTime) Sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sleeps++
	if d > 0 {
		f.now = f.now.Add(d)
		f.slept += d
	}
	return ctx.Err()
}

func decorated(o pool.DecorateOptions) (pool.Backend, *backendtest.Faulty, *fakeTime) {
	ft := newFakeTime()
	f := backendtest.NewFaulty(backendtest.NewMem())
	o.Sleep, o.Now = ft.Sleep, ft.Now
	o.Logger = slog.New(slog.DiscardHandler)
	return pool.Decorate(f, o), f, ft
}

func TestDecoratorsConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) pool.Backend {
		return pool.Decorate(newDir(t), pool.DecorateOptions{Retries: 3, Verify: true, RateLimit: 1e6, RateBurst: 1000, Concurrency: 4})
	})
}

func TestRetrySucceedsAfterTransientFailures(t *testing.T) {
	ctx := context.Background()
	b, f, ft := decorated(pool.DecorateOptions{Retries: 5})
	f.FailNext(backendtest.OpPut, 3, pool.ErrTransient)
	data := []byte("payload after three failures")
	if err := b.Put(ctx, "x/y", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if n := f.Calls(backendtest.OpPut); n != 4 {
		t.Fatalf("put calls = %d, want 4", n)
	}
	if ft.sleeps != 3 {
		t.Fatalf("backoff sleeps = %d, want 3", ft.sleeps)
	}
	rc, err := b.Get(ctx, "x/y", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("stored %q", got) // the retried put rewound its input
	}

	f.FailNext(backendtest.OpList, 1, pool.ErrTransient)
	n := 0
	if err := b.List(ctx, "x/", func(pool.ObjectInfo) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("list after transient failure: n=%d err=%v", n, err)
	}
}

func TestRetryGivesUp(t *testing.T) {
	ctx := context.Background()
	b, f, ft := decorated(pool.DecorateOptions{Retries: 2, RetryBase: time.Second, RetryMax: 3 * time.Second})
	f.FailNext(backendtest.OpStat, 10, fmt.Errorf("%w: 503 slow down", pool.ErrTransient))
	_, err := b.Stat(ctx, "a/b")
	if !errors.Is(err, pool.ErrTransient) || !strings.Contains(err.Error(), "giving up after 3 attempts") || !strings.Contains(err.Error(), "503 slow down") {
		t.Fatalf("err = %v", err)
	}
	if n := f.Calls(backendtest.OpStat); n != 3 {
		t.Fatalf("stat calls = %d, want 3", n)
	}
	// Backoff: jittered in [d/2, d] for d = 1s, 2s.
	if ft.slept < 1500*time.Millisecond || ft.slept > 3*time.Second {
		t.Fatalf("total backoff %v out of range", ft.slept)
	}
	// Permanent errors are not retried.
	f.FailNext(backendtest.OpDelete, 1, errors.New("access denied"))
	if err := b.Delete(ctx, "a/b"); err == nil || f.Calls(backendtest.OpDelete) != 1 {
		t.Fatalf("permanent error: err=%v calls=%d", err, f.Calls(backendtest.OpDelete))
	}
	// Neither is a callback's error in List.
	f.FailNext(backendtest.OpList, 0, nil)
	b.Put(ctx, "l/1", strings.NewReader("1"), 1)
	cbErr := fmt.Errorf("callback: %w", pool.ErrTransient)
	if err := b.List(ctx, "l/", func(pool.ObjectInfo) error { return cbErr }); !errors.Is(err, cbErr) || f.Calls(backendtest.OpList) != 1 {
		t.Fatalf("list callback error: %v, calls %d", err, f.Calls(backendtest.OpList))
	}
}

func TestVerifyAfterWrite(t *testing.T) {
	ctx := context.Background()
	b, f, _ := decorated(pool.DecorateOptions{Verify: true, VerifyAttempts: 3, Retries: 2})
	f.DropPuts(-1)
	err := b.Put(ctx, "lost/obj", strings.NewReader("data"), 4)
	if err == nil || !strings.Contains(err.Error(), "not visible") || !strings.Contains(err.Error(), "lost/obj") {
		t.Fatalf("dropped write: err = %v", err)
	}
	if n := f.Calls(backendtest.OpPut); n != 3 {
		t.Fatalf("put calls = %d, want 3 (1 + 2 retries)", n)
	}
	if n := f.Calls(backendtest.OpStat); n != 9 {
		t.Fatalf("verify stats = %d, want 9", n)
	}
	// One lost write is healed by the retry.
	f.DropPuts(1)
	if err := b.Put(ctx, "healed/obj", strings.NewReader("data"), 4); err != nil {
		t.Fatal(err)
	}
	if oi, err := b.Stat(ctx, "healed/obj"); err != nil || oi.Size != 4 {
		t.Fatalf("healed: %+v %v", oi, err)
	}
	// Without verification the loss goes unnoticed (what the decorator is for).
	plain := backendtest.NewFaulty(backendtest.NewMem())
	plain.DropPuts(-1)
	if err := plain.Put(ctx, "x", strings.NewReader("d"), 1); err != nil {
		t.Fatal(err)
	}
}

func TestRateLimit(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		burst int
		want  time.Duration
	}{{1, 2 * time.Second}, {5, 1600 * time.Millisecond}} {
		b, f, ft := decorated(pool.DecorateOptions{RateLimit: 10, RateBurst: c.burst})
		for i := range 21 {
			b.Stat(ctx, fmt.Sprintf("n/%d", i))
		}
		if f.Calls(backendtest.OpStat) != 21 {
			t.Fatal("calls not passed through")
		}
		if ft.slept != c.want {
			t.Errorf("burst %d: 21 requests at 10/s waited %v, want %v", c.burst, ft.slept, c.want)
		}
	}
	// Concurrent callers share the budget: 40 requests at 20/s wait 1.95 s.
	b, _, ft := decorated(pool.DecorateOptions{RateLimit: 20})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() { defer wg.Done(); b.Stat(ctx, fmt.Sprintf("c/%d", i)) }()
	}
	wg.Wait()
	if ft.now.Sub(time.Unix(1_700_000_000, 0)) < 1950*time.Millisecond {
		t.Errorf("40 concurrent requests at 20/s advanced the clock %v", ft.now.Sub(time.Unix(1_700_000_000, 0)))
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	ctx := context.Background()
	f := backendtest.NewFaulty(backendtest.NewMem())
	gate := make(chan struct{})
	f.Before = func(_ context.Context, op backendtest.Op, _ string) {
		if op == backendtest.OpPut {
			<-gate
		}
	}
	b := pool.Decorate(f, pool.DecorateOptions{Concurrency: 3})
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Put(ctx, fmt.Sprintf("p/%d", i), strings.NewReader("x"), 1); err != nil {
				t.Error(err)
			}
		}()
	}
	waitFor(t, "3 puts in flight", func() bool { return f.InFlight() == 3 })
	close(gate)
	wg.Wait()
	if m := f.MaxInFlight(); m != 3 {
		t.Fatalf("max in flight = %d, want 3", m)
	}
	if n := f.Calls(backendtest.OpPut); n != 12 {
		t.Fatalf("puts = %d", n)
	}

	// An open Get body holds its slot until closed.
	var bodies []io.ReadCloser
	for i := range 3 {
		rc, err := b.Get(ctx, fmt.Sprintf("p/%d", i), 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, rc)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.Get(cctx, "p/3", 0, -1); !errors.Is(err, context.Canceled) {
		t.Fatalf("4th get with all slots held: %v, want to wait (canceled)", err)
	}
	bodies[0].Close()
	rc, err := b.Get(ctx, "p/3", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	for _, rc := range bodies[1:] {
		rc.Close()
	}

	// A List callback may use the backend even at concurrency 1.
	one := pool.Decorate(backendtest.NewMem(), pool.DecorateOptions{Concurrency: 1})
	one.Put(ctx, "a/1", strings.NewReader("1"), 1)
	if err := one.List(ctx, "a/", func(oi pool.ObjectInfo) error {
		_, err := one.Stat(ctx, oi.Name)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func TestDecoratedSync(t *testing.T) {
	f := backendtest.NewFaulty(newDir(t))
	b := pool.Decorate(f, pool.DecorateOptions{Retries: 1, Verify: true, RateLimit: 100, Concurrency: 2})
	s, ok := b.(pool.Syncer)
	if !ok {
		t.Fatal("decorated backend is not a Syncer")
	}
	if err := s.Sync(context.Background()); err != nil || f.Calls(backendtest.OpSync) != 1 {
		t.Fatalf("sync: %v, calls %d", err, f.Calls(backendtest.OpSync))
	}
}

func TestDecoratedClose(t *testing.T) {
	b, err := pool.NewDirBackend(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := pool.Decorate(b, pool.DecorateOptions{Retries: 1, Verify: true, RateLimit: 100, Concurrency: 2})
	c, ok := d.(io.Closer)
	if !ok {
		t.Fatal("decorated backend is not an io.Closer")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(context.Background(), "x", strings.NewReader("x"), 1); err == nil {
		t.Fatal("put after close succeeded")
	}
}
