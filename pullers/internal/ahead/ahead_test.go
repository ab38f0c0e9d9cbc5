package ahead

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// content is file i's deterministic data.
func content(i, size int) []byte {
	b := make([]byte, size)
	for k := range b {
		b[k] = byte(i*31 + k*7)
	}
	return b
}

// writeAll is a Func that serves data in pieces of 1000 bytes, counting
// what it wrote into served.
func writeAll(data []byte, served *atomic.Int64) Func {
	return func(ctx context.Context, b *Buffer) error {
		b.Ready(len(data))
		for off := 0; off < len(data); off += 1000 {
			n, err := b.Write(data[off:min(off+1000, len(data))])
			served.Add(int64(n))
			if err != nil {
				return err
			}
		}
		return nil
	}
}

// TestOrderAndContent: many small files and some larger than the window
// come out in Start order with their exact content, while the bytes
// reserved never exceed the budget.
func TestOrderAndContent(t *testing.T) {
	const maxBytes, window = 64 << 10, 16 << 10
	f := New(context.Background(), 4, maxBytes, window)
	sizes := []int{0, 1, 10, 5000, 200_000, 3, 16 << 10, 16<<10 - 1, 70_000, 1}
	for i := 10; i < 200; i++ {
		sizes = append(sizes, (i*7919)%20000)
	}
	var served atomic.Int64
	bufs := make(chan *Buffer, len(sizes))
	go func() {
		defer close(bufs)
		for i, n := range sizes {
			b, err := f.Start(int64(n), writeAll(content(i, n), &served))
			if err != nil {
				t.Error(err)
				return
			}
			bufs <- b
		}
	}()
	i := 0
	for b := range bufs {
		v, err := b.Wait(context.Background())
		if err != nil || v.(int) != sizes[i] {
			t.Fatalf("file %d: Wait = %v, %v", i, v, err)
		}
		got, err := io.ReadAll(b)
		if err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
		if sha256.Sum256(got) != sha256.Sum256(content(i, sizes[i])) {
			t.Fatalf("file %d: content differs (%d bytes, want %d)", i, len(got), sizes[i])
		}
		b.Close()
		i++
	}
	if i != len(sizes) {
		t.Fatalf("%d files, want %d", i, len(sizes))
	}
	f.Stop()
	f.Wait()
	if p := f.Peak(); p > maxBytes {
		t.Errorf("peak reservation %d bytes, budget %d", p, maxBytes)
	}
}

// TestBound: while the consumer holds back, workers that would send
// without end stop once the budget is reserved: what they wrote stays
// within it.
func TestBound(t *testing.T) {
	const maxBytes, window = 100 << 10, 32 << 10 // writes of 4096 fill a window exactly
	ctx := context.Background()
	f := New(ctx, 8, maxBytes, window)
	var served atomic.Int64
	endless := func(ctx context.Context, b *Buffer) error {
		b.Ready(nil)
		chunk := make([]byte, 4096)
		for {
			n, err := b.Write(chunk)
			served.Add(int64(n))
			if err != nil {
				return err
			}
		}
	}
	var started []*Buffer
	startedc := make(chan *Buffer)
	go func() {
		defer close(startedc)
		for range 10 {
			b, err := f.Start(1<<40, endless) // announces 1 TiB
			if err != nil {
				return
			}
			startedc <- b
		}
	}()
	// Three starts fit the budget (3 windows of 32 KiB in 100 KiB); the
	// fourth waits.
	for range 3 {
		started = append(started, <-startedc)
	}
	waitFor(t, func() bool { return served.Load() == 3*window })
	select {
	case b := <-startedc:
		t.Fatalf("a fourth fetch started beyond the budget (cap %d)", b.Cap())
	default:
	}
	// The consumer reads the first a little: its worker refills; still
	// within the window.
	p := make([]byte, 8192)
	if _, err := io.ReadFull(started[0], p); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return served.Load() == 3*window+8192 })
	// Closing the first frees its window for the next start.
	started[0].Close()
	if b := <-startedc; b.Cap() != window {
		t.Errorf("the next start got %d bytes, want the window %d", b.Cap(), window)
	}
	if got := served.Load(); got > 3*window+8192+window {
		t.Errorf("served %d bytes, more than the budget allows", got)
	}
	f.Stop()
	for range startedc {
	}
	f.Wait()
	if p := f.Peak(); p > maxBytes {
		t.Errorf("peak reservation %d, budget %d", p, maxBytes)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 2000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("condition not reached")
}

// TestErrorsStayPerFile: a fetch that fails before Ready, one that fails
// in the middle of its content, and the files around them.
func TestErrorsStayPerFile(t *testing.T) {
	f := New(context.Background(), 3, 1<<20, 0)
	errOpen, errMid := errors.New("open refused"), errors.New("connection reset")
	var served atomic.Int64
	fns := []Func{
		writeAll(content(0, 100), &served),
		func(context.Context, *Buffer) error { return errOpen },
		writeAll(content(2, 5000), &served),
		func(_ context.Context, b *Buffer) error {
			b.Ready(7)
			b.Write([]byte("partial"))
			return errMid
		},
		writeAll(content(4, 70000), &served),
	}
	var bufs []*Buffer
	for _, fn := range fns {
		b, err := f.Start(100000, fn)
		if err != nil {
			t.Fatal(err)
		}
		bufs = append(bufs, b)
	}
	for i, b := range bufs {
		v, err := b.Wait(context.Background())
		switch i {
		case 1:
			if !errors.Is(err, errOpen) {
				t.Errorf("file 1: Wait = %v, %v; want %v", v, err, errOpen)
			}
		case 3:
			got, rerr := io.ReadAll(b)
			if err != nil || string(got) != "partial" || !errors.Is(rerr, errMid) || !errors.Is(b.Err(), errMid) {
				t.Errorf("file 3: %q, %v, %v", got, err, rerr)
			}
		default:
			got, rerr := io.ReadAll(b)
			if err != nil || rerr != nil || !bytes.Equal(got, content(i, v.(int))) {
				t.Errorf("file %d: %d bytes, %v, %v", i, len(got), err, rerr)
			}
		}
		b.Close()
	}
	f.Stop()
	f.Wait()
}

// TestStopUnblocks: Stop ends a Start waiting for budget, a worker
// blocked in Write and a consumer blocked in Read or Wait.
func TestStopUnblocks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := New(ctx, 2, 20000, 10000)
	block := make(chan struct{})
	b1, _ := f.Start(1<<30, func(_ context.Context, b *Buffer) error {
		b.Ready(nil)
		for {
			if _, err := b.Write(make([]byte, 4096)); err != nil {
				return err
			}
		}
	})
	b2, _ := f.Start(0, func(ctx context.Context, b *Buffer) error { <-block; return nil })
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Add(3)
	go func() {
		defer wg.Done()
		_, err := f.Start(5000, func(context.Context, *Buffer) error { return nil })
		errs <- fmt.Errorf("start: %w", err)
	}()
	go func() {
		defer wg.Done()
		_, err := b2.Wait(context.Background())
		errs <- fmt.Errorf("wait: %w", err)
	}()
	go func() {
		defer wg.Done()
		_, err := io.Copy(io.Discard, b1)
		errs <- fmt.Errorf("read: %w", err)
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed) {
			t.Errorf("after cancel: %v", err)
		}
	}
	close(block)
	f.Wait()
}

// fakeFile serves data by ReadAt, counting requests, optionally longer
// than it claims.
type fakeFile struct {
	data []byte
	mu   sync.Mutex
	reqs int
}

func (f *fakeFile) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	f.reqs++
	f.mu.Unlock()
	if off >= int64(len(f.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func TestReadAll(t *testing.T) {
	for _, c := range []struct {
		name       string
		have, size int
		want       int // bytes written
		reqs       int
	}{
		{"empty", 0, 0, 0, 1},
		{"small", 10, 10, 10, 1},        // the probe rides on the read
		{"chunks", 100, 100, 100, 4},    // 3 chunks of 32, then 4 bytes and the probe
		{"whole chunks", 96, 96, 96, 4}, // 3 chunks of 32 and the probe
		{"longer", 50, 10, 11, 1},
		{"shorter", 10, 100, 10, 2}, // stops at the short chunk (the others may be in flight)
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeFile{data: content(1, c.have)}
			var out bytes.Buffer
			if err := ReadAll(context.Background(), f, int64(c.size), 32, 3, &out); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), f.data[:c.want]) {
				t.Errorf("wrote %d bytes, want %d", out.Len(), c.want)
			}
			if c.name != "shorter" && f.reqs != c.reqs {
				t.Errorf("%d requests, want %d", f.reqs, c.reqs)
			}
		})
	}
}
