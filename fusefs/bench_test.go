package fusefs

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// benchMount stores a tree of dirs×files small files plus a few large ones
// in a fresh pool and mounts it; it returns the snapshot's source root.
func benchMount(b *testing.B, dirs, files int) string {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	for d := range dirs {
		for f := range files {
			p := filepath.Join(src, fmt.Sprintf("d%03d/sub/f%04d.txt", d, f))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(p, randBytes(uint64(d*files+f), 512+(d*131+f*17)%16384), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(src, "large.bin"), randBytes(99, 40<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	bk, err := pool.OpenBackend(ctx, filepath.Join(dir, "pool"), pool.OpenBackendOptions{Create: true})
	if err != nil {
		b.Fatal(err)
	}
	p, err := pool.Init(ctx, bk, pool.InitOptions{})
	if err != nil {
		b.Fatal(err)
	}
	storeDirB(b, ctx, p, src)
	mp := b.TempDir()
	mctx, cancel := context.WithCancel(ctx)
	s, err := Mount(mctx, mp, p.FS(ctx), Options{})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() { cancel(); s.Unmount() })
	return filepath.Join(mp, "bench", "latest", "root")
}

func storeDirB(b *testing.B, ctx context.Context, p *pool.Pool, src string) {
	w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: "bench", Source: "root", Start: time.Unix(1700000000, 0)})
	if err != nil {
		b.Fatal(err)
	}
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := pool.Entry{Mode: info.Mode().Perm(), ModTime: info.ModTime().UnixNano()}
		if d.IsDir() {
			e.Type = pool.TypeDir
			return w.Add(ctx, filepath.ToSlash(rel), e, nil)
		}
		e.Type, e.Size = pool.TypeFile, info.Size()
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return w.Add(ctx, filepath.ToSlash(rel), e, f)
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := w.Finish(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkMount measures, through a kernel mount: a stat walk (ls -lR), a
// full read of every file (tar cf /dev/null) and random 64 KiB reads of a
// 40 MiB file. The first iteration of each is cold.
func BenchmarkMount(b *testing.B) {
	needFUSE(&testing.T{})
	root := benchMount(b, 40, 50)
	b.Run("walk", func(b *testing.B) {
		for b.Loop() {
			n := 0
			filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					b.Fatal(err)
				}
				if _, err := d.Info(); err != nil {
					b.Fatal(err)
				}
				n++
				return nil
			})
			if n != 40*52+2 {
				b.Fatalf("walked %d", n)
			}
		}
	})
	b.Run("read-all", func(b *testing.B) {
		for b.Loop() {
			filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() {
					return err
				}
				f, err := os.Open(p)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, f)
				f.Close()
				return nil
			})
		}
	})
	b.Run("random-64k", func(b *testing.B) {
		f, err := os.Open(filepath.Join(root, "large.bin"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 64<<10)
		i := int64(0)
		for b.Loop() {
			i = (i*7919 + 104729) % (40<<20 - 64<<10)
			if _, err := f.ReadAt(buf, i); err != nil {
				b.Fatal(err)
			}
		}
	})
}
