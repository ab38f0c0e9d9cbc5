// Package blockcache keeps decoded blocks of immutable files in memory, for
// the restore tree's doors (the FUSE mount and the WebDAV share).
//
// A pool file is stored as zstd-compressed chunks of 256 KiB–4 MiB; a
// reader (pool.ContentReader) decodes a whole chunk to return any byte of
// it. Readers of a mount ask for 4–128 KiB at a time, often several at
// once (kernel read-ahead), so without help the same chunk is fetched and
// decoded again and again, and nothing is decoded ahead of the reader.
// blockcache sits on top of any io.ReaderAt and:
//
//   - splits files into aligned blocks of BlockSize bytes and keeps
//     recently used blocks in one LRU bounded by Options.MaxBytes (the
//     bound counts the blocks the cache holds; a block already handed to a
//     reader stays alive until that reader is done with it);
//   - fetches each missing block once, however many readers want it at the
//     same time (the others wait for that fetch);
//   - reads ahead: after two reads in a row that move forward through a
//     file, the next Options.ReadAhead blocks are fetched in the
//     background, at most Options.Workers fetches at a time across the
//     cache (when all are busy, read-ahead is skipped, never queued);
//   - warms small files read at random: after Options.RandomWarmup reads
//     that missed the cache and did not follow the previous read, a file
//     of at most half of MaxBytes is fetched whole in the background
//     (a database file or an archive opened from a snapshot is then read
//     from memory, and the decoding overlaps with the reader);
//   - keys blocks by a caller-chosen identity: the content digest for pool
//     files, so equal content in two snapshots shares its blocks.
//
// Blocks are never written to: slices returned by Slice and Ref must not
// be modified. The buffer of an evicted block is reused for a new one
// (a fresh MiB costs page faults and zeroing on every fetch), but only once
// nothing refers to it any more: a Ref holds its block until Release, and
// a block handed out by Slice is never reused. Files must not change while cached (the restore tree is
// immutable below the snapshot level); a file without a stable identity
// gets a unique one per Open and so is cached only while open.
package blockcache

import (
	"container/list"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
)

// BlockSize is the unit of caching: the average chunk size of the pool, so
// a block usually spans one or two chunks.
const BlockSize = 1 << 20

// Options bound a cache. The zero value is ready to use.
type Options struct {
	// MaxBytes bounds the bytes of the blocks held (default 64 MiB; at
	// least 4 blocks).
	MaxBytes int64
	// ReadAhead is how many blocks are fetched ahead of a sequential
	// reader (default 2; negative disables read-ahead).
	ReadAhead int
	// Workers bounds the background fetches in flight (default 2).
	Workers int
	// RandomWarmup is the number of random-order cache misses after which a
	// file no larger than MaxBytes/2 is read whole in the background
	// (default 4; negative disables).
	RandomWarmup int
}

// Cache is a bounded LRU of file blocks shared by many files. It is safe
// for concurrent use.
type Cache struct {
	max       int64
	readAhead int
	warmup    int
	sem       chan struct{}
	unique    atomic.Uint64

	mu       sync.Mutex
	size     int64
	order    *list.List // of *block, most recent first
	items    map[key]*list.Element
	inflight map[key]*call
	free     [][]byte // buffers of evicted blocks, cap BlockSize, for reuse

	// Counters, for tests and diagnostics.
	fetches   atomic.Int64 // blocks read from the underlying files
	hits      atomic.Int64 // block requests answered from memory
	waits     atomic.Int64 // requests that waited for another's fetch
	prefetch  atomic.Int64 // background fetches started
	evictions atomic.Int64
	reused    atomic.Int64 // fetches into the buffer of an evicted block
}

type key struct {
	id  string
	idx int64
}

// block is one cached block. refs, cached and pinned are guarded by the
// cache's mu; the buffer is reused only when refs is 0, the block has left
// the LRU and it was never pinned.
type block struct {
	k      key
	data   []byte
	refs   int  // holders outside the LRU (gets in progress, Refs)
	cached bool // in the LRU
	pinned bool // handed out by Slice: held for as long as the GC says
}

type call struct {
	done    chan struct{}
	waiters int // gets waiting for this fetch, each to hold a ref
	b       *block
	err     error
}

// maxFree bounds the idle buffers kept for reuse.
const maxFree = 8

// New returns an empty cache.
func New(o Options) *Cache {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 64 << 20
	}
	o.MaxBytes = max(o.MaxBytes, 4*BlockSize)
	if o.ReadAhead == 0 {
		o.ReadAhead = 2
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.RandomWarmup == 0 {
		o.RandomWarmup = 4
	}
	return &Cache{
		max:       o.MaxBytes,
		readAhead: max(o.ReadAhead, 0),
		warmup:    o.RandomWarmup,
		sem:       make(chan struct{}, o.Workers),
		order:     list.New(),
		items:     map[key]*list.Element{},
		inflight:  map[key]*call{},
	}
}

// Stats are a cache's counters since New.
type Stats struct {
	Fetches, Hits, Waits, Prefetches, Evictions int64
	Reused                                      int64 // fetches into an evicted block's buffer
	Bytes                                       int64 // held now
	Blocks                                      int   // held now
	Busy                                        int   // background workers at work now
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	b, n := c.size, len(c.items)
	c.mu.Unlock()
	return Stats{Fetches: c.fetches.Load(), Hits: c.hits.Load(), Waits: c.waits.Load(),
		Prefetches: c.prefetch.Load(), Evictions: c.evictions.Load(), Reused: c.reused.Load(), Bytes: b, Blocks: n, Busy: len(c.sem)}
}

// MaxBytes returns the bound on the bytes held.
func (c *Cache) MaxBytes() int64 { return c.max }

// File is one file read through the cache. It is safe for concurrent use.
type File struct {
	c    *Cache
	id   string
	ra   io.ReaderAt
	size int64

	mu     sync.Mutex
	next   int64 // offset just after the last read
	run    int   // reads in a row that continued where the previous ended or moved forward by < 1 block
	queued int64 // blocks below this index have had read-ahead started
	misses int   // random-order reads that had to fetch
	warmed bool  // the whole file has been queued
}

// Open returns f read through the cache. id identifies the content: equal
// ids must mean equal bytes (use the content digest); "" makes the file
// private to this File. size is the file's length.
func (c *Cache) Open(id string, ra io.ReaderAt, size int64) *File {
	if id == "" {
		id = "\x00" + strconv.FormatUint(c.unique.Add(1), 36)
	}
	return &File{c: c, id: id, ra: ra, size: size, next: -1}
}

// Size returns the file's length.
func (f *File) Size() int64 { return f.size }

// blocks returns how many blocks the file has.
func (f *File) blocks() int64 { return (f.size + BlockSize - 1) / BlockSize }

// Slice returns bytes of the file from off: at most n, and never past the
// end of the block holding off, so fewer than n when the range crosses a
// block boundary. The slice aliases the cache and must not be modified. At
// or past the end of the file it returns io.EOF.
func (f *File) Slice(off int64, n int) ([]byte, error) {
	r, err := f.Ref(off, n)
	if err != nil {
		return nil, err
	}
	f.c.mu.Lock()
	r.b.pinned = true
	f.c.mu.Unlock()
	r.Release()
	return r.Data, nil
}

// Ref is a view of cached bytes that holds their block: its buffer is not
// reused until Release, which must be called exactly once.
type Ref struct {
	Data []byte // must not be modified
	b    *block
	c    *Cache
}

// Release lets the block's buffer be reused once it leaves the cache.
func (r Ref) Release() {
	if r.b != nil {
		r.c.put(r.b)
	}
}

// Ref is like Slice but holds the block until Release, so that its buffer
// is reused after eviction (Slice's never is).
func (f *File) Ref(off int64, n int) (Ref, error) {
	if off < 0 {
		return Ref{}, errors.New("blockcache: negative offset")
	}
	if off >= f.size {
		return Ref{}, io.EOF
	}
	idx := off / BlockSize
	seq := f.track(off, n, idx)
	b, fetched, err := f.c.get(f, idx)
	if err != nil {
		return Ref{}, err
	}
	if fetched && !seq {
		f.missed()
	}
	data := b.data[off-idx*BlockSize:]
	if len(data) > n {
		data = data[:n]
	}
	return Ref{Data: data, b: b, c: f.c}, nil
}

// ReadAt implements io.ReaderAt through the cache.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		r, err := f.Ref(off+int64(done), len(p)-done)
		if err != nil {
			return done, err
		}
		done += copy(p[done:], r.Data)
		r.Release()
	}
	if off+int64(done) >= f.size {
		return done, io.EOF
	}
	return done, nil
}

// missed counts a random-order read that had to fetch its block, and
// queues the whole file once there were enough of them.
func (f *File) missed() {
	if f.c.warmup < 0 || f.size > f.c.max/2 {
		return
	}
	f.mu.Lock()
	f.misses++
	start := !f.warmed && f.misses >= f.c.warmup
	if start {
		f.warmed = true
	}
	f.mu.Unlock()
	if start {
		f.c.ahead(f, 0, f.blocks())
	}
}

// track notes a read of n bytes at off (in block idx), starts read-ahead
// when the reads move forward, and reports whether they do.
func (f *File) track(off int64, n int, idx int64) bool {
	f.mu.Lock()
	if f.next >= 0 && off >= f.next-int64(n) && off <= f.next+BlockSize {
		f.run++
	} else {
		f.run = 0
	}
	f.next = off + int64(n)
	seq := f.run >= 1
	from, to := int64(0), int64(0)
	if seq && f.c.readAhead > 0 {
		from = max(idx+1, f.queued)
		to = min(idx+1+int64(f.c.readAhead), f.blocks())
		if from < to {
			f.queued = to
		}
	}
	f.mu.Unlock()
	if from < to {
		f.c.ahead(f, from, to)
	}
	return seq
}

// ahead fetches blocks [from, to) of f in the background, in order, unless
// every worker is busy.
func (c *Cache) ahead(f *File, from, to int64) {
	select {
	case c.sem <- struct{}{}:
	default:
		// Let a later read start it again.
		f.mu.Lock()
		f.queued = min(f.queued, from)
		if from == 0 {
			f.warmed, f.misses = false, 0
		}
		f.mu.Unlock()
		return
	}
	c.prefetch.Add(1)
	go func() {
		defer func() { <-c.sem }()
		for i := from; i < to; i++ {
			b, _, err := c.get(f, i)
			if err != nil {
				return
			}
			c.put(b)
		}
	}()
}

// get returns block idx of f, from memory or fetched once, and whether
// this call fetched it. The caller holds a ref on the block and must put
// it.
func (c *Cache) get(f *File, idx int64) (*block, bool, error) {
	k := key{f.id, idx}
	c.mu.Lock()
	if el, ok := c.items[k]; ok {
		c.order.MoveToFront(el)
		b := el.Value.(*block)
		b.refs++
		c.mu.Unlock()
		c.hits.Add(1)
		return b, false, nil
	}
	if cl, ok := c.inflight[k]; ok {
		cl.waiters++
		c.mu.Unlock()
		c.waits.Add(1)
		<-cl.done
		return cl.b, false, cl.err
	}
	cl := &call{done: make(chan struct{})}
	c.inflight[k] = cl
	c.mu.Unlock()

	data, err := f.fetch(idx)
	c.fetches.Add(1)

	c.mu.Lock()
	delete(c.inflight, k)
	cl.err = err
	if err == nil {
		cl.b = &block{k: k, data: data, refs: 1 + cl.waiters}
		c.add(cl.b)
	}
	c.mu.Unlock()
	close(cl.done)
	return cl.b, true, cl.err
}

// put drops a ref taken by get.
func (c *Cache) put(b *block) {
	c.mu.Lock()
	b.refs--
	c.recycle(b)
	c.mu.Unlock()
}

// recycle keeps b's buffer for reuse if nothing refers to b any more. The
// caller holds mu.
func (c *Cache) recycle(b *block) {
	if b.refs > 0 || b.cached || b.pinned || cap(b.data) != BlockSize || len(c.free) >= maxFree {
		return
	}
	c.free = append(c.free, b.data[:0])
	b.data = nil
}

// buffer returns a buffer of n bytes for a block: a reused one when n is
// most of a block and one is idle. Its contents are overwritten by the
// fetch.
func (c *Cache) buffer(n int) []byte {
	if n > BlockSize/2 {
		c.mu.Lock()
		if k := len(c.free); k > 0 {
			buf := c.free[k-1]
			c.free[k-1] = nil
			c.free = c.free[:k-1]
			c.mu.Unlock()
			c.reused.Add(1)
			return buf[:n]
		}
		c.mu.Unlock()
		return make([]byte, n, BlockSize)
	}
	return make([]byte, n)
}

// fetch reads block idx from the underlying file.
func (f *File) fetch(idx int64) ([]byte, error) {
	off := idx * BlockSize
	buf := f.c.buffer(int(min(BlockSize, f.size-off)))
	n, err := f.ra.ReadAt(buf, off)
	if n == len(buf) {
		return buf, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return nil, err
}

// add stores a fetched block and evicts the least recently used ones
// beyond the bound. The caller holds mu.
func (c *Cache) add(b *block) {
	if _, ok := c.items[b.k]; ok {
		return
	}
	b.cached = true
	c.items[b.k] = c.order.PushFront(b)
	c.size += int64(len(b.data))
	for c.size > c.max {
		el := c.order.Back()
		old := el.Value.(*block)
		c.order.Remove(el)
		delete(c.items, old.k)
		c.size -= int64(len(old.data))
		old.cached = false
		c.recycle(old)
		c.evictions.Add(1)
	}
}

// Ahead is a file that is not open yet, to fetch the first blocks of.
type Ahead struct {
	ID     string // content identity; must not be empty
	Size   int64
	Blocks int // how many blocks from the start
	// Open opens the file; the returned func (may be nil) closes it.
	Open func() (io.ReaderAt, func(), error)
}

// Prefetch fetches the first blocks of files that are not open yet, one
// file after another, in the background on one of the cache's workers, and
// reports whether a worker was free (nothing is queued otherwise). Blocks
// already held are not fetched again; a file that fails to open or read is
// skipped.
func (c *Cache) Prefetch(files []Ahead) bool {
	return c.Go(func() {
		for _, a := range files {
			c.Load(a)
		}
	})
}

// Go runs fn on one of the cache's background workers and reports whether
// one was free; fn is not run (nor queued) otherwise. Callers use it for
// read-ahead of their own that should share the cache's bound on
// background work.
func (c *Cache) Go(fn func()) bool {
	select {
	case c.sem <- struct{}{}:
	default:
		return false
	}
	c.prefetch.Add(1)
	go func() {
		defer func() { <-c.sem }()
		fn()
	}()
	return true
}

// Load fetches the first blocks of a file that is not open yet, now, on
// the caller's goroutine. Blocks already held are not fetched again; a
// failure to open or read leaves the rest unfetched.
func (c *Cache) Load(a Ahead) {
	n := min(int64(a.Blocks), (a.Size+BlockSize-1)/BlockSize)
	if a.ID == "" || n <= 0 || c.holds(a.ID, 0, n) {
		return
	}
	ra, done, err := a.Open()
	if err != nil {
		return
	}
	if done != nil {
		defer done()
	}
	f := c.Open(a.ID, ra, a.Size)
	for i := range n {
		b, _, err := c.get(f, i)
		if err != nil {
			return
		}
		c.put(b)
	}
}

// holds reports whether blocks [from, to) of id are all held.
func (c *Cache) holds(id string, from, to int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := from; i < to; i++ {
		if _, ok := c.items[key{id, i}]; !ok {
			return false
		}
	}
	return true
}
