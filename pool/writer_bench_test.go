package pool

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// benchPool makes a pool for benchmarks under $CAIRN_BENCH_DIR when set
// (e.g. /dev/shm, to measure the Writer rather than a slow disk), else in
// a temporary directory. CAIRN_BENCH_OSROOT=1 (with CAIRN_BENCH_DIR)
// makes the DirBackend use its os.Root fallback instead of openat2.
func benchPool(b *testing.B) *Pool {
	parent := os.Getenv("CAIRN_BENCH_DIR")
	if parent == "" {
		p, _ := structPool(b)
		return p
	}
	dir, err := os.MkdirTemp(parent, "cairn-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	be, err := NewDirBackend(dir)
	if err != nil {
		b.Fatal(err)
	}
	if os.Getenv("CAIRN_BENCH_OSROOT") != "" && be.fd >= 0 {
		// Measure the os.Root fallback (the path taken without openat2).
		unix.Close(be.fd)
		be.fd = -1
	}
	p, err := Init(context.Background(), be, InitOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// benchCorpus is an in-memory tree: many small files (half text, half
// random) and a few large ones, so the benchmark measures the Writer and
// the pool, not a source walk.
type benchFile struct {
	path string
	data []byte
}

func makeBenchCorpus(nSmall, nLarge, largeSize int) (dirs []string, files []benchFile, total int64) {
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog 0123456789 cairn backup\n"), largeSize/60+1)
	for d := 0; d < nSmall/100+1; d++ {
		dirs = append(dirs, fmt.Sprintf("d%03d", d))
	}
	for i := 0; i < nSmall; i++ {
		n := 200 + (i*7919)%8000
		var data []byte
		if i%2 == 0 {
			data = append([]byte(fmt.Sprintf("file %d\n", i)), text[i%4096:i%4096+n]...)
		} else {
			data = cdcRand(uint64(i), n)
		}
		files = append(files, benchFile{fmt.Sprintf("d%03d/f%05d", i/100, i), data})
		total += int64(len(data))
	}
	for i := 0; i < nLarge; i++ {
		var data []byte
		if i%2 == 0 {
			data = append([]byte(fmt.Sprintf("large %d\n", i)), text[:largeSize]...)
		} else {
			data = cdcRand(uint64(1000+i), largeSize)
		}
		files = append(files, benchFile{fmt.Sprintf("large%d.bin", i), data})
		total += int64(len(data))
	}
	return dirs, files, total
}

func writeBenchCorpus(b *testing.B, p *Pool, dirs []string, files []benchFile) *Manifest {
	ctx := context.Background()
	w, err := p.NewWriter(ctx, SnapshotMeta{Host: "bench", Source: "corpus"})
	if err != nil {
		b.Fatal(err)
	}
	add := func(path string, e Entry, data []byte) {
		var r *bytes.Reader
		if e.Type == TypeFile {
			r = bytes.NewReader(data)
			if err := w.Add(ctx, path, e, r); err != nil {
				b.Fatal(err)
			}
			return
		}
		if err := w.Add(ctx, path, e, nil); err != nil {
			b.Fatal(err)
		}
	}
	add(".", Entry{Type: TypeDir, Mode: 0o755}, nil)
	fi := 0
	// Large files sit at the root, after the directories (walk order).
	for _, d := range dirs {
		add(d, Entry{Type: TypeDir, Mode: 0o755}, nil)
		for fi < len(files) && filepath.Dir(files[fi].path) == d {
			f := files[fi]
			add(f.path, Entry{Type: TypeFile, Mode: 0o644, Size: int64(len(f.data)), ModTime: int64(fi)}, f.data)
			fi++
		}
	}
	for ; fi < len(files); fi++ {
		f := files[fi]
		add(f.path, Entry{Type: TypeFile, Mode: 0o644, Size: int64(len(f.data))}, f.data)
	}
	m, err := w.Finish(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkWriter measures a first snapshot into an empty pool on disk:
// chunking, hashing, compression and writes, pipelined.
func BenchmarkWriter(b *testing.B) {
	dirs, files, total := makeBenchCorpus(20000, 8, 16<<20)
	b.SetBytes(total)
	var m *Manifest
	for b.Loop() {
		b.StopTimer()
		p := benchPool(b)
		b.StartTimer()
		m = writeBenchCorpus(b, p, dirs, files)
	}
	b.ReportMetric(float64(len(files))*float64(b.N)/b.Elapsed().Seconds(), "files/s")
	b.ReportMetric(float64(m.BytesNew)/float64(total), "stored/input")
}

// BenchmarkWriterUnchanged measures a second snapshot of unchanged data
// read again in full: everything dedups, nothing is written.
func BenchmarkWriterUnchanged(b *testing.B) {
	dirs, files, total := makeBenchCorpus(20000, 8, 16<<20)
	p := benchPool(b)
	writeBenchCorpus(b, p, dirs, files)
	b.SetBytes(total)
	for b.Loop() {
		m := writeBenchCorpus(b, p, dirs, files)
		if m.BytesNew != 0 {
			b.Fatalf("unchanged snapshot stored %d bytes", m.BytesNew)
		}
	}
	b.ReportMetric(float64(len(files))*float64(b.N)/b.Elapsed().Seconds(), "files/s")
}

// nullBackend keeps only object sizes: it measures the Writer's own
// pipeline (chunking, hashing, compression) without a filesystem.
type nullBackend struct {
	mu sync.Mutex
	m  map[string]int64
}

func (n *nullBackend) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	c, err := io.Copy(io.Discard, r)
	n.mu.Lock()
	n.m[name] = c
	n.mu.Unlock()
	return err
}
func (n *nullBackend) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	return nil, ErrNotFound
}
func (n *nullBackend) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s, ok := n.m[name]; ok {
		return ObjectInfo{Name: name, Size: s}, nil
	}
	return ObjectInfo{}, ErrNotFound
}
func (n *nullBackend) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	return nil
}
func (n *nullBackend) Delete(ctx context.Context, name string) error { return nil }
func (n *nullBackend) Location() string                              { return "null" }

// BenchmarkWriterNullBackend is BenchmarkWriter without storage I/O.
func BenchmarkWriterNullBackend(b *testing.B) {
	dirs, files, total := makeBenchCorpus(20000, 8, 16<<20)
	b.SetBytes(total)
	for b.Loop() {
		b.StopTimer()
		p, err := Init(context.Background(), &nullBackend{m: map[string]int64{}}, InitOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		writeBenchCorpus(b, p, dirs, files)
	}
	b.ReportMetric(float64(len(files))*float64(b.N)/b.Elapsed().Seconds(), "files/s")
}

// BenchmarkWriterReuse measures the incremental no-change snapshot: every
// file's content is reused from the previous snapshot (r == nil), so the
// cost is the walk, one existence check per file and the trees.
func BenchmarkWriterReuse(b *testing.B) {
	ctx := context.Background()
	dirs, files, _ := makeBenchCorpus(20000, 8, 16<<20)
	p := benchPool(b)
	m := writeBenchCorpus(b, p, dirs, files)
	prev := make([]Entry, len(files))
	for i, f := range files {
		e, err := p.Lookup(ctx, m.Root, f.path)
		if err != nil {
			b.Fatal(err)
		}
		prev[i] = e
	}
	for b.Loop() {
		w, err := p.NewWriter(ctx, SnapshotMeta{Host: "bench", Source: "corpus"})
		if err != nil {
			b.Fatal(err)
		}
		must := func(err error) {
			if err != nil {
				b.Fatal(err)
			}
		}
		must(w.Add(ctx, ".", Entry{Type: TypeDir, Mode: 0o755}, nil))
		fi := 0
		for _, d := range dirs {
			must(w.Add(ctx, d, Entry{Type: TypeDir, Mode: 0o755}, nil))
			for fi < len(files) && filepath.Dir(files[fi].path) == d {
				must(w.Add(ctx, files[fi].path, prev[fi], nil))
				fi++
			}
		}
		for ; fi < len(files); fi++ {
			must(w.Add(ctx, files[fi].path, prev[fi], nil))
		}
		m2, err := w.Finish(ctx)
		must(err)
		if m2.Root != m.Root {
			b.Fatal("reused snapshot has a different root")
		}
	}
	b.ReportMetric(float64(len(files))*float64(b.N)/b.Elapsed().Seconds(), "files/s")
}
