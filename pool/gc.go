package pool

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// GCOptions configure a garbage collection.
type GCOptions struct {
	// DryRun reports what would be deleted and deletes nothing.
	DryRun bool
	// Grace keeps unreferenced objects younger than this (by the backend's
	// modification time). 0 means DefaultGCGrace; negative means none.
	Grace time.Duration
	// Now is the clock for the grace period; nil means time.Now.
	Now func() time.Time
}

// DefaultGCGrace is the grace period when GCOptions.Grace is 0.
const DefaultGCGrace = time.Hour

// GCReport says what a GC found and did.
type GCReport struct {
	DryRun     bool
	Snapshots  int   // manifests marked from
	Writers    int   // in-process writers marked from
	Marked     int   // objects reachable from snapshots and writers
	Missing    int   // referenced trees or chunk lists not found (see Check)
	Swept      int   // objects deleted (DryRun: that would be)
	SweptBytes int64 // their stored size
	Kept       int   // unreferenced objects kept because younger than the grace period
	KeptBytes  int64
	KeptInUse  int // unreferenced by manifests but taken up by a writer during this GC
	StaleLocks int // lock objects of crashed processes removed
}

// GC deletes objects that no snapshot manifest and no running writer
// references, except those younger than the grace period.
//
// GC refuses (ErrImagePool) to run on an image pool — one holding the
// images package's marker object ImagePoolMarker — because its blocks are
// referenced by image manifests GC cannot read; use the images Store's GC.
//
// It is safe against concurrent writers. Writers in this process are
// marked from (their open directories and pending writes), and whatever
// they reference while GC runs is recorded and never deleted (see
// lock.go). Writers in other processes hold lock objects: GC refuses to
// sweep (ErrLocked) while a fresh foreign writer lock exists, and holds a
// GC lock that makes new foreign writers wait.
func (p *Pool) GC(ctx context.Context, o GCOptions) (GCReport, error) {
	rep := GCReport{DryRun: o.DryRun}
	if err := p.refuseImagePool(ctx); err != nil {
		return rep, err
	}
	st := p.state()
	st.gcMu.Lock()
	defer st.gcMu.Unlock()
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	grace := o.Grace
	if grace == 0 {
		grace = DefaultGCGrace
	}
	if grace < 0 {
		grace = 0
	}
	if !o.DryRun {
		lock, err := p.takeLock(ctx, fmt.Sprintf("%sgc-%s-1", locksPrefix, st.instance), lockInfo{Kind: "gc"})
		if err != nil {
			return rep, fmt.Errorf("gc: %w", err)
		}
		defer lock.release(ctx)
		foreign, err := p.foreignLocks(ctx, "writer", time.Now())
		if err != nil {
			return rep, fmt.Errorf("gc: %w", err)
		}
		if len(foreign) > 0 {
			return rep, fmt.Errorf("%w: gc at %s: a backup is running in another process: %s; try again later", ErrLocked, p.Location(), p.describeLock(ctx, foreign[0]))
		}
		rep.StaleLocks = p.removeStaleLocks(ctx, time.Now())
	}

	// Roots from this process's writers, taken in the same critical
	// section that turns on reference recording.
	type root struct {
		d    Digest
		kind Kind
		data []byte
	}
	var roots []root
	st.mu.Lock()
	st.gcActive++
	if st.gcRefs == nil {
		st.gcRefs = map[Digest]struct{}{}
	}
	for w := range st.writers {
		rep.Writers++
		w.gcRootsLocked(func(d Digest, kind Kind, data []byte) { roots = append(roots, root{d, kind, data}) })
	}
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		if st.gcActive--; st.gcActive == 0 {
			st.gcRefs = nil
		}
		st.mu.Unlock()
	}()

	// A writer's tree or chunk list may still be on its way to the
	// backend: mark through the copy in memory wherever it is referenced.
	inMemory := map[Digest][]byte{}
	for _, r := range roots {
		if r.data != nil {
			inMemory[r.d] = r.data
		}
	}
	marked := map[Digest]struct{}{}
	var mark func(d Digest, kind Kind, data []byte) error
	mark = func(d Digest, kind Kind, data []byte) error {
		if _, ok := marked[d]; ok {
			return nil
		}
		marked[d] = struct{}{}
		if kind == KindData {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if data == nil {
			data = inMemory[d]
		}
		if data == nil {
			_, b, err := p.Get(ctx, d)
			if errors.Is(err, ErrNotFound) {
				rep.Missing++
				return nil
			}
			if err != nil {
				return fmt.Errorf("gc: mark: %w (run check to quarantine it)", err)
			}
			data = b
		}
		if kind == KindChunkList {
			refs, err := decodeChunkList(data)
			if err != nil {
				return fmt.Errorf("gc: mark: object %s: %w", d, err)
			}
			for _, c := range refs {
				marked[c.d] = struct{}{}
			}
			return nil
		}
		es, err := DecodeTree(data)
		if err != nil {
			return fmt.Errorf("gc: mark: object %s: %w", d, err)
		}
		for i := range es {
			var err error
			addEntryRoot(&es[i], func(d Digest, kind Kind, data []byte) { err = mark(d, kind, data) })
			if err != nil {
				return err
			}
		}
		return nil
	}
	for _, r := range roots {
		if err := mark(r.d, r.kind, r.data); err != nil {
			return rep, err
		}
	}
	err := p.Snapshots(ctx, func(m *Manifest) error {
		rep.Snapshots++
		return mark(m.Root, KindTree, nil)
	})
	if err != nil {
		return rep, fmt.Errorf("gc: %w", err)
	}
	rep.Marked = len(marked)

	type cand struct {
		d    Digest
		size int64
	}
	var cands []cand
	cutoff := now().Add(-grace)
	err = p.ListObjects(ctx, func(d Digest, oi ObjectInfo) error {
		if _, ok := marked[d]; ok {
			return nil
		}
		if oi.ModTime.After(cutoff) {
			rep.Kept++
			rep.KeptBytes += oi.Size
			return nil
		}
		cands = append(cands, cand{d, oi.Size})
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("gc: %w", err)
	}
	marked = nil
	for _, c := range cands {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		st.mu.Lock()
		if _, ok := st.gcRefs[c.d]; ok {
			st.mu.Unlock()
			rep.KeptInUse++
			continue
		}
		if o.DryRun {
			st.mu.Unlock()
			rep.Swept++
			rep.SweptBytes += c.size
			continue
		}
		ch := make(chan struct{})
		st.deleting[c.d] = ch
		st.mu.Unlock()
		err := p.DeleteObject(ctx, c.d)
		st.mu.Lock()
		delete(st.deleting, c.d)
		close(ch)
		st.mu.Unlock()
		if err != nil {
			return rep, fmt.Errorf("gc: %w", err)
		}
		st.chunks.remove(c.d)
		st.trees.remove(c.d)
		rep.Swept++
		rep.SweptBytes += c.size
	}
	return rep, nil
}

// ImagePoolMarker is the named object the images package writes at the
// root of an image pool (images.MarkerName). The pool package only checks
// for it, so that GC never sweeps an image pool's blocks.
const ImagePoolMarker = "cairn-images.json"

// refuseImagePool returns ErrImagePool when the pool is an image pool.
func (p *Pool) refuseImagePool(ctx context.Context) error {
	_, err := p.b.Stat(ctx, ImagePoolMarker)
	switch {
	case err == nil:
		return fmt.Errorf("gc at %s: %w (it holds %s): file-pool GC would delete every image block; use the image pool's own GC", p.Location(), ErrImagePool, ImagePoolMarker)
	case errors.Is(err, ErrNotFound):
		return nil
	default:
		return fmt.Errorf("gc at %s: check for an image-pool marker: %w", p.Location(), err)
	}
}
