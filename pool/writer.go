package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SnapshotMeta describes the snapshot a Writer makes.
type SnapshotMeta struct {
	Host   string    // host name; one path element (the restore tree uses it)
	Source string    // source name within the host; one path element
	Start  time.Time // zero: now
	Labels map[string]string
}

// WriterStats are a Writer's running totals. BytesNew is the stored
// (compressed, encrypted) size of objects this writer added.
type WriterStats struct {
	Files, Dirs, Bytes, BytesNew, ObjectsNew, Errors int64
}

// ErrEntry marks an entry Add rejected — a hostile or out-of-order path, a
// file whose reader gave fewer or more bytes than its size, a read error.
// The entry is not stored and the Writer stays usable; the caller records
// it with RecordError or gives up. Any other error from Add is fatal: the
// Writer has failed and Finish will return it.
var ErrEntry = errors.New("entry rejected")

// maxRecordedErrors caps the error messages a manifest lists.
const maxRecordedErrors = 100

// A Writer stores one snapshot: entries arrive in depth-first walk order
// and each directory's tree is written when it is complete, so memory
// holds only the stack of open directories. File content is read and
// hashed by Add; compression and writes run on GOMAXPROCS workers behind
// a bounded queue. A Writer implements the pullers' Sink. Add, Finish and
// Abort must be called from one goroutine; RecordError and Stats from any.
type Writer struct {
	p  *Pool
	st *poolState
	// quarantined holds the digests under quarantine/ when the writer
	// started: a reused chunked file whose chunks include one of them is
	// read again (so the next backup heals a quarantined chunk, not only
	// whole-file objects and chunk lists).
	quarantined map[Digest]bool
	meta        SnapshotMeta
	id          string
	ctx         context.Context // workers' context
	cancel      context.CancelFunc
	lock        *heldLock

	jobs   chan putJob
	wg     sync.WaitGroup
	budget byteBudget // bytes queued or being written

	errMu sync.Mutex
	err   error // first fatal error

	// Guarded by st.mu: GC reads them as roots. Only the Add goroutine
	// modifies them, so it reads them without the lock.
	stack    []*wdir
	rootE    Entry // the root directory's own entry, for the manifest
	pending  map[Digest]*pendingObj
	cur      []Digest // chunks of the file being stored
	root     Digest
	rootDone bool

	started bool
	done    bool

	emu      sync.Mutex
	errs     []string
	errCount int

	files, dirs, bytes, bytesNew, objectsNew, nerrs atomic.Int64

	rbuf []byte // chunking buffer, 2*ChunkMax

	ckpt ckptState // checkpoint.go

	streaming bool  // AddStream is adding a file of unknown size
	streamed  int64 // the size it turned out to have
	held      *wdir // contents stored by StoreContent, GC roots until the end
}

type putJob struct {
	kind Kind
	d    Digest
	data []byte
	buf  *[]byte // pooled buffer holding data, or nil
}

// pendingObj is an object the writer is storing or relying on right now.
type pendingObj struct {
	n    int // queued writes + pins
	kind Kind
	data []byte // trees and chunk lists, so GC can mark through them
}

type wdir struct {
	path    string
	entry   Entry
	entries []Entry
	names   map[string]struct{}
}

// NewWriter starts a snapshot. It takes a writer lock in the pool and
// waits while another process's GC holds the GC lock. ctx also governs
// the writer's background writes, so it must outlive Finish; cancelling it
// fails the snapshot.
func (p *Pool) NewWriter(ctx context.Context, meta SnapshotMeta) (*Writer, error) {
	if !ValidName(meta.Host) || !ValidName(meta.Source) {
		return nil, fmt.Errorf("new snapshot: host %q and source %q must be non-empty names without '/'", meta.Host, meta.Source)
	}
	if meta.Start.IsZero() {
		meta.Start = time.Now()
	}
	meta.Start = meta.Start.UTC()
	st := p.state()
	st.mu.Lock()
	st.nextLock++
	n := st.nextLock
	st.mu.Unlock()
	id := newSnapshotID(meta.Start)
	lock, err := p.takeLock(ctx, fmt.Sprintf("%swriter-%s-%d", locksPrefix, st.instance, n),
		lockInfo{Kind: "writer", Snapshot: meta.Host + "/" + meta.Source + "@" + id})
	if err != nil {
		return nil, fmt.Errorf("new snapshot of %s/%s: %w", meta.Host, meta.Source, err)
	}
	for {
		gcs, err := p.foreignLocks(ctx, "gc", time.Now())
		if err != nil {
			lock.release(ctx)
			return nil, fmt.Errorf("new snapshot of %s/%s: %w", meta.Host, meta.Source, err)
		}
		if len(gcs) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			lock.release(ctx)
			return nil, fmt.Errorf("new snapshot of %s/%s: waiting for GC (%s): %w", meta.Host, meta.Source, gcs[0], ctx.Err())
		case <-time.After(lockWaitPoll):
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	workers := st.writerWorkers()
	w := &Writer{
		p: p, st: st, meta: meta, id: id, ctx: wctx, cancel: cancel, lock: lock,
		jobs:    make(chan putJob, writerQueue),
		pending: map[Digest]*pendingObj{},
	}
	w.budget.init(writerBudget)
	w.quarantined = p.quarantinedDigests(ctx)
	st.mu.Lock()
	st.writers[w] = struct{}{}
	st.mu.Unlock()
	w.wg.Add(workers)
	for range workers {
		go w.worker()
	}
	return w, nil
}

// SetWriterConcurrency sets how many objects each new Writer compresses
// and writes at once. The default, twice GOMAXPROCS, suits a local disk
// (a worker blocked in a write leaves its core to one compressing); a
// high-latency backend such as S3 wants more (e.g. 16). n ≤ 0 restores
// the default. The bytes in flight stay bounded either way.
func (p *Pool) SetWriterConcurrency(n int) {
	st := p.state()
	st.mu.Lock()
	st.workers = n
	st.mu.Unlock()
}

func (st *poolState) writerWorkers() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.workers > 0 {
		return st.workers
	}
	return 2 * runtime.GOMAXPROCS(0)
}

// ID returns the ID the snapshot will have.
func (w *Writer) ID() string { return w.id }

// Stats returns the running totals; safe for concurrent use.
func (w *Writer) Stats() WriterStats {
	return WriterStats{
		Files: w.files.Load(), Dirs: w.dirs.Load(), Bytes: w.bytes.Load(),
		BytesNew: w.bytesNew.Load(), ObjectsNew: w.objectsNew.Load(), Errors: w.nerrs.Load(),
	}
}

// RecordError notes a per-file failure; the snapshot becomes partial.
// Safe for concurrent use.
func (w *Writer) RecordError(path string, err error) {
	w.nerrs.Add(1)
	w.emu.Lock()
	defer w.emu.Unlock()
	w.errCount++
	if len(w.errs) < maxRecordedErrors {
		w.errs = append(w.errs, path+": "+err.Error())
	}
}

func (w *Writer) failed() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

func (w *Writer) fail(err error) {
	w.errMu.Lock()
	if w.err == nil {
		w.err = fmt.Errorf("snapshot %s of %s/%s: %w", w.id, w.meta.Host, w.meta.Source, err)
	}
	w.errMu.Unlock()
	w.cancel()
}

func (w *Writer) worker() {
	defer w.wg.Done()
	for j := range w.jobs {
		if w.failed() == nil {
			added, stored, err := w.p.PutDigestSize(w.ctx, j.kind, j.d, j.data)
			if err != nil {
				w.fail(err)
			} else if added {
				w.objectsNew.Add(1)
				w.bytesNew.Add(stored)
			}
		}
		cost := budgetCost(j.data, j.buf)
		if j.buf != nil {
			putChunkBuf(j.buf)
		}
		w.budget.release(cost)
		w.st.mu.Lock()
		w.unpinLocked(j.d)
		w.st.mu.Unlock()
	}
}

// Memory bound of the write pipeline: at most writerQueue objects and
// writerBudget bytes of object data are queued or being written.
const (
	writerQueue  = 256
	writerBudget = 16 << 20
)

// budgetCost is what a queued object holds in memory: its pooled buffer's
// capacity (a 1.1 MiB chunk sits in a 1.5 MiB buffer), else its length.
func budgetCost(data []byte, buf *[]byte) int {
	if buf != nil {
		return cap(*buf)
	}
	return len(data)
}

// byteBudget bounds the bytes in flight. Workers always release what they
// took, even after a failure, so acquire never waits forever.
type byteBudget struct {
	mu    sync.Mutex
	cond  sync.Cond
	avail int
	max   int
}

func (b *byteBudget) init(n int) {
	b.avail, b.max = n, n
	b.cond.L = &b.mu
}

func (b *byteBudget) acquire(n int) {
	n = min(n, b.max)
	b.mu.Lock()
	for b.avail < n {
		b.cond.Wait()
	}
	b.avail -= n
	b.mu.Unlock()
}

func (b *byteBudget) release(n int) {
	n = min(n, b.max)
	b.mu.Lock()
	b.avail += n
	b.mu.Unlock()
	b.cond.Signal()
}

// pinLocked makes d a GC root of this writer until unpinLocked.
func (w *Writer) pinLocked(d Digest, kind Kind, data []byte) (first bool) {
	po := w.pending[d]
	if po == nil {
		po = &pendingObj{kind: kind}
		w.pending[d] = po
		first = true
	}
	po.n++
	if data != nil && po.data == nil {
		po.data = data
	}
	return first
}

func (w *Writer) unpinLocked(d Digest) {
	if po := w.pending[d]; po != nil {
		if po.n--; po.n <= 0 {
			delete(w.pending, d)
		}
	}
}

// store records a reference to d, runs inLock in the same critical
// section (so d is always reachable from the writer's roots), and queues
// the write unless this writer is already writing d. keep retains data
// for GC marking (trees, chunk lists).
func (w *Writer) store(ctx context.Context, kind Kind, d Digest, data []byte, buf *[]byte, keep bool, inLock func()) error {
	w.st.mu.Lock()
	ch := w.st.refLocked(d)
	var kd []byte
	if keep {
		kd = data
	}
	first := w.pinLocked(d, kind, kd)
	if inLock != nil {
		inLock()
	}
	w.st.mu.Unlock()
	if ch != nil {
		<-ch // GC is deleting an old copy; ours is written after
	}
	if !first {
		w.st.mu.Lock()
		w.unpinLocked(d)
		w.st.mu.Unlock()
		if buf != nil {
			putChunkBuf(buf)
		}
		return nil
	}
	cost := budgetCost(data, buf)
	w.budget.acquire(cost)
	select {
	case w.jobs <- putJob{kind: kind, d: d, data: data, buf: buf}:
		return nil
	case <-ctx.Done():
		w.budget.release(cost)
		w.fail(ctx.Err())
		return ctx.Err()
	case <-w.ctx.Done():
		w.budget.release(cost)
		if err := w.failed(); err != nil {
			return err
		}
		return w.ctx.Err()
	}
}

func entryErr(path, format string, args ...any) error {
	return fmt.Errorf("%w: %q: %s", ErrEntry, path, fmt.Sprintf(format, args...))
}

// checkPath validates a path from a puller: relative, slash-separated,
// clean elements.
func checkPath(p string) error {
	if p == "" || p[0] == '/' {
		return fmt.Errorf("not a relative path")
	}
	if len(p) > 64<<10 {
		return fmt.Errorf("path too long")
	}
	for el := range strings.SplitSeq(p, "/") {
		if !ValidName(el) {
			return fmt.Errorf("invalid element %q", el)
		}
	}
	return nil
}

// Add stores one entry. See the Sink contract in package pullers: entries
// in depth-first walk order, parents first, the root "." first. For a
// regular file Add reads exactly e.Size bytes from r, or, when r is nil,
// reuses e.Content (ErrContentMissing, wrapped in ErrEntry, when that is
// no longer in the pool). Add sets e.Content, e.Chunked and e.Subtree.
func (w *Writer) Add(ctx context.Context, path string, e Entry, r io.Reader) error {
	if err := w.failed(); err != nil {
		return err
	}
	if w.done {
		return fmt.Errorf("snapshot %s: Add after Finish or Abort", w.id)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	e.Mode &= modeBits
	e.Subtree = Digest{}
	if e.Type != TypeFile {
		e.Content, e.Chunked = Digest{}, false
	}
	if e.Type < TypeFile || e.Type > TypeSocket {
		return entryErr(path, "invalid type %d", e.Type)
	}
	if e.Size < 0 && !(w.streaming && e.Size == sizeUnknown && e.Type == TypeFile) {
		return entryErr(path, "negative size %d", e.Size)
	}
	if path == "." {
		if w.started {
			return entryErr(path, "root added twice")
		}
		if e.Type != TypeDir {
			return entryErr(path, "the root must be a directory, not a %s", e.Type)
		}
		e.Name = "."
		e.Size, e.Target, e.Rdev, e.HardLink = 0, "", 0, 0
		w.rootE = e
		w.started = true
		w.st.mu.Lock()
		w.stack = append(w.stack, &wdir{path: ".", entry: e})
		w.st.mu.Unlock()
		w.dirs.Add(1)
		return nil
	}
	if !w.started {
		return entryErr(path, `the root "." must come first`)
	}
	if err := checkPath(path); err != nil {
		return entryErr(path, "%v", err)
	}
	parent, name := ".", path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		parent, name = path[:i], path[i+1:]
	}
	e.Name = name
	idx := -1
	for i := len(w.stack) - 1; i >= 0; i-- {
		if w.stack[i].path == parent {
			idx = i
			break
		}
	}
	if idx < 0 {
		return entryErr(path, "out of walk order: parent %q is not an open directory", parent)
	}
	top := w.stack[idx]
	if _, dup := top.names[name]; dup {
		return entryErr(path, "added twice")
	}
	for len(w.stack)-1 > idx {
		if err := w.closeDir(ctx); err != nil {
			return err
		}
	}
	if top.names == nil {
		top.names = map[string]struct{}{}
	}
	switch e.Type {
	case TypeDir:
		w.st.mu.Lock()
		w.stack = append(w.stack, &wdir{path: path, entry: e})
		w.st.mu.Unlock()
		w.dirs.Add(1)
	case TypeFile:
		if err := w.addFile(ctx, path, &e, top, r); err != nil {
			return err
		}
		w.files.Add(1)
	default:
		w.st.mu.Lock()
		top.entries = append(top.entries, e)
		w.st.mu.Unlock()
		w.files.Add(1)
	}
	top.names[name] = struct{}{}
	return w.maybeCheckpoint(ctx)
}

func (w *Writer) appendEntry(top *wdir, e *Entry) func() {
	return func() { top.entries = append(top.entries, *e) }
}

// readErr turns a failed read of a file's content into an entry error.
func readErr(ctx context.Context, path string, size int64, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return entryErr(path, "content shorter than its size %d (changed while reading?)", size)
	}
	return fmt.Errorf("%w: %q: read: %w", ErrEntry, path, err)
}

// checkEOF makes sure r has nothing beyond the entry's size.
func checkEOF(ctx context.Context, path string, size int64, r io.Reader) error {
	var one [1]byte
	n, err := io.ReadFull(r, one[:])
	if n > 0 {
		return entryErr(path, "content longer than its size %d (changed while reading?)", size)
	}
	if err != io.EOF {
		return readErr(ctx, path, size, err)
	}
	return nil
}

func (w *Writer) addFile(ctx context.Context, path string, e *Entry, top *wdir, r io.Reader) error {
	if r == nil {
		if e.Content.IsZero() {
			if e.Size != 0 || e.Chunked {
				return entryErr(path, "no reader and no content to reuse")
			}
			w.st.mu.Lock()
			top.entries = append(top.entries, *e)
			w.st.mu.Unlock()
			return nil
		}
		return w.reuse(ctx, path, e, top)
	}
	e.Content, e.Chunked = Digest{}, false
	if e.Size >= 0 && e.Size <= SmallFileMax {
		if e.Size == 0 {
			if err := checkEOF(ctx, path, 0, r); err != nil {
				return err
			}
			w.st.mu.Lock()
			top.entries = append(top.entries, *e)
			w.st.mu.Unlock()
			return nil
		}
		buf := getChunkBuf(int(e.Size))
		data := (*buf)[:e.Size]
		if _, err := io.ReadFull(r, data); err != nil {
			putChunkBuf(buf)
			return readErr(ctx, path, e.Size, err)
		}
		if err := checkEOF(ctx, path, e.Size, r); err != nil {
			putChunkBuf(buf)
			return err
		}
		e.Content = w.p.Hash(data)
		w.bytes.Add(e.Size)
		return w.store(ctx, KindData, e.Content, data, buf, false, w.appendEntry(top, e))
	}
	return w.addChunked(ctx, path, e, top, r)
}

func (w *Writer) addChunked(ctx context.Context, path string, e *Entry, top *wdir, r io.Reader) error {
	if w.rbuf == nil {
		w.rbuf = make([]byte, 2*ChunkMax)
	}
	buf := w.rbuf
	start, end := 0, 0
	remaining := e.Size
	stream := remaining == sizeUnknown // AddStream: read to EOF
	if stream {
		remaining = math.MaxInt64
	}
	var sizes []int64
	var digests []Digest
	clearCur := func() {
		w.st.mu.Lock()
		w.cur = w.cur[:0]
		w.st.mu.Unlock()
	}
	for {
		for end-start < ChunkMax && remaining > 0 {
			if end == len(buf) {
				end = copy(buf, buf[start:end])
				start = 0
			}
			n := int64(len(buf) - end)
			if n > remaining {
				n = remaining
			}
			m, err := io.ReadFull(r, buf[end:end+int(n)])
			end += m
			remaining -= int64(m)
			if stream && (err == io.EOF || err == io.ErrUnexpectedEOF) {
				remaining, err = 0, nil
			}
			if err != nil {
				clearCur()
				return readErr(ctx, path, e.Size, err)
			}
		}
		if start == end {
			break
		}
		cut := cutPoint(buf[start:end])
		chunk := buf[start : start+cut]
		d := w.p.Hash(chunk)
		cb := getChunkBuf(cut)
		cd := append((*cb)[:0], chunk...)
		sizes = append(sizes, int64(cut))
		digests = append(digests, d)
		if err := w.store(ctx, KindData, d, cd, cb, false, func() { w.cur = append(w.cur, d) }); err != nil {
			clearCur()
			return err
		}
		w.bytes.Add(int64(cut))
		start += cut
	}
	if stream {
		e.Size = 0
		for _, n := range sizes {
			e.Size += n
		}
		w.streamed = e.Size
	} else if err := checkEOF(ctx, path, e.Size, r); err != nil {
		clearCur()
		return err
	}
	if len(digests) == 1 {
		// One chunk: the file is that object. It stays a root through
		// w.cur until the entry holds it.
		e.Content = digests[0]
		w.st.mu.Lock()
		w.cur = w.cur[:0]
		top.entries = append(top.entries, *e)
		w.st.mu.Unlock()
		return nil
	}
	list := appendChunkList(nil, sizes, digests)
	e.Content, e.Chunked = w.p.Hash(list), true
	return w.store(ctx, KindChunkList, e.Content, list, nil, true, func() {
		w.cur = w.cur[:0]
		top.entries = append(top.entries, *e)
	})
}

// reuse adds a file whose content comes from an earlier snapshot. The
// content is pinned as a root while it is checked, so a concurrent GC
// cannot remove it between the check and the entry joining its directory.
func (w *Writer) reuse(ctx context.Context, path string, e *Entry, top *wdir) error {
	kind := KindData
	if e.Chunked {
		kind = KindChunkList
	}
	w.st.mu.Lock()
	ch := w.st.refLocked(e.Content)
	gcRunning := w.st.gcActive > 0
	w.pinLocked(e.Content, kind, nil)
	w.st.mu.Unlock()
	unpin := func() {
		w.st.mu.Lock()
		w.unpinLocked(e.Content)
		w.st.mu.Unlock()
	}
	missing := func(err error) error {
		unpin()
		if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
			return fmt.Errorf("%q: reuse content %s: %w", path, e.Content, err)
		}
		return fmt.Errorf("%w: %q: %w: %s", ErrEntry, path, ErrContentMissing, e.Content)
	}
	if ch != nil {
		<-ch
		return missing(nil)
	}
	ok, err := w.p.Exists(ctx, e.Content)
	if err != nil || !ok {
		return missing(err)
	}
	if e.Chunked && gcRunning {
		// The running GC took its roots before this pin, so it protects
		// only what is recorded: record the chunks too, then check them.
		refs, err := w.p.readChunkList(ctx, e.Content)
		if err != nil {
			return missing(err)
		}
		var waits []chan struct{}
		w.st.mu.Lock()
		for _, c := range refs {
			if ch := w.st.refLocked(c.d); ch != nil {
				waits = append(waits, ch)
			}
		}
		w.st.mu.Unlock()
		if len(waits) > 0 {
			for _, ch := range waits {
				<-ch
			}
			return missing(nil)
		}
		for _, c := range refs {
			if ok, err := w.p.Exists(ctx, c.d); err != nil || !ok {
				return missing(err)
			}
		}
	}
	if e.Chunked && !gcRunning && len(w.quarantined) > 0 {
		refs, err := w.p.readChunkList(ctx, e.Content)
		if err != nil {
			return missing(err)
		}
		for _, c := range refs {
			if !w.quarantined[c.d] {
				continue
			}
			if ok, err := w.p.Exists(ctx, c.d); err != nil || !ok {
				return missing(err)
			}
		}
	}
	w.st.mu.Lock()
	top.entries = append(top.entries, *e)
	w.unpinLocked(e.Content)
	w.st.mu.Unlock()
	w.bytes.Add(e.Size)
	return nil
}

// closeDir writes the tree of the innermost open directory and adds its
// entry to the parent.
func (w *Writer) closeDir(ctx context.Context) error {
	top := w.stack[len(w.stack)-1]
	w.st.mu.Lock()
	sortEntries(top.entries)
	w.st.mu.Unlock()
	data, err := appendTree(nil, top.entries)
	if err != nil {
		err = fmt.Errorf("directory %q: %w", top.path, err)
		w.fail(err)
		return err
	}
	d := w.p.Hash(data)
	top.entry.Subtree = d
	return w.store(ctx, KindTree, d, data, nil, true, func() {
		w.stack[len(w.stack)-1] = nil
		w.stack = w.stack[:len(w.stack)-1]
		if n := len(w.stack); n > 0 {
			parent := w.stack[n-1]
			parent.entries = append(parent.entries, top.entry)
		} else {
			w.root, w.rootDone = d, true
		}
	})
}

// Finish closes the open directories, waits for every pending write,
// makes them durable with one Sync, and then writes the manifest to
// snapshots/<id> (followed by a second Sync for the manifest itself).
func (w *Writer) Finish(ctx context.Context) (*Manifest, error) {
	if w.done {
		return nil, fmt.Errorf("snapshot %s: Finish after Finish or Abort", w.id)
	}
	if !w.started {
		w.Abort()
		return nil, fmt.Errorf("snapshot %s: no entries (the root %q was never added)", w.id, ".")
	}
	for len(w.stack) > 0 && w.failed() == nil {
		if err := w.closeDir(ctx); err != nil {
			break
		}
	}
	w.done = true
	close(w.jobs)
	w.wg.Wait()
	defer w.cleanup(ctx)
	if err := w.failed(); err != nil {
		return nil, err
	}
	if err := w.p.Sync(ctx); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", w.id, err)
	}
	// The final manifest replaces a checkpoint's (same ID).
	m := w.manifest(w.root)
	if len(m.RootEntry) == 0 {
		w.nerrs.Add(1)
	}
	if err := w.lock.verify(ctx); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", w.id, err)
	}
	if err := w.p.putManifest(ctx, m); err != nil {
		return nil, err
	}
	w.p.rememberRoot(m)
	if err := w.p.Sync(ctx); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", w.id, err)
	}
	return m, nil
}

// Abort stops the writer without writing a manifest, and removes the
// manifest of its last checkpoint if there is one. What it stored is
// unreferenced and GC removes it. Abort after Finish does nothing.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.fail(errors.New("aborted"))
	close(w.jobs)
	w.wg.Wait()
	w.dropCheckpoint()
	w.cleanup(context.Background())
}

func (w *Writer) cleanup(ctx context.Context) {
	w.cancel()
	w.st.mu.Lock()
	delete(w.st.writers, w)
	w.st.mu.Unlock()
	w.lock.release(ctx)
}

// gcRootsLocked returns what this writer references now. Called with
// st.mu held.
func (w *Writer) gcRootsLocked(add func(d Digest, kind Kind, data []byte)) {
	for d, po := range w.pending {
		add(d, po.kind, po.data)
	}
	for _, d := range w.cur {
		add(d, KindData, nil)
	}
	for _, od := range w.stack {
		for i := range od.entries {
			addEntryRoot(&od.entries[i], add)
		}
	}
	if w.held != nil { // StoreContent
		for i := range w.held.entries {
			addEntryRoot(&w.held.entries[i], add)
		}
	}
	if w.rootDone {
		add(w.root, KindTree, nil)
	}
}

func addEntryRoot(e *Entry, add func(d Digest, kind Kind, data []byte)) {
	switch {
	case !e.Subtree.IsZero():
		add(e.Subtree, KindTree, nil)
	case e.Chunked:
		add(e.Content, KindChunkList, nil)
	case !e.Content.IsZero():
		add(e.Content, KindData, nil)
	}
}

// quarantinedDigests lists quarantine/ (empty in a healthy pool, so this
// costs one listing call). Errors give an empty set: healing is then left
// to a later backup.
func (p *Pool) quarantinedDigests(ctx context.Context) map[Digest]bool {
	out := map[Digest]bool{}
	p.Backend().List(ctx, quarantinePrefix, func(oi ObjectInfo) error {
		if d, err := ParseDigest(strings.TrimPrefix(oi.Name, quarantinePrefix)); err == nil {
			out[d] = true
		}
		return nil
	})
	return out
}
