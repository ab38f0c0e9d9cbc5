package fusefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fusefs/blockcache"
	"github.com/cairn-backup/cairn/pool"
)

// poolMount stores files as one snapshot of host "h", source "root" in a
// fresh pool and mounts the pool; it returns the source root in the mount.
func poolMount(t *testing.T, files map[string][]byte, opts Options) (string, *Server, *countingBackend) {
	t.Helper()
	needFUSE(t)
	ctx := context.Background()
	dir := t.TempDir()
	b, err := pool.OpenBackend(ctx, filepath.Join(dir, "pool"), pool.OpenBackendOptions{Create: true})
	must(t, err)
	cb := &countingBackend{Backend: b}
	p, err := pool.Init(ctx, cb, pool.InitOptions{})
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
	return filepath.Join(mp, "h", "latest", "root"), s, cb
}

// countingBackend counts the objects read from a pool's backend.
type countingBackend struct {
	pool.Backend
	gets atomic.Int64
}

func (c *countingBackend) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if strings.HasPrefix(name, "objects/") {
		c.gets.Add(1)
	}
	return c.Backend.Get(ctx, name, off, length)
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
	root, s, _ := poolMount(t, map[string][]byte{"big.bin": data}, Options{CacheBytes: 4 * blockcache.BlockSize})
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
// ones fetched ahead: once prefetched, reading them reads nothing more
// from the pool, and every file still has its own bytes.
func TestSiblingReadAhead(t *testing.T) {
	files := map[string][]byte{}
	for i := range 12 {
		files[fmt.Sprintf("d/f%02d", i)] = randBytes(uint64(100+i), 20000+i*1000)
	}
	files["d/g-big"] = randBytes(99, 3*blockcache.BlockSize+5) // after f11
	root, s, cb := poolMount(t, files, Options{})
	d := filepath.Join(root, "d")
	ents, err := os.ReadDir(d)
	must(t, err)
	if len(ents) != 13 {
		t.Fatalf("%d entries", len(ents))
	}
	read := func(name string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, name))
		must(t, err)
		if !bytes.Equal(b, files[name]) {
			t.Fatalf("%s: wrong bytes", name)
		}
	}
	// The read-ahead runs in the background and is skipped while its
	// workers are busy: wait for it after each read.
	deadline := time.Now().Add(time.Minute)
	settle := func(warmed int64, blocks int) {
		t.Helper()
		for s.tree.warmed.Load() < warmed || s.CacheStats().Blocks < blocks || s.CacheStats().Busy > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("sibling read-ahead: %d files warmed (want %d), %+v", s.tree.warmed.Load(), warmed, s.CacheStats())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	read("d/f00")
	settle(0, 0)
	read("d/f01") // second in order: f02…f09 are fetched ahead
	settle(8, 0)
	// Each next file queues one more (8 ahead): f10, f11, then the big
	// file's first block.
	read("d/f02")
	settle(9, 0)
	read("d/f03")
	settle(10, 0)
	read("d/f04")
	settle(10, 1)
	before := cb.gets.Load()
	for i := 5; i < 12; i++ {
		read(fmt.Sprintf("d/f%02d", i))
	}
	if n := cb.gets.Load() - before; n != 0 {
		t.Errorf("reading 7 prefetched files read %d objects from the pool, want 0", n)
	}
	// The big file's first block came ahead; the rest follows its reader.
	read("d/g-big")
	if st := s.CacheStats(); st.Fetches != 4 || st.Hits == 0 {
		t.Errorf("a 4-block file after its first block was prefetched: %+v (want 4 fetches in all, a hit)", st)
	}
}

// Opens out of listing order fetch nothing ahead.
func TestSiblingReadAheadNeedsOrder(t *testing.T) {
	files := map[string][]byte{}
	for i := range 6 {
		files[fmt.Sprintf("d/f%02d", i)] = randBytes(uint64(200+i), 5000)
	}
	root, s, _ := poolMount(t, files, Options{})
	_, err := os.ReadDir(filepath.Join(root, "d"))
	must(t, err)
	for _, name := range []string{"d/f03", "d/f01", "d/f05"} {
		b, err := os.ReadFile(filepath.Join(root, name))
		must(t, err)
		if !bytes.Equal(b, files[name]) {
			t.Fatalf("%s: wrong bytes", name)
		}
	}
	if st := s.CacheStats(); st.Prefetches != 0 || s.tree.warmed.Load() != 0 {
		t.Errorf("reads out of order: %d prefetches, %d files warmed (want 0, 0)", st.Prefetches, s.tree.warmed.Load())
	}
}

// A recursive listing (with the subdirectory read-ahead of each listed
// directory) shows exactly the stored tree, and reads each directory's
// tree from the pool about once.
func TestWalkWithSubdirReadAhead(t *testing.T) {
	files := map[string][]byte{}
	var want []string
	for i := range 30 {
		for j := range 4 {
			name := fmt.Sprintf("top/d%02d/s%d/f.txt", i, j)
			files[name] = []byte(name)
			want = append(want, name)
		}
	}
	root, s, cb := poolMount(t, files, Options{})
	var got []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(root, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	must(t, err)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("walk found %d files, want %d", len(got), len(want))
	}
	for s.CacheStats().Busy > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	// 1 + 1 + 30 + 120 directories (root, top, dNN, sN): a tree object
	// each, and the snapshot's manifest; some slack for a tree the
	// foreground and a worker decoded at the same time.
	if n := cb.gets.Load(); n > 152+40 {
		t.Errorf("the walk read %d objects for 152 directories", n)
	}
}

// Files inside a snapshot are opened without asking the server: after the
// first open answers ENOSYS, the kernel sends no OPEN, RELEASE or FLUSH,
// and reads without a handle, served by the node; every file, opened
// several times and with its pages dropped, still reads back its own
// bytes; and an open for writing still fails.
func TestOpenWithoutRequests(t *testing.T) {
	files := map[string][]byte{"big.bin": randBytes(7, 2*blockcache.BlockSize+99)}
	for i := range 20 {
		files[fmt.Sprintf("d/f%02d", i)] = randBytes(uint64(300+i), 1000+i*777)
	}
	root, s, _ := poolMount(t, files, Options{})
	check := func(name string, f *os.File) {
		t.Helper()
		b, err := io.ReadAll(f)
		must(t, err)
		if !bytes.Equal(b, files[name]) {
			t.Fatalf("%s: wrong bytes (%d, want %d)", name, len(b), len(files[name]))
		}
	}
	for round := range 3 {
		var open []*os.File
		for name := range files {
			f, err := os.Open(filepath.Join(root, name))
			must(t, err)
			open = append(open, f)
			check(name, f)
			if round == 2 {
				dropPages(t, filepath.Join(root, name))
				_, err := f.Seek(0, io.SeekStart)
				must(t, err)
				check(name, f)
			}
		}
		for _, f := range open {
			must(t, f.Close())
		}
	}
	if o, fl := s.tree.opens.Load(), s.tree.flushes.Load(); o != 1 || fl != 1 {
		t.Errorf("63 opens and closes sent %d OPEN and %d FLUSH requests, want 1 and 1", o, fl)
	}
	if _, err := os.OpenFile(filepath.Join(root, "d/f00"), os.O_WRONLY, 0); !errors.Is(err, syscall.EROFS) {
		t.Errorf("open for writing: %v, want EROFS", err)
	}
}
