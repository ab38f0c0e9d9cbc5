package pool_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pool/backendtest"
)

func TestDirBackendConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) pool.Backend { return newDir(t) })
}

// newDirOSRoot is newDir on the os.Root fallback path.
func newDirOSRoot(t *testing.T) *pool.DirBackend {
	b := newDir(t)
	pool.UseOSRoot(b)
	return b
}

func TestDirBackendOSRootConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) pool.Backend { return newDirOSRoot(t) })
}

func TestMemBackendConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) pool.Backend { return backendtest.NewMem() })
}

func TestDirBackendSafety(t *testing.T) {
	for name, mk := range map[string]func(*testing.T) *pool.DirBackend{"openat2": newDir, "osroot": newDirOSRoot} {
		t.Run(name, func(t *testing.T) { testDirBackendSafety(t, mk(t)) })
	}
}

func testDirBackendSafety(t *testing.T, b *pool.DirBackend) {
	ctx := context.Background()
	outside := t.TempDir()
	// A symlink planted inside the root must not lead writes or reads out.
	if err := os.Symlink(outside, filepath.Join(b.Location(), "objects")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600)
	if err := b.Put(ctx, "objects/ab/x", strings.NewReader("x"), 1); err == nil {
		t.Fatal("put through a symlink out of the root succeeded")
	}
	if _, err := b.Get(ctx, "objects/secret", 0, -1); err == nil {
		t.Fatal("read through a symlink out of the root succeeded")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Fatalf("something was written outside the root: %v", ents)
	}
}

func TestDirBackendDetails(t *testing.T) {
	for name, mk := range map[string]func(*testing.T) *pool.DirBackend{"openat2": newDir, "osroot": newDirOSRoot} {
		t.Run(name, func(t *testing.T) { testDirBackendDetails(t, mk(t)) })
	}
}

func testDirBackendDetails(t *testing.T, b *pool.DirBackend) {
	ctx := context.Background()
	// Temporary files are never listed; ModTime is the file's mtime.
	if err := b.Put(ctx, "snapshots/a", strings.NewReader("a"), 1); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(b.Location(), "snapshots", ".tmp-leftover"), []byte("partial"), 0o600)
	mt := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	os.Chtimes(filepath.Join(b.Location(), "snapshots", "a"), mt, mt)
	var got []pool.ObjectInfo
	b.List(ctx, "snapshots/", func(oi pool.ObjectInfo) error { got = append(got, oi); return nil })
	if len(got) != 1 || got[0].Name != "snapshots/a" || !got[0].ModTime.Equal(mt) {
		t.Fatalf("list: %+v", got)
	}
	// No temp file is left behind by a put, and new files are private.
	if err := b.Put(ctx, "objects/aa/bb/c", strings.NewReader("data"), 4); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(b.Location(), "objects", "aa", "bb"))
	if len(ents) != 1 {
		t.Fatalf("dir has %d entries after put", len(ents))
	}
	if fi, _ := os.Stat(filepath.Join(b.Location(), "objects", "aa", "bb", "c")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	// A directory removed behind the backend's cache is recreated.
	os.RemoveAll(filepath.Join(b.Location(), "objects"))
	if err := b.Put(ctx, "objects/aa/bb/d", strings.NewReader("d"), 1); err != nil {
		t.Fatal(err)
	}
	// Failures name the full path and keep the cause.
	err := b.Put(ctx, "snapshots/a/sub", strings.NewReader("x"), 1)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(b.Location(), "snapshots", "a", "sub")) || !(errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EEXIST)) {
		t.Fatalf("put under a file: %v", err)
	}
	if _, err := pool.NewDirBackend(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, pool.ErrNotFound) {
		t.Fatalf("missing root: %v", err)
	}
	c, err := pool.CreateDirBackend(filepath.Join(t.TempDir(), "new", "root"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestCleanTemp(t *testing.T) {
	ctx := context.Background()
	b := newDir(t)
	p, err := pool.Init(ctx, pool.Decorate(b, pool.DecorateOptions{Retries: 1, Concurrency: 2}), pool.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, _, _ := p.Put(ctx, pool.KindData, []byte("keep"))
	dir := filepath.Join(b.Location(), "objects", "ab", "cd")
	os.MkdirAll(dir, 0o700)
	old, fresh := filepath.Join(dir, ".tmp-old"), filepath.Join(b.Location(), ".tmp-fresh")
	os.WriteFile(old, []byte("partial"), 0o600)
	os.WriteFile(fresh, []byte("in progress"), 0o600)
	past := time.Now().Add(-2 * time.Hour)
	os.Chtimes(old, past, past)
	n, err := p.CleanTemp(ctx, time.Now().Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("CleanTemp = %d, %v; want 1", n, err)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("old temp file kept")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatal("fresh temp file removed")
	}
	if _, _, err := p.Get(ctx, d); err != nil {
		t.Fatal(err)
	}
	// A backend without temp files: nothing to do.
	pm, _ := pool.Init(ctx, backendtest.NewMem(), pool.InitOptions{})
	if n, err := pm.CleanTemp(ctx, time.Now()); n != 0 || err != nil {
		t.Fatal(n, err)
	}
}

// TestDirBackendPlantedSymlink: a symlink planted at objects/ab (absolute
// or relative, pointing out of the root) is never followed by any
// operation, and nothing outside changes.
func TestDirBackendPlantedSymlink(t *testing.T) {
	for name, mk := range map[string]func(*testing.T) *pool.DirBackend{"openat2": newDir, "osroot": newDirOSRoot} {
		t.Run(name, func(t *testing.T) { testDirBackendPlantedSymlink(t, mk) })
	}
}

func testDirBackendPlantedSymlink(t *testing.T, newDir func(*testing.T) *pool.DirBackend) {
	ctx := context.Background()
	for _, kind := range []string{"absolute", "relative"} {
		t.Run(kind, func(t *testing.T) {
			b := newDir(t)
			outside := t.TempDir()
			victim := filepath.Join(outside, "cd", "victim")
			os.MkdirAll(filepath.Dir(victim), 0o700)
			os.WriteFile(victim, []byte("secret"), 0o600)
			os.MkdirAll(filepath.Join(b.Location(), "objects"), 0o700)
			target := outside
			if kind == "relative" {
				rel, err := filepath.Rel(filepath.Join(b.Location(), "objects"), outside)
				if err != nil {
					t.Fatal(err)
				}
				target = rel
			}
			if err := os.Symlink(target, filepath.Join(b.Location(), "objects", "ab")); err != nil {
				t.Fatal(err)
			}
			if err := b.Put(ctx, "objects/ab/cd/new", strings.NewReader("x"), 1); err == nil {
				t.Fatal("put through the symlink succeeded")
			}
			if err := b.Put(ctx, "objects/ab/ef/new", strings.NewReader("x"), 1); err == nil {
				t.Fatal("put (creating a directory) through the symlink succeeded")
			}
			if _, err := b.Get(ctx, "objects/ab/cd/victim", 0, -1); err == nil {
				t.Fatal("get through the symlink succeeded")
			}
			if _, err := b.Stat(ctx, "objects/ab/cd/victim"); err == nil {
				t.Fatal("stat through the symlink succeeded")
			}
			if err := b.Delete(ctx, "objects/ab/cd/victim"); err == nil {
				// Delete of a missing name is no error; the victim must survive.
				if _, err := os.Stat(victim); err != nil {
					t.Fatal("delete through the symlink removed the file outside")
				}
			}
			var names []string
			filepath.WalkDir(outside, func(p string, d os.DirEntry, err error) error {
				names = append(names, p)
				return nil
			})
			if got, _ := os.ReadFile(victim); string(got) != "secret" || len(names) != 3 {
				t.Fatalf("outside changed: %q %v", got, names)
			}
		})
	}
}

// TestDirBackendInRootSymlink: a symlink that stays inside the root is
// followed, as os.Root does.
func TestDirBackendInRootSymlink(t *testing.T) {
	for name, mk := range map[string]func(*testing.T) *pool.DirBackend{"openat2": newDir, "osroot": newDirOSRoot} {
		t.Run(name, func(t *testing.T) { testDirBackendInRootSymlink(t, mk(t)) })
	}
}

func testDirBackendInRootSymlink(t *testing.T, b *pool.DirBackend) {
	ctx := context.Background()
	if err := b.Put(ctx, "real/x", strings.NewReader("data"), 4); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(b.Location(), "alias")); err != nil {
		t.Fatal(err)
	}
	rc, err := b.Get(ctx, "alias/x", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, _ := io.ReadAll(rc); string(got) != "data" {
		t.Fatalf("got %q", got)
	}
}
