package images

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// TestTree builds a file pool with one file snapshot and two placeholder
// snapshots of an image source, and checks the overlaid restore tree:
// fstest.TestFS, the hidden placeholder directories, random reads with
// holes as zeros, latest, and PathOf.
func TestTree(t *testing.T) {
	ctx := context.Background()
	b, err := pool.CreateDirBackend(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.Init(ctx, b, pool.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t, false)
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)

	// A file snapshot of host h at t0.
	w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: "h", Source: "etc", Start: t0})
	if err != nil {
		t.Fatal(err)
	}
	w.Add(ctx, ".", pool.Entry{Type: pool.TypeDir, Mode: 0o755}, nil)
	w.Add(ctx, "hosts", pool.Entry{Type: pool.TypeFile, Mode: 0o644, Size: 5}, strings.NewReader("hello"))
	if _, err := w.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	// Block 0 data, block 1 a hole, a short data tail; v2 rewrites block 0.
	v1 := make([]byte, 2*BlockSize+1000)
	fill(v1, 0, 1)
	fill(v1, 2, 1)
	v2 := bytes.Clone(v1)
	fill(v2, 0, 2)
	var prev *Manifest
	var snaps []string
	for k, img := range [][]byte{v1, v2} {
		start := t0.Add(time.Duration(k+1) * time.Minute)
		labels := map[string]string{LabelImage: "h.disk"}
		w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: "h", Source: "disk", Start: start, Labels: labels})
		if err != nil {
			t.Fatal(err)
		}
		m, _, err := s.IngestReaderAt(ctx, "h.disk", bytes.NewReader(img), int64(len(img)),
			IngestOptions{VersionOptions: VersionOptions{Prev: prev, Snapshot: w.ID(), Time: start}})
		if err != nil {
			t.Fatal(err)
		}
		prev = m
		labels[LabelVersion], labels[LabelSize] = m.ID, strconv.Itoa(len(img))
		w.Add(ctx, ".", pool.Entry{Type: pool.TypeDir, Mode: 0o555}, nil)
		pm, err := w.Finish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if name, id, ok := Placeholder(pm); !ok || name != "h.disk" || id != m.ID {
			t.Fatalf("placeholder: %q %q %v", name, id, ok)
		}
		snaps = append(snaps, pm.ID)
	}
	tree := NewTree(ctx, p.FS(ctx), p, func() (*Store, error) { return s, nil })
	ts := func(k int) string { return t0.Add(time.Duration(k) * time.Minute).Format(pool.SnapshotTimeFormat) }
	img1, img2 := "h/"+ts(1)+"/images/disk.img", "h/"+ts(2)+"/images/disk.img"
	if err := fstest.TestFS(tree, "h/"+ts(0)+"/etc/hosts", img1, img2); err != nil {
		t.Fatal(err)
	}
	// The placeholder directory is hidden; images/ is there instead.
	es, err := fs.ReadDir(tree, "h/"+ts(1))
	if err != nil || len(es) != 1 || es[0].Name() != "images" || !es[0].IsDir() {
		t.Fatalf("snapshot time dir: %v %v", es, err)
	}
	if _, err := fs.Stat(tree, "h/"+ts(1)+"/disk"); err == nil {
		t.Fatal("the placeholder directory is visible")
	}
	for k, want := range [][]byte{v1, v2} {
		path := []string{img1, img2}[k]
		f, err := tree.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		ra := f.(io.ReaderAt)
		// A read across a hole and into data, at an odd offset.
		buf := make([]byte, BlockSize+333)
		off := int64(BlockSize - 111)
		if n, err := ra.ReadAt(buf, off); n != len(buf) || err != nil || !bytes.Equal(buf, want[off:off+int64(len(buf))]) {
			t.Fatalf("%s: ReadAt %d, %v", path, n, err)
		}
		all, err := io.ReadAll(f.(io.Reader))
		if err != nil || !bytes.Equal(all, want) {
			t.Fatalf("%s: read all: %v", path, err)
		}
		f.Close()
		if got, ok := tree.PathOf("h", snaps[k]); !ok || got != path {
			t.Fatalf("PathOf %s = %q, %v", snaps[k], got, ok)
		}
	}
	if target, err := fs.ReadLink(tree, "h/latest"); err != nil || target != ts(2) {
		t.Fatalf("latest -> %q, %v", target, err)
	}
	if fi, err := fs.Stat(tree, "h/latest/images/disk.img"); err != nil || fi.Size() != int64(len(v2)) {
		t.Fatalf("h/latest/images/disk.img: %v %v", fi, err)
	}
	// Without an image pool the listing stays, opening fails clearly.
	bare := NewTree(ctx, p.FS(ctx), p, func() (*Store, error) { return nil, nil })
	if _, err := bare.Open(img1); err == nil || !strings.Contains(err.Error(), "no image pool") {
		t.Fatalf("open without an image pool: %v", err)
	}
}
