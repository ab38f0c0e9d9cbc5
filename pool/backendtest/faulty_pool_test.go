package backendtest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pool/backendtest"
)

// faultPool is a pool on Faulty(Mem) behind the production decorators
// (retry, verify-after-write), with instant backoff.
func faultPool(t *testing.T) (*pool.Pool, *backendtest.Faulty) {
	t.Helper()
	f := backendtest.NewFaulty(backendtest.NewMem())
	b := pool.Decorate(f, pool.DecorateOptions{Retries: 4, Verify: true,
		Sleep: func(context.Context, time.Duration) error { return nil }})
	p, err := pool.Init(context.Background(), b, pool.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p, f
}

// files are distinct contents, one object each.
func files() map[string][]byte {
	out := map[string][]byte{}
	for i := range 8 {
		out[fmt.Sprintf("f%d", i)] = bytes.Repeat([]byte(fmt.Sprintf("content %d ", i)), 500+i)
	}
	return out
}

func snapshot(t *testing.T, p *pool.Pool) *pool.Manifest {
	t.Helper()
	ctx := context.Background()
	w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(ctx, ".", pool.Entry{Name: ".", Type: pool.TypeDir, Mode: 0o755}, nil); err != nil {
		t.Fatal(err)
	}
	fs := files()
	for i := range len(fs) {
		n := fmt.Sprintf("f%d", i)
		if err := w.Add(ctx, n, pool.Entry{Name: n, Type: pool.TypeFile, Mode: 0o644, Size: int64(len(fs[n]))}, bytes.NewReader(fs[n])); err != nil {
			t.Fatal(err)
		}
	}
	m, err := w.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// read returns a file's content through the pool, or the error.
func read(p *pool.Pool, m *pool.Manifest, name string) ([]byte, error) {
	ctx := context.Background()
	e, err := p.Lookup(ctx, m.Root, name)
	if err != nil {
		return nil, err
	}
	cr, err := p.OpenContent(ctx, &e)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.NewSectionReader(cr, 0, e.Size))
}

// TestFaultsNeverSilent: every storage fault is retried to exact bytes or
// comes out as an error; no fault ever gives wrong bytes back.
func TestFaultsNeverSilent(t *testing.T) {
	ctx := context.Background()
	want := files()

	t.Run("transient failures and lost writes are retried", func(t *testing.T) {
		p, f := faultPool(t)
		f.FailNext(backendtest.OpPut, 2, pool.ErrTransient)
		f.FailNext(backendtest.OpStat, 1, pool.ErrTransient)
		f.DropPuts(1)
		m := snapshot(t, p)
		for n, w := range want {
			if got, err := read(p, m, n); err != nil || !bytes.Equal(got, w) {
				t.Fatalf("%s: %v", n, err)
			}
		}
		if rep, err := p.Check(ctx, pool.CheckOptions{ReadData: true}); err != nil || !rep.OK() {
			t.Fatalf("check: %+v %v", rep, err)
		}
	})
	t.Run("short reads are resumed", func(t *testing.T) {
		p, f := faultPool(t)
		m := snapshot(t, p)
		f.ShortGets(6, 100)
		for n, w := range want {
			if got, err := read(p, m, n); err != nil || !bytes.Equal(got, w) {
				t.Fatalf("%s under short reads: %d bytes, %v", n, len(got), err)
			}
		}
	})
	t.Run("a write that reads back wrong is caught", func(t *testing.T) {
		p, f := faultPool(t)
		f.CorruptPuts(1000)
		m := snapshot(t, p) // the store acknowledged every write
		bad := 0
		for n, w := range want {
			got, err := read(p, m, n)
			switch {
			case err == nil && !bytes.Equal(got, w):
				t.Fatalf("%s: wrong bytes returned silently", n)
			case err != nil:
				if !errors.Is(err, pool.ErrCorrupt) {
					t.Errorf("%s: %v, want ErrCorrupt", n, err)
				}
				bad++
			}
		}
		if bad == 0 {
			t.Fatal("no corruption seen: the fault was not injected")
		}
	})
	t.Run("bytes damaged on the way back are caught", func(t *testing.T) {
		p, f := faultPool(t)
		m := snapshot(t, p)
		for n, w := range want {
			f.CorruptGets(1)
			got, err := read(p, m, n)
			if err == nil && !bytes.Equal(got, w) {
				t.Fatalf("%s: wrong bytes returned silently", n)
			}
			if err != nil && !errors.Is(err, pool.ErrCorrupt) {
				t.Errorf("%s: %v, want ErrCorrupt", n, err)
			}
		}
	})
}
