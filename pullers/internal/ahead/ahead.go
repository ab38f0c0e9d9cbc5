// Package ahead fetches files ahead of an in-order consumer: several
// fetches run at once over one connection while the results are taken in
// the order they were started, with the bytes held in memory capped.
//
// A puller's walk calls Fetcher.Start for each file in walk order; Start
// reserves the file's buffer capacity from a byte budget (blocking until
// earlier files release theirs) and runs the fetch on a worker, which
// writes the content into a Buffer. The consumer (the goroutine that
// calls the Sink) reads the Buffers in the same order and closes each,
// which returns its bytes to the budget.
//
// Reservations are made strictly in Start order and released only by the
// consumer, so the file the consumer waits for always has its buffer and
// a worker: the pipeline cannot deadlock. A small file's buffer holds all
// of it (size+1 bytes, to notice a longer file); a large file gets a
// window of Window bytes that the worker refills as the consumer drains
// it, so a server that announces a huge file cannot make memory grow.
package ahead

import (
	"context"
	"errors"
	"io"
	"sync"
)

// Defaults.
const (
	DefaultWorkers  = 8
	DefaultMaxBytes = 64 << 20
	DefaultWindow   = 8 << 20
)

// ErrClosed is what a worker's Write returns after the consumer closed
// the Buffer (or the Fetcher was stopped).
var ErrClosed = errors.New("fetch abandoned")

// A Func fetches one file on a worker: it opens it, calls b.Ready with
// whatever the consumer needs to know first (the metadata of the open
// handle, or why it could not be opened), then writes the content to b.
// Its error ends the content (nil: end of file).
type Func func(ctx context.Context, b *Buffer) error

// Fetcher runs Funcs on a bounded number of workers within a byte budget.
// Start must be called from one goroutine; Buffers are read by another.
type Fetcher struct {
	ctx     context.Context
	cancel  context.CancelFunc
	workers int
	max     int64
	window  int64

	mu      sync.Mutex
	cond    *sync.Cond
	used    int64 // bytes reserved
	peak    int64
	running int
	live    map[*Buffer]struct{}
	wg      sync.WaitGroup
	stopAft func() bool
}

// New returns a Fetcher with workers concurrent fetches (0: DefaultWorkers)
// and at most maxBytes reserved for buffers at once (0: DefaultMaxBytes).
// One file's buffer is at most window bytes (0: DefaultWindow; at most
// maxBytes). Cancelling ctx stops it like Stop.
func New(ctx context.Context, workers int, maxBytes, window int64) *Fetcher {
	if workers <= 0 {
		workers = DefaultWorkers
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if window <= 0 {
		window = DefaultWindow
	}
	window = min(window, maxBytes)
	f := &Fetcher{workers: workers, max: maxBytes, window: window, live: map[*Buffer]struct{}{}}
	f.ctx, f.cancel = context.WithCancel(ctx)
	f.cond = sync.NewCond(&f.mu)
	f.stopAft = context.AfterFunc(f.ctx, f.closeAll)
	return f
}

// Context is the Fetcher's context: cancelled by Stop.
func (f *Fetcher) Context() context.Context { return f.ctx }

// Need is the buffer capacity Start reserves for a file of size bytes:
// size+1 (so a file longer than its size is noticed), at most the window.
func (f *Fetcher) Need(size int64) int64 {
	return min(max(size, 0)+1, f.window)
}

// Start reserves f.Need(size) bytes and a worker, waiting for both, and
// runs fn there. It fails only when the Fetcher is stopped.
func (f *Fetcher) Start(size int64, fn Func) (*Buffer, error) {
	need := f.Need(size)
	f.mu.Lock()
	for f.ctx.Err() == nil && (f.used+need > f.max || f.running >= f.workers) {
		f.cond.Wait()
	}
	if err := f.ctx.Err(); err != nil {
		f.mu.Unlock()
		return nil, err
	}
	f.used += need
	f.peak = max(f.peak, f.used)
	f.running++
	b := newBuffer(f, need)
	f.live[b] = struct{}{}
	f.mu.Unlock()
	f.run(b, fn, true)
	return b, nil
}

// Direct runs fn at once, outside the budget and the worker limit, with a
// buffer of capacity min(size+1, 1 MiB): for a retry the consumer waits
// on, which must not queue behind files fetched ahead of it.
func (f *Fetcher) Direct(size int64, fn Func) *Buffer {
	b := newBuffer(f, min(max(size, 0)+1, 1<<20))
	b.budgeted = false
	f.mu.Lock()
	if f.ctx.Err() != nil {
		b.closed = true
	}
	f.live[b] = struct{}{}
	f.mu.Unlock()
	f.run(b, fn, false)
	return b
}

func (f *Fetcher) run(b *Buffer, fn Func, worker bool) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		err := fn(f.ctx, b)
		b.finish(err)
		if worker {
			f.mu.Lock()
			f.running--
			f.cond.Broadcast()
			f.mu.Unlock()
		}
	}()
}

// release returns a closed Buffer's reservation.
func (f *Fetcher) release(b *Buffer) {
	f.mu.Lock()
	delete(f.live, b)
	if b.budgeted {
		f.used -= b.cap
		f.cond.Broadcast()
	}
	f.mu.Unlock()
}

func (f *Fetcher) closeAll() {
	f.mu.Lock()
	live := make([]*Buffer, 0, len(f.live))
	for b := range f.live {
		live = append(live, b)
	}
	f.cond.Broadcast()
	f.mu.Unlock()
	for _, b := range live {
		b.Close()
	}
}

// Stop cancels every fetch and closes every Buffer; Start fails from now
// on. It does not wait: call Wait once whatever a worker may block on
// (the connection) is closed.
func (f *Fetcher) Stop() { f.cancel() }

// Wait waits until every worker has returned.
func (f *Fetcher) Wait() {
	f.wg.Wait()
	f.stopAft()
}

// Peak is the most bytes reserved at once so far.
func (f *Fetcher) Peak() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peak
}

// Buffer carries one file from its worker to the consumer: first the
// value given to Ready, then the content, then the fetch's error. Write
// blocks while Cap bytes are buffered. Read and Wait are for the consumer,
// Ready and Write for the worker.
type Buffer struct {
	f        *Fetcher
	cap      int64
	budgeted bool

	mu      sync.Mutex
	cond    *sync.Cond
	head    any
	ready   bool
	chunks  [][]byte
	off     int   // read offset in chunks[0]
	n       int64 // bytes buffered
	done    bool  // the worker returned
	err     error // its error
	closed  bool
	release sync.Once
}

func newBuffer(f *Fetcher, capacity int64) *Buffer {
	b := &Buffer{f: f, cap: capacity, budgeted: true}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// Cap is the most bytes the buffer holds at once.
func (b *Buffer) Cap() int64 { return b.cap }

// Ready hands v to the consumer's Wait. Call it once, before writing.
func (b *Buffer) Ready(v any) {
	b.mu.Lock()
	b.head, b.ready = v, true
	b.cond.Broadcast()
	b.mu.Unlock()
}

const chunkMax = 256 << 10

// Write buffers p, waiting for room; it fails with ErrClosed once the
// consumer closed the Buffer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for len(p) > 0 {
		for !b.closed && b.n >= b.cap {
			b.cond.Wait()
		}
		if b.closed {
			return n, ErrClosed
		}
		k := min(int64(len(p)), b.cap-b.n)
		var last []byte
		if len(b.chunks) > 0 {
			last = b.chunks[len(b.chunks)-1]
		}
		if last == nil || len(last) == cap(last) {
			last = make([]byte, 0, min(b.cap, chunkMax))
			b.chunks = append(b.chunks, last)
		}
		k = min(k, int64(cap(last)-len(last)))
		last = append(last, p[:k]...)
		b.chunks[len(b.chunks)-1] = last
		b.n += k
		n += int(k)
		p = p[k:]
		b.cond.Broadcast()
	}
	return n, nil
}

func (b *Buffer) finish(err error) {
	b.mu.Lock()
	b.done, b.err = true, err
	b.cond.Broadcast()
	b.mu.Unlock()
}

// Wait waits for the worker's Ready and returns its value. When the
// worker returned without calling Ready, it returns (nil, the worker's
// error, or ErrClosed).
func (b *Buffer) Wait(ctx context.Context) (any, error) {
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.ready && !b.done && !b.closed && ctx.Err() == nil {
		b.cond.Wait()
	}
	switch {
	case b.ready:
		return b.head, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case b.done && b.err != nil:
		return nil, b.err
	}
	return nil, ErrClosed
}

// Read returns buffered content, waiting for more; at the end it returns
// io.EOF, or the worker's error.
func (b *Buffer) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.n == 0 && !b.done && !b.closed {
		b.cond.Wait()
	}
	if b.n == 0 {
		switch {
		case b.closed:
			return 0, ErrClosed
		case b.err != nil:
			return 0, b.err
		}
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && len(b.chunks) > 0 {
		c := b.chunks[0]
		k := copy(p[n:], c[b.off:])
		n += k
		b.off += k
		if b.off == len(c) {
			if len(c) < cap(c) && len(b.chunks) == 1 {
				break // the worker is still filling it
			}
			b.chunks[0] = nil
			b.chunks = b.chunks[1:]
			b.off = 0
		}
	}
	b.n -= int64(n)
	b.cond.Broadcast()
	return n, nil
}

// Err is the worker's error once it returned (nil before, and on success).
func (b *Buffer) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// Close abandons the Buffer: the worker's next Write fails, the content
// is dropped and the reservation returns to the budget. The consumer
// closes every Buffer it got, also after reading it to the end.
func (b *Buffer) Close() {
	b.mu.Lock()
	b.closed = true
	b.chunks, b.n = nil, 0
	b.cond.Broadcast()
	b.mu.Unlock()
	b.release.Do(func() { b.f.release(b) })
}

// Discard drops what the worker wrote so far; only before Ready (the
// consumer reads nothing until then). A worker that wrote a small file
// ahead of its metadata uses it when the metadata says the file changed.
func (b *Buffer) Discard() {
	b.mu.Lock()
	b.chunks, b.off, b.n = nil, 0, 0
	b.cond.Broadcast()
	b.mu.Unlock()
}
