package blockcache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func data(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed*31+7))
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

// source is an io.ReaderAt over b that counts the bytes and calls it serves
// and can be told to fail.
type source struct {
	b     []byte
	calls atomic.Int64
	bytes atomic.Int64
	fail  atomic.Bool
	gate  chan struct{} // when set, every ReadAt waits for it to close
}

var errBroken = errors.New("broken source")

func (s *source) ReadAt(p []byte, off int64) (int, error) {
	if s.gate != nil {
		<-s.gate
	}
	s.calls.Add(1)
	if s.fail.Load() {
		return 0, errBroken
	}
	if off >= int64(len(s.b)) {
		return 0, io.EOF
	}
	n := copy(p, s.b[off:])
	s.bytes.Add(int64(n))
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Random reads of random sizes, across block boundaries and up to and past
// the end, return exactly the file's bytes.
func TestRandomReadsMatch(t *testing.T) {
	const size = 5*BlockSize + 12345
	want := data(1, size)
	c := New(Options{MaxBytes: 1, RandomWarmup: -1}) // 4 blocks, the least
	f := c.Open("x", &source{b: want}, size)
	r := rand.New(rand.NewPCG(9, 9))
	for range 150 {
		off := r.Int64N(size + 100)
		n := 1 + r.IntN(BlockSize+BlockSize/4)
		got := make([]byte, n)
		k, err := f.ReadAt(got, off)
		end := min(off+int64(n), size)
		if off >= size {
			if k != 0 || err != io.EOF {
				t.Fatalf("ReadAt(%d, %d) past the end = %d, %v", n, off, k, err)
			}
			continue
		}
		if k != int(end-off) {
			t.Fatalf("ReadAt(%d, %d) = %d bytes, want %d", n, off, k, end-off)
		}
		if (err == io.EOF) != (end == size) || (err != nil && err != io.EOF) {
			t.Fatalf("ReadAt(%d, %d) err = %v", n, off, err)
		}
		if !bytes.Equal(got[:k], want[off:end]) {
			t.Fatalf("ReadAt(%d, %d): wrong bytes", n, off)
		}
	}
	if st := c.Stats(); st.Bytes > c.MaxBytes() || st.Evictions == 0 {
		t.Fatalf("stats %+v: bound %d not kept, or nothing evicted", st, c.MaxBytes())
	}
}

// Slice never crosses a block boundary and aliases one block.
func TestSliceStopsAtBlockEnd(t *testing.T) {
	want := data(2, 2*BlockSize+10)
	c := New(Options{ReadAhead: -1, RandomWarmup: -1})
	f := c.Open("", &source{b: want}, int64(len(want)))
	b, err := f.Slice(BlockSize-5, 100)
	if err != nil || !bytes.Equal(b, want[BlockSize-5:BlockSize]) {
		t.Fatalf("Slice across the boundary = %d bytes, %v; want the 5 before it", len(b), err)
	}
	b, err = f.Slice(2*BlockSize+4, 100)
	if err != nil || !bytes.Equal(b, want[2*BlockSize+4:]) {
		t.Fatalf("Slice of the tail = %d bytes, %v", len(b), err)
	}
	if _, err := f.Slice(int64(len(want)), 1); err != io.EOF {
		t.Fatalf("Slice at the end: %v, want EOF", err)
	}
	if _, err := f.Slice(-1, 1); err == nil {
		t.Fatal("Slice at a negative offset succeeded")
	}
}

// The least recently used block goes first, the bound holds, and an
// evicted block is fetched again (with the right bytes).
func TestEviction(t *testing.T) {
	want := data(3, 8*BlockSize)
	src := &source{b: want}
	c := New(Options{MaxBytes: 4 * BlockSize, ReadAhead: -1, RandomWarmup: -1})
	f := c.Open("e", src, int64(len(want)))
	read := func(idx int64) {
		t.Helper()
		b, err := f.Slice(idx*BlockSize, BlockSize)
		if err != nil || !bytes.Equal(b, want[idx*BlockSize:(idx+1)*BlockSize]) {
			t.Fatalf("block %d: %d bytes, %v", idx, len(b), err)
		}
	}
	for i := range int64(4) {
		read(i)
	}
	read(0) // 0 is now the most recent; 1 the least
	read(4) // evicts 1
	if st := c.Stats(); st.Blocks != 4 || st.Bytes != 4*BlockSize || st.Evictions != 1 || st.Fetches != 5 {
		t.Fatalf("after 5 distinct blocks in a 4-block cache: %+v", st)
	}
	before := src.calls.Load()
	read(0)
	read(2)
	read(3)
	if src.calls.Load() != before {
		t.Fatal("blocks still held were fetched again")
	}
	read(1)
	if src.calls.Load() != before+1 {
		t.Fatal("the evicted block was not fetched again")
	}
}

// Equal ids share blocks: a second file with the same content identity
// costs no fetch.
func TestSharedIdentity(t *testing.T) {
	want := data(4, 3*BlockSize)
	src1, src2 := &source{b: want}, &source{b: want}
	c := New(Options{ReadAhead: -1, RandomWarmup: -1})
	f1 := c.Open("digest", src1, int64(len(want)))
	f2 := c.Open("digest", src2, int64(len(want)))
	g := make([]byte, len(want))
	if _, err := f1.ReadAt(g, 0); err != io.EOF && err != nil {
		t.Fatal(err)
	}
	if _, err := f2.ReadAt(g, 0); err != io.EOF && err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, want) || src2.calls.Load() != 0 {
		t.Fatalf("second file: equal=%v, %d fetches (want 0)", bytes.Equal(g, want), src2.calls.Load())
	}
	// No identity: private.
	f3 := c.Open("", src2, int64(len(want)))
	if _, err := f3.ReadAt(g[:10], 0); err != nil {
		t.Fatal(err)
	}
	if src2.calls.Load() != 1 {
		t.Fatal("a file without identity was served another file's blocks")
	}
}

// Many readers of one missing block cause one fetch.
func TestConcurrentMissesFetchOnce(t *testing.T) {
	want := data(5, 2*BlockSize)
	src := &source{b: want, gate: make(chan struct{})}
	c := New(Options{ReadAhead: -1, RandomWarmup: -1})
	f := c.Open("c", src, int64(len(want)))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			off := int64(i * 1000)
			b := make([]byte, 4096)
			if _, err := f.ReadAt(b, off); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(b, want[off:off+4096]) {
				errs <- errors.New("wrong bytes")
			}
		}()
	}
	// Let the readers pile up on the first fetch, then release it.
	for c.Stats().Waits < 15 {
		runtimeGosched()
	}
	close(src.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("%d fetches for one block read by 16 readers at once", n)
	}
}

// Concurrent readers of several files at random offsets, through a cache
// far smaller than the files, all see the right bytes (run with -race).
func TestConcurrentReaders(t *testing.T) {
	const files, size = 3, 3*BlockSize + 777
	c := New(Options{MaxBytes: 4 * BlockSize})
	var fs []*File
	var wants [][]byte
	for i := range files {
		w := data(uint64(10+i), size)
		wants = append(wants, w)
		fs = append(fs, c.Open(string(rune('a'+i)), &source{b: w}, size))
	}
	var wg sync.WaitGroup
	var bad atomic.Int64
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			buf := make([]byte, 200<<10)
			for range 60 {
				i := r.IntN(files)
				off := r.Int64N(size)
				n := 1 + r.IntN(len(buf))
				k, err := fs[i].ReadAt(buf[:n], off)
				if err != nil && err != io.EOF {
					bad.Add(1)
					continue
				}
				if !bytes.Equal(buf[:k], wants[i][off:off+int64(k)]) {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d reads returned wrong bytes or errors", bad.Load())
	}
	st := c.Stats()
	if st.Bytes > c.MaxBytes() {
		t.Fatalf("cache holds %d bytes, bound %d", st.Bytes, c.MaxBytes())
	}
}

// A sequential reader gets its next blocks fetched ahead, and whole-file
// digests match.
func TestReadAheadSequential(t *testing.T) {
	want := data(6, 6*BlockSize+3)
	src := &source{b: want}
	c := New(Options{ReadAhead: 2, RandomWarmup: -1})
	f := c.Open("s", src, int64(len(want)))
	h := sha256.New()
	buf := make([]byte, 128<<10)
	for off := int64(0); ; {
		n, err := f.ReadAt(buf, off)
		h.Write(buf[:n])
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if got, w := h.Sum(nil), sha256.Sum256(want); !bytes.Equal(got, w[:]) {
		t.Fatal("sequential read: digest differs")
	}
	st := c.Stats()
	if st.Prefetches == 0 {
		t.Fatalf("no read-ahead for a sequential reader: %+v", st)
	}
	if st.Fetches != 7 {
		t.Fatalf("%d fetches for a 7-block file read once (read-ahead must not fetch twice)", st.Fetches)
	}
}

// Random misses warm a small file whole; a large one is left alone.
func TestRandomWarmup(t *testing.T) {
	want := data(7, 8*BlockSize)
	src := &source{b: want}
	c := New(Options{MaxBytes: 16 * BlockSize, ReadAhead: -1, RandomWarmup: 2})
	f := c.Open("w", src, int64(len(want)))
	b := make([]byte, 100)
	for _, idx := range []int64{5, 1} { // two random-order misses
		if _, err := f.ReadAt(b, idx*BlockSize+7); err != nil {
			t.Fatal(err)
		}
	}
	// The warm-up runs in the background: wait for the blocks to arrive.
	for c.Stats().Blocks < 8 {
		runtimeGosched()
	}
	before := src.calls.Load()
	for idx := range int64(8) {
		if _, err := f.ReadAt(b, idx*BlockSize+99); err != nil || !bytes.Equal(b, want[idx*BlockSize+99:idx*BlockSize+199]) {
			t.Fatalf("block %d after warm-up: %v", idx, err)
		}
	}
	if src.calls.Load() != before {
		t.Fatal("reads after the warm-up fetched again")
	}

	big := data(8, 9*BlockSize) // more than half of the cache
	bsrc := &source{b: big}
	g := c.Open("big", bsrc, int64(len(big)))
	for _, idx := range []int64{7, 2, 5} {
		if _, err := g.ReadAt(b, idx*BlockSize); err != nil {
			t.Fatal(err)
		}
	}
	if n := bsrc.calls.Load(); n != 3 {
		t.Fatalf("a file larger than half the cache was warmed: %d fetches for 3 reads", n)
	}
}

// A failing source fails the read, is not cached, and a later read after
// the source recovers succeeds.
func TestErrorsNotCached(t *testing.T) {
	want := data(9, BlockSize+5)
	src := &source{b: want}
	src.fail.Store(true)
	c := New(Options{ReadAhead: -1, RandomWarmup: -1})
	f := c.Open("f", src, int64(len(want)))
	b := make([]byte, 10)
	if _, err := f.ReadAt(b, 3); !errors.Is(err, errBroken) {
		t.Fatalf("read from a broken source: %v", err)
	}
	src.fail.Store(false)
	if _, err := f.ReadAt(b, 3); err != nil || !bytes.Equal(b, want[3:13]) {
		t.Fatalf("read after recovery: %v", err)
	}
	// A source shorter than the size it was opened with is an error, not
	// silent zeros.
	g := c.Open("short", &source{b: want[:100]}, int64(len(want)))
	if _, err := g.ReadAt(b, 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short source: %v, want ErrUnexpectedEOF", err)
	}
}

// runtimeGosched yields while a test waits for background work.
func runtimeGosched() {
	runtime.Gosched()
	time.Sleep(100 * time.Microsecond)
}

// Prefetch fetches the first blocks of files not open yet, skips files
// without identity, failing opens and blocks already held, and a later
// Open of the same identity reads from memory.
func TestPrefetch(t *testing.T) {
	a, b := data(30, 2*BlockSize+1), data(31, 1000)
	srcA, srcB := &source{b: a}, &source{b: b}
	c := New(Options{ReadAhead: -1, RandomWarmup: -1})
	opens := 0
	open := func(s *source) func() (io.ReaderAt, func(), error) {
		return func() (io.ReaderAt, func(), error) { opens++; return s, nil, nil }
	}
	files := []Ahead{
		{ID: "", Size: 5, Blocks: 1, Open: open(srcB)},
		{ID: "a", Size: int64(len(a)), Blocks: 2, Open: open(srcA)},
		{ID: "broken", Size: 10, Blocks: 1, Open: func() (io.ReaderAt, func(), error) { return nil, nil, errBroken }},
		{ID: "b", Size: int64(len(b)), Blocks: 5, Open: open(srcB)},
	}
	if !c.Prefetch(files) {
		t.Fatal("no worker free in an idle cache")
	}
	for c.Stats().Blocks < 3 {
		runtimeGosched()
	}
	for c.Stats().Prefetches > 0 && len(c.sem) > 0 {
		runtimeGosched()
	}
	if opens != 2 || srcA.calls.Load() != 2 || srcB.calls.Load() != 1 {
		t.Fatalf("opens %d, fetches a=%d b=%d; want 2, 2, 1", opens, srcA.calls.Load(), srcB.calls.Load())
	}
	fa := c.Open("a", srcA, int64(len(a)))
	got := make([]byte, 2*BlockSize)
	if _, err := fa.ReadAt(got, 0); err != nil || !bytes.Equal(got, a[:2*BlockSize]) {
		t.Fatalf("prefetched blocks: %v", err)
	}
	if srcA.calls.Load() != 2 {
		t.Fatal("prefetched blocks were fetched again")
	}
	// Everything held: a second prefetch opens nothing.
	if !c.Prefetch(files[1:2]) {
		t.Fatal("no worker free")
	}
	for len(c.sem) > 0 {
		runtimeGosched()
	}
	if opens != 2 {
		t.Fatalf("a file whose blocks are held was opened again (%d opens)", opens)
	}
}

// An evicted block's buffer is reused for the next fetch, but never while
// a Ref still holds it nor after Slice handed it out: the held bytes stay
// the block's own through any amount of eviction.
func TestBufferReuse(t *testing.T) {
	want := data(11, 12*BlockSize)
	src := &source{b: want}
	c := New(Options{MaxBytes: 4 * BlockSize, ReadAhead: -1, RandomWarmup: -1})
	f := c.Open("r", src, int64(len(want)))
	held, err := f.Ref(5, 100) // block 0, held throughout
	if err != nil {
		t.Fatal(err)
	}
	sliced, err := f.Slice(BlockSize+7, 100) // block 1, handed out for good
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		for idx := int64(2); idx < 12; idx++ {
			b := make([]byte, 300)
			if _, err := f.ReadAt(b, idx*BlockSize+int64(round)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, want[idx*BlockSize+int64(round):][:300]) {
				t.Fatalf("round %d block %d: wrong bytes", round, idx)
			}
			if !bytes.Equal(held.Data, want[5:105]) || !bytes.Equal(sliced, want[BlockSize+7:][:100]) {
				t.Fatalf("round %d block %d: a held block's buffer was reused", round, idx)
			}
		}
	}
	held.Release()
	st := c.Stats()
	// 2 + 3×10 fetches: every one after the cache filled (and the first
	// evictions freed a buffer) reused one.
	if st.Fetches != 32 || st.Reused < 20 {
		t.Fatalf("%+v: want 32 fetches, most into reused buffers", st)
	}
	// The last block is short: its buffer is a reused full one, or its own.
	r, err := f.Ref(int64(len(want))-10, 100)
	if err != nil || !bytes.Equal(r.Data, want[len(want)-10:]) {
		t.Fatalf("tail: %d bytes, %v", len(r.Data), err)
	}
	r.Release()
}
