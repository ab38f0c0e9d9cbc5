package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/pool"
)

// VersionOptions describe a new version.
type VersionOptions struct {
	Host, Source, Snapshot string    // recorded in the manifest
	Time                   time.Time // zero: now
	// HostHash records a host-side hash per block (needed as the basis of a
	// later differential pull). Put computes it when the caller gives none.
	HostHash HashAlg
	// Prev is the basis: blocks equal to Prev's block at the same index
	// are not stored again, and Reuse copies them without data.
	Prev *Manifest
	// ID is the new version's ID (NewVersionID); empty: a new one. A
	// caller that must name the version before writing it sets it.
	ID string
}

// Stats count what a version write did.
type Stats struct {
	Blocks      int64 // blocks in the image
	ZeroBlocks  int64 // holes: all-zero blocks, never stored
	Stored      int64 // block objects written
	StoredBytes int64 // their size in the pool (compressed, encrypted)
	Skipped     int64 // data blocks not written: unchanged from Prev or already in the pool
	Reused      int64 // of Skipped: taken from Prev without reading them (Reuse)
	BytesRead   int64 // source bytes read or received
}

// A VersionWriter builds one image version. Put and Reuse may be called
// concurrently and in any order, once per block index; Commit stores the
// manifest once every block is set. Until Commit or Abort, every block
// it references (and every block of Prev) is kept by GC.
type VersionWriter struct {
	s    *Store
	meta Manifest
	prev *Manifest
	lock *heldLock

	mu     sync.Mutex
	set    []uint8 // 0 unset, 1 zero, 2 data
	digs   []pool.Digest
	hosts  [][HostHashSize]byte
	held   []pool.Digest
	stats  Stats
	closed bool
}

const (
	blockUnset = 0
	blockZero  = 1
	blockData  = 2
)

// NewVersion starts a version of image name with the given size.
func (s *Store) NewVersion(ctx context.Context, name string, size int64, o VersionOptions) (*VersionWriter, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if size < 0 || size > MaxImageSize {
		return nil, fmt.Errorf("image %s: size %d out of range (0–%d)", name, size, int64(MaxImageSize))
	}
	if o.HostHash > HashSHA256 {
		return nil, fmt.Errorf("image %s: unknown host hash %d", name, o.HostHash)
	}
	t := o.Time
	if t.IsZero() {
		t = time.Now()
	}
	id := o.ID
	if id == "" {
		id = newVersionID(t)
	} else if err := validID(id); err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	var err error
	w := &VersionWriter{
		s: s,
		meta: Manifest{Name: name, ID: id, Host: o.Host, Source: o.Source, Snapshot: o.Snapshot,
			Time: t.UTC(), Size: size, HostHash: o.HostHash},
	}
	n := numBlocks(size)
	w.set = make([]uint8, n)
	w.digs = make([]pool.Digest, n)
	if o.HostHash != HashNone {
		w.hosts = make([][HostHashSize]byte, n)
	}
	w.stats.Blocks = n
	if w.lock, err = s.writerLock(ctx); err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	if p := o.Prev; p != nil {
		// Hold Prev's blocks, then make sure Prev still exists: if it does,
		// no GC can have swept them before the hold (FORMAT.md §5).
		w.held = append(w.held, p.blocks...) // before hold: Abort releases them even if hold fails
		if err := s.hold(ctx, p.blocks...); err != nil {
			w.Abort()
			return nil, err
		}
		_, err := s.p.Backend().Stat(ctx, ManifestName(p.Name, p.ID))
		switch {
		case err == nil:
			w.prev = p
		case errors.Is(err, pool.ErrNotFound):
			s.log.Warn("basis version was deleted; storing a full version", "image", name, "basis", p.ID)
		default:
			w.Abort()
			return nil, fmt.Errorf("image %s: basis %s: %w", name, p.ID, err)
		}
	}
	return w, nil
}

// ID returns the new version's ID.
func (w *VersionWriter) ID() string { return w.meta.ID }

// Prev returns the basis in use (nil when none or when it was deleted).
func (w *VersionWriter) Prev() *Manifest { return w.prev }

// Stats returns the counts so far.
func (w *VersionWriter) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

var zeroBlock = make([]byte, BlockSize)

// IsZero reports whether b is all zero bytes.
func IsZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

func (w *VersionWriter) check(i int64) error {
	if i < 0 || i >= int64(len(w.set)) {
		return fmt.Errorf("image %s: block %d out of range (%d blocks)", w.meta.Name, i, len(w.set))
	}
	if w.closed {
		return fmt.Errorf("image %s: version writer is closed", w.meta.Name)
	}
	if w.set[i] != blockUnset {
		return fmt.Errorf("image %s: block %d set twice", w.meta.Name, i)
	}
	return nil
}

// Put sets block i from its data, which must be exactly BlockLen(i)
// bytes (the caller keeps data; Put does not retain it). host, when not
// nil, is the host-side hash of data the caller already verified.
func (w *VersionWriter) Put(ctx context.Context, i int64, data []byte, host *[HostHashSize]byte) error {
	if want := blockLen(w.meta.Size, i); i >= 0 && len(data) != want {
		return fmt.Errorf("image %s: block %d is %d bytes, want %d: %w", w.meta.Name, i, len(data), want, ErrSourceChanged)
	}
	w.mu.Lock()
	err := w.check(i)
	w.mu.Unlock()
	if err != nil {
		return err
	}
	if IsZero(data) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if err := w.check(i); err != nil {
			return err
		}
		w.set[i] = blockZero
		w.stats.ZeroBlocks++
		w.stats.BytesRead += int64(len(data))
		return nil
	}
	d := w.s.p.Hash(data)
	var hh [HostHashSize]byte
	if w.meta.HostHash == HashSHA256 {
		if host != nil {
			hh = *host
		} else {
			hh = sha256.Sum256(data)
		}
	}
	// Blocks equal to Prev's are held since NewVersion; others now. Both
	// go through PutDigestSize, whose existence check makes a block that
	// check quarantined (or that went missing) be stored again.
	unchanged := false
	if w.prev != nil {
		if pd, zero, ok := w.prev.Block(i); ok && !zero && pd == d {
			unchanged = true
		}
	}
	if !unchanged {
		// Under w.mu, so that Abort either sees this hold or comes first.
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return fmt.Errorf("image %s: version writer is closed", w.meta.Name)
		}
		w.held = append(w.held, d)
		err := w.s.hold(ctx, d)
		w.mu.Unlock()
		if err != nil {
			return err
		}
	}
	added, stored, err := w.s.p.PutDigestSize(ctx, pool.KindData, d, data)
	if err != nil {
		return fmt.Errorf("image %s: block %d: %w", w.meta.Name, i, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(i); err != nil {
		return err
	}
	w.set[i] = blockData
	w.digs[i] = d
	if w.hosts != nil {
		w.hosts[i] = hh
	}
	w.stats.BytesRead += int64(len(data))
	if added {
		w.stats.Stored++
		w.stats.StoredBytes += stored
	} else {
		w.stats.Skipped++
	}
	return nil
}

// PutZero sets block i to a hole (the caller knows it is all zeros, e.g.
// from its host hash).
func (w *VersionWriter) PutZero(i int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(i); err != nil {
		return err
	}
	w.set[i] = blockZero
	w.stats.ZeroBlocks++
	return nil
}

// Reuse sets block i to Prev's block i without its data (the caller knows
// it is unchanged, e.g. by host hash). Prev's block must have the same
// length as block i.
func (w *VersionWriter) Reuse(i int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(i); err != nil {
		return err
	}
	if w.prev == nil {
		return fmt.Errorf("image %s: reuse of block %d without a basis version", w.meta.Name, i)
	}
	d, zero, ok := w.prev.Block(i)
	if !ok || w.prev.BlockLen(i) != blockLen(w.meta.Size, i) {
		return fmt.Errorf("image %s: block %d differs in length from basis %s", w.meta.Name, i, w.prev.ID)
	}
	if zero {
		w.set[i] = blockZero
		w.stats.ZeroBlocks++
		return nil
	}
	w.set[i] = blockData
	w.digs[i] = d
	if w.hosts != nil {
		h, ok := w.prev.HostHashOf(i)
		if !ok {
			return fmt.Errorf("image %s: basis %s records no host hash for block %d", w.meta.Name, w.prev.ID, i)
		}
		w.hosts[i] = h
	}
	w.stats.Skipped++
	w.stats.Reused++
	return nil
}

// Commit makes the version durable: a sync of the blocks, then the
// manifest images/<name>/<id>, then a sync. It fails if a block is unset.
func (w *VersionWriter) Commit(ctx context.Context) (*Manifest, Stats, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, Stats{}, fmt.Errorf("image %s: version writer is closed", w.meta.Name)
	}
	m := w.meta
	b := builder{m: &m}
	for i, st := range w.set {
		switch st {
		case blockUnset:
			w.mu.Unlock()
			return nil, Stats{}, fmt.Errorf("image %s: block %d was never written", w.meta.Name, i)
		case blockZero:
			b.add(true, pool.Digest{}, nil)
		default:
			var h *[HostHashSize]byte
			if w.hosts != nil {
				h = &w.hosts[i]
			}
			b.add(false, w.digs[i], h)
		}
	}
	stats, lock := w.stats, w.lock
	w.mu.Unlock()
	defer w.Abort()
	p := w.s.p
	if err := p.Sync(ctx); err != nil {
		return nil, stats, fmt.Errorf("image %s: %w", m.Name, err)
	}
	if err := lock.verify(ctx); err != nil { // a GC may have judged this writer dead (lock.go)
		return nil, stats, fmt.Errorf("image %s: %w", m.Name, err)
	}
	if err := p.PutNamed(ctx, ManifestName(m.Name, m.ID), pool.KindManifest, m.encode()); err != nil {
		return nil, stats, fmt.Errorf("image %s: write manifest: %w", m.Name, err)
	}
	if err := p.Sync(ctx); err != nil {
		return nil, stats, fmt.Errorf("image %s: %w", m.Name, err)
	}
	return &m, stats, nil
}

// Abort releases the writer's GC holds. Blocks it stored stay until a GC
// after the grace period. Safe to call more than once, and after Commit.
func (w *VersionWriter) Abort() {
	w.mu.Lock()
	held, lock := w.held, w.lock
	w.held, w.lock = nil, nil
	w.closed = true
	w.mu.Unlock()
	w.s.release(held)
	if lock != nil {
		lock.release()
	}
}

// IngestOptions tune IngestReaderAt.
type IngestOptions struct {
	VersionOptions
	// Workers hash and compress blocks in parallel; 0 means GOMAXPROCS.
	Workers int
	// Progress, when set, is called after each block with the counts so far.
	Progress func(Stats)
}

// IngestReaderAt stores a new version of image name from a raw image of
// size bytes read from r (a local file, or a file over SFTP or SMB). Every
// block is read in order; only blocks not already stored are written.
// A source that is shorter than size, or longer once read, fails with
// ErrSourceChanged and commits nothing.
func (s *Store) IngestReaderAt(ctx context.Context, name string, r io.ReaderAt, size int64, o IngestOptions) (*Manifest, Stats, error) {
	w, err := s.NewVersion(ctx, name, size, o.VersionOptions)
	if err != nil {
		return nil, Stats{}, err
	}
	defer w.Abort()
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	type job struct {
		i   int64
		buf *[]byte
	}
	bufs := make(chan *[]byte, workers+1)
	for range workers + 1 {
		b := make([]byte, BlockSize)
		bufs <- &b
	}
	jobs := make(chan job)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(jobs)
		for i := range numBlocks(size) {
			var bp *[]byte
			select {
			case bp = <-bufs:
			case <-gctx.Done():
				return gctx.Err()
			}
			buf := (*bp)[:blockLen(size, i)]
			n, err := r.ReadAt(buf, i*BlockSize)
			if n < len(buf) {
				if err == nil || errors.Is(err, io.EOF) {
					return fmt.Errorf("image %s: read %d bytes at offset %d, want %d (size %d): %w", name, n, i*BlockSize, len(buf), size, ErrSourceChanged)
				}
				return fmt.Errorf("image %s: read at offset %d: %w", name, i*BlockSize, err)
			}
			select {
			case jobs <- job{i, bp}:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		var probe [1]byte
		if n, _ := r.ReadAt(probe[:], size); n > 0 {
			return fmt.Errorf("image %s: source is longer than %d bytes: %w", name, size, ErrSourceChanged)
		}
		return nil
	})
	for range workers {
		g.Go(func() error {
			for j := range jobs {
				err := w.Put(gctx, j.i, (*j.buf)[:blockLen(size, j.i)], nil)
				bufs <- j.buf
				if err != nil {
					return err
				}
				if o.Progress != nil {
					o.Progress(w.Stats())
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, w.Stats(), err
	}
	m, st, err := w.Commit(ctx)
	if err == nil {
		s.log.Info("image version stored", "image", name, "version", m.ID, "size", size,
			"blocks", st.Blocks, "zero", st.ZeroBlocks, "stored", st.Stored, "skipped", st.Skipped, "stored_bytes", st.StoredBytes)
	}
	return m, st, err
}
