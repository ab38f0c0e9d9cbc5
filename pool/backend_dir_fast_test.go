package pool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// readWhole (readAll's fast path on a local directory) returns what the
// generic Get path returns, with the same errors.
func TestReadWhole(t *testing.T) {
	ctx := context.Background()
	b, err := CreateDirBackend(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.fd < 0 {
		t.Fatal("no openat2 fast path on this kernel")
	}
	for _, n := range []int{0, 1, 4095, 4096, 100000} {
		data := randomish(n)
		if err := b.Put(ctx, "objects/aa/bb/x", bytes.NewReader(data), int64(n)); err != nil {
			t.Fatal(err)
		}
		for _, alloc := range []func(int) []byte{nil, func(k int) []byte { return make([]byte, 0, k) }} {
			got, err := readAllInto(ctx, b, "objects/aa/bb/x", 1<<20, alloc)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%d bytes: got %d bytes, %v", n, len(got), err)
			}
		}
		if _, err := readAll(ctx, b, "objects/aa/bb/x", int64(n)-1); n > 0 && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%d bytes over a max of %d: %v, want ErrCorrupt", n, n-1, err)
		}
	}
	for _, name := range []string{"objects/aa/bb/missing", "objects/aa/bb", "objects/aa/bb/x/y"} {
		if _, err := readAll(ctx, b, name, 1<<20); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	if _, err := readAll(ctx, b, "../x", 1<<20); err == nil {
		t.Error("../x: no error")
	}
	// A symlink planted in the pool that leads out of it is not followed.
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("secret"), 0o600)
	if err := os.Symlink(outside, filepath.Join(b.Location(), "objects", "aa", "bb", "link")); err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(ctx, b, "objects/aa/bb/link", 1<<20); err == nil {
		t.Fatalf("read through an escaping symlink: %q", got)
	}
}

// getPooled verifies like Get: a damaged object is ErrCorrupt, and its
// buffers are released either way.
func TestGetPooled(t *testing.T) {
	ctx := context.Background()
	p, b := structPool(t)
	for _, data := range [][]byte{sampleText(300000), randomish(300000), []byte("x")} {
		d, _, err := p.Put(ctx, KindData, data)
		if err != nil {
			t.Fatal(err)
		}
		kind, got, release, err := p.getPooled(ctx, d)
		if err != nil || kind != KindData || !bytes.Equal(got, data) {
			t.Fatalf("getPooled: kind %v, %d bytes, %v", kind, len(got), err)
		}
		release()
		path := filepath.Join(b.Location(), filepath.FromSlash(ObjectName(d)))
		raw, _ := os.ReadFile(path)
		raw[len(raw)-1] ^= 1
		os.WriteFile(path, raw, 0o600)
		if _, _, release, err := p.getPooled(ctx, d); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("damaged object: %v, want ErrCorrupt", err)
		} else {
			release()
		}
	}
	if _, _, release, err := p.getPooled(ctx, Digest{1}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing object: %v, want ErrNotFound", err)
	} else {
		release()
	}
}
