package walk

import (
	"container/heap"
	"context"
	"strings"
	"sync"
)

// ListerConfig is what a Lister lists and how far ahead.
type ListerConfig[T any] struct {
	// List lists the directory rel; it may run on several goroutines at
	// once.
	List func(ctx context.Context, rel string) (T, error)
	// Children names the subdirectories of rel (at depth) that the walk
	// will descend into, given rel's listing; nil: none. It MUST apply the
	// walk's own rules (valid names, excludes, depth), so what is listed
	// ahead is what the walk asks for. It runs on List's goroutine.
	Children func(rel string, depth int, listing T, err error) []string
	InFlight int // listings at once; <= 0: 1 (no listing ahead)
	Held     int // listings in flight or not yet taken; < InFlight: InFlight
}

// Lister lists directories ahead of a depth-first walk (see the package
// documentation). Get is for the walk's goroutine only.
type Lister[T any] struct {
	c   ListerConfig[T]
	ctx context.Context

	mu      sync.Mutex
	cursor  string // the last Get: nothing up to it is listed ahead
	started bool
	pending pathHeap
	jobs    map[string]*job[T] // listed ahead: in flight or waiting for Get
	running int
	closed  bool
	wg      sync.WaitGroup
}

type job[T any] struct {
	depth int
	done  chan struct{}
	v     T
	err   error
}

// NewLister returns a Lister whose listings run with ctx.
func NewLister[T any](ctx context.Context, c ListerConfig[T]) *Lister[T] {
	c.InFlight = max(c.InFlight, 1)
	c.Held = max(c.Held, c.InFlight)
	return &Lister[T]{c: c, ctx: ctx, jobs: map[string]*job[T]{}}
}

// Get returns the listing of rel (at depth), listed ahead or now. The
// walk calls it in walk order; a directory it passes over without Get is
// not listed ahead any more.
func (l *Lister[T]) Get(ctx context.Context, rel string, depth int) (T, error) {
	l.mu.Lock()
	if !l.started || Less(l.cursor, rel) {
		l.cursor, l.started = rel, true
	}
	for r, j := range l.jobs { // passed over: drop what was listed ahead
		if Less(r, rel) {
			select {
			case <-j.done:
				delete(l.jobs, r)
			default: // still in flight: dropped when it finishes
			}
		}
	}
	j := l.jobs[rel]
	l.mu.Unlock()
	if j == nil {
		v, err := l.c.List(ctx, rel)
		l.finish(rel, depth, v, err)
		return v, err
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
	l.mu.Lock()
	delete(l.jobs, rel)
	l.scheduleLocked()
	l.mu.Unlock()
	return j.v, j.err
}

// finish registers the children of a listing and starts what may start.
func (l *Lister[T]) finish(rel string, depth int, v T, err error) {
	var kids []string
	if l.c.Children != nil && l.c.InFlight > 1 {
		kids = l.c.Children(rel, depth, v, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range kids {
		heap.Push(&l.pending, pendingDir{rel: k, depth: depth + 1})
	}
	l.scheduleLocked()
}

func (l *Lister[T]) scheduleLocked() {
	for !l.closed && l.running < l.c.InFlight && len(l.jobs) < l.c.Held && l.pending.Len() > 0 {
		p := heap.Pop(&l.pending).(pendingDir)
		if !Less(l.cursor, p.rel) || l.jobs[p.rel] != nil {
			continue // the walk is past it, or it is listed already
		}
		j := &job[T]{depth: p.depth, done: make(chan struct{})}
		l.jobs[p.rel] = j
		l.running++
		l.wg.Add(1)
		go l.run(p.rel, j)
	}
}

func (l *Lister[T]) run(rel string, j *job[T]) {
	defer l.wg.Done()
	j.v, j.err = l.c.List(l.ctx, rel)
	var kids []string
	if l.c.Children != nil && l.ctx.Err() == nil {
		kids = l.c.Children(rel, j.depth, j.v, j.err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	close(j.done)
	l.running--
	if Less(rel, l.cursor) { // passed over while in flight
		delete(l.jobs, rel)
	}
	for _, k := range kids {
		heap.Push(&l.pending, pendingDir{rel: k, depth: j.depth + 1})
	}
	l.scheduleLocked()
}

// Close stops listing ahead and waits for the listings in flight (end
// what they wait for first: the connection, or the Lister's ctx).
func (l *Lister[T]) Close() {
	l.mu.Lock()
	l.closed = true
	l.pending = nil
	l.mu.Unlock()
	l.wg.Wait()
}

// Less reports whether slash path a comes before b in a depth-first walk
// that visits names in byte order: the paths compared element by element
// (so "a/b" < "a.b", unlike as strings; "" is the root, before all).
func Less(a, b string) bool {
	for {
		if a == b {
			return false
		}
		if a == "" {
			return true
		}
		if b == "" {
			return false
		}
		ea, ra, _ := strings.Cut(a, "/")
		eb, rb, _ := strings.Cut(b, "/")
		if ea != eb {
			return ea < eb
		}
		a, b = ra, rb
	}
}

type pendingDir struct {
	rel   string
	depth int
}

// pathHeap holds the directories known and not listed, the first in walk
// order on top.
type pathHeap []pendingDir

func (h pathHeap) Len() int           { return len(h) }
func (h pathHeap) Less(i, j int) bool { return Less(h[i].rel, h[j].rel) }
func (h pathHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *pathHeap) Push(x any)        { *h = append(*h, x.(pendingDir)) }
func (h *pathHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
