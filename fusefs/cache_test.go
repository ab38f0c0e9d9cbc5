package fusefs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fusefs/blockcache"
	"github.com/cairn-backup/cairn/pool"
)

// poolMount stores files as one snapshot of host "h", source "root" in a
// fresh pool and mounts the pool; it returns the source root in the mount.
func poolMount(t *testing.T, files map[string][]byte, opts Options) (string, *Server) {
	t.Helper()
	needFUSE(t)
	ctx := context.Background()
	dir := t.TempDir()
	b, err := pool.OpenBackend(ctx, filepath.Join(dir, "pool"), pool.OpenBackendOptions{Create: true})
	must(t, err)
	p, err := pool.Init(ctx, b, pool.InitOptions{})
	must(t, err)
	src := filepath.Join(dir, "src")
	writeSrc(t, src, files)
	storeDir(t, ctx, p, "h", "root", src, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC))
	mp := t.TempDir()
	mctx, cancel := context.WithCancel(ctx)
	s, err := Mount(mctx, mp, p.FS(ctx), opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := s.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return filepath.Join(mp, "h", "latest", "root"), s
}

// dropPages drops the kernel's cached pages of one file, so its next reads
// reach the FUSE server (and so the block cache).
func dropPages(t *testing.T, p string) {
	t.Helper()
	f, err := os.Open(p)
	must(t, err)
	defer f.Close()
	// POSIX_FADV_DONTNEED = 4.
	if err := fadvise(f, 4); err != nil {
		t.Fatal(err)
	}
}

// Reads at random offsets and sizes, across the cache's block boundaries
// and the pool's chunk boundaries, from several readers at once and
// through a cache much smaller than the file, return the file's bytes; and
// the cache stays within its bound.
func TestBlockCacheRandomReads(t *testing.T) {
	data := randBytes(21, 9*blockcache.BlockSize+4321) // chunked by the pool
	root, s := poolMount(t, map[string][]byte{"big.bin": data}, Options{CacheBytes: 4 * blockcache.BlockSize})
	p := filepath.Join(root, "big.bin")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			f, err := os.Open(p)
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			buf := make([]byte, 3*blockcache.BlockSize/2)
			for range 40 {
				// Around a block boundary half of the time.
				off := r.Int64N(int64(len(data)))
				if r.IntN(2) == 0 {
					off = max(0, int64(1+r.IntN(9))*blockcache.BlockSize-int64(r.IntN(70000)))
				}
				n, err := f.ReadAt(buf[:1+r.IntN(len(buf))], off)
				if err != nil && err != io.EOF {
					errs <- err
					return
				}
				if !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
					errs <- fmt.Errorf("reader %d: wrong bytes at %d+%d", g, off, n)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The whole file, sequentially, from a cold page cache: same digest.
	dropPages(t, p)
	f, err := os.Open(p)
	must(t, err)
	got := digest(t, f)
	f.Close()
	if want := digest(t, bytes.NewReader(data)); got != want {
		t.Errorf("sequential read: sha256 %s, want %s", got, want)
	}
	st := s.CacheStats()
	if st.Bytes > 4*blockcache.BlockSize || st.Fetches == 0 {
		t.Errorf("cache stats %+v: bound 4 MiB not kept, or the cache was not used", st)
	}
	if st.Evictions == 0 {
		t.Errorf("a 10 MiB file through a 4 MiB cache evicted nothing: %+v", st)
	}
}

// A reader that opens a directory's files in listing order gets the next
// ones fetched ahead: once prefetched, reading them fetches nothing more,
// and every file still has its own bytes.
func TestSiblingReadAhead(t *testing.T) {
	files := map[string][]byte{}
	for i := range 12 {
		files[fmt.Sprintf("d/f%02d", i)] = randBytes(uint64(100+i), 20000+i*1000)
	}
	root, s := poolMount(t, files, Options{})
	d := filepath.Join(root, "d")
	ents, err := os.ReadDir(d)
	must(t, err)
	if len(ents) != 12 {
		t.Fatalf("%d entries", len(ents))
	}
	read := func(i int) {
		t.Helper()
		name := fmt.Sprintf("d/f%02d", i)
		b, err := os.ReadFile(filepath.Join(root, name))
		must(t, err)
		if !bytes.Equal(b, files[name]) {
			t.Fatalf("%s: wrong bytes", name)
		}
	}
	before := s.CacheStats()
	read(0)
	read(1) // second in order: f02… are fetched ahead
	// The read-ahead runs in the background: wait until it has fetched
	// the 8 files after f01 (f00 and f01 were fetched by the reads).
	deadline := time.Now().Add(time.Minute)
	for s.CacheStats().Fetches < before.Fetches+10 {
		if time.Now().After(deadline) {
			t.Fatalf("sibling read-ahead did not happen: %+v", s.CacheStats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	mid := s.CacheStats()
	for i := 2; i <= 9; i++ {
		read(i)
	}
	// f10 and f11 may be fetched ahead by the reads of f02…f09; nothing
	// in f02…f09 was fetched again.
	after := s.CacheStats()
	if after.Hits < mid.Hits+8 {
		t.Errorf("reads of prefetched files: %d cache hits, want ≥ 8 (%+v → %+v)", after.Hits-mid.Hits, mid, after)
	}
	read(10)
	read(11)
	if st := s.CacheStats(); st.Fetches != before.Fetches+12 {
		t.Errorf("12 files cost %d fetches, want 12 (each block once)", st.Fetches-before.Fetches)
	}
}

// One open in a directory fetches no sibling.
func TestSiblingReadAheadNeedsOrder(t *testing.T) {
	files := map[string][]byte{}
	for i := range 6 {
		files[fmt.Sprintf("d/f%02d", i)] = randBytes(uint64(200+i), 5000)
	}
	root, s := poolMount(t, files, Options{})
	_, err := os.ReadDir(filepath.Join(root, "d"))
	must(t, err)
	before := s.CacheStats()
	b, err := os.ReadFile(filepath.Join(root, "d/f03"))
	must(t, err)
	if !bytes.Equal(b, files["d/f03"]) {
		t.Fatal("wrong bytes")
	}
	// Out of order: f01 after f03.
	b, err = os.ReadFile(filepath.Join(root, "d/f01"))
	must(t, err)
	if !bytes.Equal(b, files["d/f01"]) {
		t.Fatal("wrong bytes")
	}
	if st := s.CacheStats(); st.Fetches != before.Fetches+2 || st.Prefetches != before.Prefetches {
		t.Errorf("two reads out of order: %d fetches, %d prefetches (want 2, 0)", st.Fetches-before.Fetches, st.Prefetches-before.Prefetches)
	}
}
