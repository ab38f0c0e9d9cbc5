package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"
)

func TestSnapshotFS(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	src := t.TempDir()
	genTree(t, src, 4, 80, 2<<20+777)
	m := backupDir(t, ctx, p, src, "h", "s")
	fsys := p.SnapshotFS(ctx, m)
	if err := fstest.TestFS(fsys, "big0.bin", "d00/e0/f0000.txt", "empty/deeper", "link-rel", "hard1"); err != nil {
		t.Fatal(err)
	}
	// Content through the fs.File, at an offset, via io.ReaderAt.
	want, _ := os.ReadFile(filepath.Join(src, "big0.bin"))
	f, err := fsys.Open("big0.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 512<<10)
	if n, err := f.(io.ReaderAt).ReadAt(buf, 1<<20); err != nil || !bytes.Equal(buf[:n], want[1<<20:1<<20+n]) {
		t.Fatalf("ReadAt: %d, %v", n, err)
	}
	// Symlinks are links, not followed.
	fi, err := fs.Stat(fsys, "link-abs")
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("Stat(link-abs) = %v, %v", fi, err)
	}
	if tgt, err := fs.ReadLink(fsys, "link-abs"); err != nil || tgt != "/etc/passwd" {
		t.Fatalf("ReadLink = %q, %v", tgt, err)
	}
	if _, err := fs.Stat(fsys, "link-rel/f0000.txt"); err == nil {
		t.Fatal("a snapshot symlink was followed")
	}
	// Hard links keep their identity, visible through Sys.
	h1, _ := fs.Stat(fsys, "hard1")
	h2, _ := fs.Stat(fsys, "hard2")
	e1, e2 := h1.Sys().(*Entry), h2.Sys().(*Entry)
	if e1.HardLink == 0 || e1.HardLink != e2.HardLink || e1.Content != e2.Content {
		t.Fatalf("hard links: %+v %+v", e1, e2)
	}
}

func TestPoolFS(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	src := t.TempDir()
	genTree(t, src, 5, 30)
	t0 := time.Date(2026, 11, 23, 19, 30, 0, 0, time.UTC)
	write := func(host, source string, start time.Time, partial bool) *Manifest {
		w, err := p.NewWriter(ctx, SnapshotMeta{Host: host, Source: source, Start: start})
		if err != nil {
			t.Fatal(err)
		}
		if err := addDir(ctx, w, src); err != nil {
			t.Fatal(err)
		}
		if partial {
			w.RecordError("x", errors.New("boom"))
		}
		m, err := w.Finish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	write("web1", "etc", t0, false)
	write("web1", "home", t0, false) // same host and second: same directory
	write("web1", "etc", t0.Add(time.Hour), false)
	write("web1", "etc", t0.Add(2*time.Hour), true) // partial: not latest
	write("db1", "dump", t0, false)
	write("db1", "dump", t0, false) // same host, second and source
	fsys := p.FS(ctx)
	if err := fstest.TestFS(fsys,
		"web1/2026-11-23T19-30-00Z/etc/d00/e0/f0000.txt",
		"web1/2026-11-23T19-30-00Z/home/hard1",
		"web1/2026-11-23T21-30-00Z/etc",
		"web1/latest",
		"db1/latest"); err != nil {
		t.Fatal(err)
	}
	if tgt, err := fs.ReadLink(fsys, "web1/latest"); err != nil || tgt != "2026-11-23T20-30-00Z" {
		t.Fatalf("web1/latest -> %q, %v", tgt, err)
	}
	li, err := fs.Lstat(fsys, "web1/latest")
	if err != nil || li.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("Lstat(latest) = %v, %v", li, err)
	}
	si, err := fs.Stat(fsys, "web1/latest")
	if err != nil || !si.IsDir() || si.Name() != "latest" {
		t.Fatalf("Stat(latest) = %v, %v", si, err)
	}
	a, err := fs.ReadFile(fsys, "web1/latest/etc/hard1")
	b, _ := os.ReadFile(filepath.Join(src, "hard1"))
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("read through latest: %q, %v", a, err)
	}
	es, err := fs.ReadDir(fsys, "db1/2026-11-23T19-30-00Z")
	if err != nil || len(es) != 2 || es[0].Name() != "dump" {
		t.Fatalf("duplicate sources: %v, %v", es, err)
	}
	if _, err := fs.Stat(fsys, "web1/../db1"); !errors.Is(err, fs.ErrInvalid) {
		t.Fatalf("invalid path: %v", err)
	}
	// A new snapshot appears after Refresh.
	write("new1", "s", t0, false)
	fsys.(*TreeFS).Refresh()
	if _, err := fs.Stat(fsys, "new1/latest/s"); err != nil {
		t.Fatal(err)
	}
}

// TestPoolFSConcurrent reads through one pool tree from many goroutines
// while it is refreshed, as FUSE and WebDAV do.
func TestPoolFSConcurrent(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	src := t.TempDir()
	genTree(t, src, 9, 40, 2<<20+5)
	backupDir(t, ctx, p, src, "h", "s")
	fsys := p.FS(ctx).(*TreeFS)
	want, _ := os.ReadFile(filepath.Join(src, "big0.bin"))
	errc := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			for i := 0; i < 20; i++ {
				if g == 0 {
					fsys.Refresh()
				}
				got, err := fs.ReadFile(fsys, "h/latest/s/big0.bin")
				if err != nil || !bytes.Equal(got, want) {
					errc <- fmt.Errorf("read: %v (%d bytes)", err, len(got))
					return
				}
				if _, err := fs.ReadDir(fsys, "h/latest/s/d03/e1"); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}
