package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Staging is a Backend decorator for slow object storage: a Put of an
// object or a snapshot manifest lands in a local directory at disk speed
// and returns; background uploaders drain the directory to the remote
// backend with bounded concurrency and an optional byte rate.
//
// Invariants:
//   - A manifest (snapshots/…) is uploaded only after every object staged
//     before it is on the remote, so the remote never holds a snapshot
//     that points at missing objects — also across a crash: at start every
//     staged object is uploaded before any staged manifest.
//   - A staged entry is a plain file under Dir/data/<name>, written to a
//     temporary file and renamed, and removed only after its upload
//     succeeded: a crash loses nothing staged, and the uploads resume when
//     NewStaging next opens the directory.
//   - Reads (Get, Stat, List) see staged entries before they are uploaded.
//   - When staged bytes reach MaxBytes, Put waits for uploads: a backup
//     slows to the upload rate instead of filling the disk.
//   - Names outside objects/ and snapshots/ (the identity file, lock
//     objects) go straight to the remote: they coordinate processes.
//
// Other processes see staged entries only once uploaded; a GC elsewhere
// with a grace period shorter than the drain time could sweep objects of
// a manifest still staged here. Keep the default grace (1 h) or longer.
type Staging struct {
	remote Backend
	o      StagingOptions
	log    *slog.Logger

	mu       sync.Mutex
	cond     *sync.Cond // signalled when an upload ends or an entry is added
	entries  map[string]*stagedEntry
	seq      uint64
	staged   int64 // bytes of staged entries
	peak     int64 // most bytes staged at once
	uploaded int64 // entries uploaded since start
	closed   bool
	// uploadedNames collects uploads while known is being loaded.
	uploadedNames map[string]struct{}

	rateMu   sync.Mutex
	rateNext time.Time

	// known holds the object names the remote had at start (one List) and
	// those uploaded since; nil until loaded or when the pool is too big.
	// A name not in it is absent without asking the remote: the pool
	// checks every new object's existence, and on a slow remote those
	// round trips would set the pace. A name in it is still asked (GC
	// elsewhere may have removed it since), so a stale index costs at
	// most a redundant upload, never a missing object.
	known map[string]struct{}

	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// StagingOptions configure NewStaging.
type StagingOptions struct {
	Dir       string  // local directory (created if missing)
	MaxBytes  int64   // cap of staged bytes; default 1 GiB
	Uploaders int     // concurrent uploads; default 4
	Rate      float64 // upload bytes per second; 0: unlimited
	// SyncUploads makes Sync wait until everything staged is uploaded, so
	// a snapshot is on the remote before its Finish returns (several
	// processes share the remote); otherwise Sync only makes the stage
	// durable on the local disk.
	SyncUploads bool
	Logger      *slog.Logger
}

type stagedEntry struct {
	name     string
	size     int64
	seq      uint64
	manifest bool
	inFlight bool
	deleted  bool // deleted while in flight: delete the upload too
}

var (
	_ Backend = (*Staging)(nil)
	_ Syncer  = (*Staging)(nil)
)

const (
	stagingData = "data"
	stagingTmp  = "tmp"
)

// stagedName reports whether name is staged rather than passed through.
func stagedName(name string) bool {
	return strings.HasPrefix(name, "objects/") || strings.HasPrefix(name, snapshotsPrefix)
}

// NewStaging opens (or creates) the staging directory over remote and
// starts the uploaders; entries left by a previous process are queued
// again, objects before manifests.
func NewStaging(remote Backend, o StagingOptions) (*Staging, error) {
	if o.Dir == "" {
		return nil, errors.New("staging: no directory")
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 1 << 30
	}
	if o.Uploaders <= 0 {
		o.Uploaders = 4
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Staging{remote: remote, o: o, log: o.Logger.With("component", "staging"), entries: map[string]*stagedEntry{},
		uploadedNames: map[string]struct{}{}}
	s.cond = sync.NewCond(&s.mu)
	for _, d := range []string{stagingData, stagingTmp} {
		if err := os.MkdirAll(filepath.Join(o.Dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("staging %s: %w", o.Dir, err)
		}
	}
	os.RemoveAll(filepath.Join(o.Dir, stagingTmp)) // half-written Puts of a crashed process
	if err := os.MkdirAll(filepath.Join(o.Dir, stagingTmp), 0o700); err != nil {
		return nil, fmt.Errorf("staging %s: %w", o.Dir, err)
	}
	root := filepath.Join(o.Dir, stagingData)
	var found []*stagedEntry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		name := filepath.ToSlash(rel)
		if ValidateName(name) != nil || !stagedName(name) {
			return nil
		}
		found = append(found, &stagedEntry{name: name, size: fi.Size(), manifest: strings.HasPrefix(name, snapshotsPrefix)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("staging %s: %w", o.Dir, err)
	}
	// Objects first, then manifests: every object gets a lower sequence.
	slices.SortStableFunc(found, func(a, b *stagedEntry) int {
		switch {
		case a.manifest == b.manifest:
			return strings.Compare(a.name, b.name)
		case a.manifest:
			return 1
		}
		return -1
	})
	for _, e := range found {
		s.seq++
		e.seq = s.seq
		s.entries[e.name] = e
		s.staged += e.size
	}
	if len(found) > 0 {
		s.log.Info("resuming uploads of a previous run", "entries", len(found), "bytes", s.staged, "remote", remote.Location())
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go s.loadKnown(ctx)
	for range o.Uploaders {
		s.wg.Add(1)
		go s.uploader(ctx)
	}
	return s, nil
}

// Unwrap returns the remote backend.
func (s *Staging) Unwrap() Backend { return s.remote }

// Location is the remote's location.
func (s *Staging) Location() string { return s.remote.Location() }

func (s *Staging) path(name string) string {
	return filepath.Join(s.o.Dir, stagingData, filepath.FromSlash(name))
}

// Put stages name (objects and manifests) or writes it to the remote.
func (s *Staging) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if !stagedName(name) {
		return s.remote.Put(ctx, name, r, size)
	}
	// Back-pressure: wait while the cap is reached (an empty stage always
	// takes one entry, however big).
	s.mu.Lock()
	for s.staged > 0 && s.staged+size > s.o.MaxBytes && !s.closed {
		if err := s.waitLocked(ctx); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	s.mu.Unlock()
	tmp, err := os.CreateTemp(filepath.Join(s.o.Dir, stagingTmp), "put-")
	if err != nil {
		return fmt.Errorf("staging put %s: %w", name, err)
	}
	n, err := io.Copy(tmp, r)
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("wrote %d bytes, want %d", n, size)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.MkdirAll(filepath.Dir(s.path(name)), 0o700)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path(name))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("staging put %s: %w", name, err)
	}
	s.mu.Lock()
	if old := s.entries[name]; old != nil {
		// Replaced (names are content addresses, so the content is the
		// same): the new entry counts instead; an upload of the old one
		// under way just finishes.
		s.staged -= old.size
	}
	s.seq++
	e := &stagedEntry{name: name, size: n, seq: s.seq, manifest: strings.HasPrefix(name, snapshotsPrefix)}
	s.entries[name] = e
	s.staged += n
	s.peak = max(s.peak, s.staged)
	s.cond.Broadcast()
	s.mu.Unlock()
	return nil
}

// waitLocked waits for a change or ctx; s.mu must be held.
func (s *Staging) waitLocked(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	s.cond.Wait()
	stop()
	return ctx.Err()
}

// Get reads a staged entry from disk, anything else from the remote.
func (s *Staging) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if stagedName(name) {
		s.mu.Lock()
		_, ok := s.entries[name]
		s.mu.Unlock()
		if ok {
			if f, err := os.Open(s.path(name)); err == nil {
				return sectionReader(f, off, length)
			}
		}
	}
	return s.remote.Get(ctx, name, off, length)
}

func sectionReader(f *os.File, off, length int64) (io.ReadCloser, error) {
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if off > fi.Size() {
		off = fi.Size()
	}
	n := fi.Size() - off
	if length >= 0 && length < n {
		n = length
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, off, n), f}, nil
}

// Stat answers for staged entries from disk, and for objects the remote
// did not have (see known) without asking it.
func (s *Staging) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	if stagedName(name) {
		s.mu.Lock()
		_, ok := s.entries[name]
		absent := false
		if s.known != nil && strings.HasPrefix(name, "objects/") {
			_, have := s.known[name]
			absent = !have
		}
		s.mu.Unlock()
		if ok {
			if fi, err := os.Stat(s.path(name)); err == nil {
				return ObjectInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
			}
		}
		if absent && !ok {
			return ObjectInfo{}, fmt.Errorf("%s: %w", name, ErrNotFound)
		}
	}
	return s.remote.Stat(ctx, name)
}

// maxKnown caps the index of remote object names (about 100 bytes each).
const maxKnown = 4 << 20

// loadKnown lists the remote's objects once into known.
func (s *Staging) loadKnown(ctx context.Context) {
	defer s.wg.Done()
	known := map[string]struct{}{}
	err := s.remote.List(ctx, "objects/", func(oi ObjectInfo) error {
		if len(known) >= maxKnown {
			return errors.New("too many objects to index")
		}
		known[oi.Name] = struct{}{}
		return nil
	})
	if err != nil {
		s.log.Info("staging: no index of remote objects; every new object is checked on the remote", "err", err)
		return
	}
	s.mu.Lock()
	// Uploads that finished while listing may be missing from the list.
	for n := range s.uploadedNames {
		known[n] = struct{}{}
	}
	s.uploadedNames = nil
	s.known = known
	s.mu.Unlock()
}

// List lists the remote and the staged entries under prefix, each name
// once, staged entries after the remote's.
func (s *Staging) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	s.mu.Lock()
	var staged []string
	for name := range s.entries {
		if strings.HasPrefix(name, prefix) {
			staged = append(staged, name)
		}
	}
	s.mu.Unlock()
	slices.Sort(staged)
	seen := make(map[string]bool, len(staged))
	for _, n := range staged {
		seen[n] = true
	}
	if err := s.remote.List(ctx, prefix, func(oi ObjectInfo) error {
		if seen[oi.Name] {
			return nil
		}
		return fn(oi)
	}); err != nil {
		return err
	}
	for _, n := range staged {
		fi, err := os.Stat(s.path(n))
		if err != nil {
			continue // uploaded meanwhile, and listed by the remote or gone
		}
		if err := fn(ObjectInfo{Name: n, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes a staged entry (and its upload, if one is under way)
// and the remote object.
func (s *Staging) Delete(ctx context.Context, name string) error {
	wasStaged := false
	if stagedName(name) {
		s.mu.Lock()
		if e := s.entries[name]; e != nil {
			wasStaged = true
			if e.inFlight {
				e.deleted = true
			} else {
				delete(s.entries, name)
				s.staged -= e.size
				os.Remove(s.path(name))
				s.cond.Broadcast()
			}
		}
		s.mu.Unlock()
	}
	err := s.remote.Delete(ctx, name)
	if err == nil || errors.Is(err, ErrNotFound) {
		s.mu.Lock()
		if s.known != nil {
			delete(s.known, name)
		}
		s.mu.Unlock()
	}
	if wasStaged && errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Sync makes the staged entries durable on the local disk (the pool's
// barrier before a snapshot is committed), or with SyncUploads waits for
// their upload. Otherwise uploads go on in the background; Flush waits
// for them.
func (s *Staging) Sync(ctx context.Context) error {
	if s.o.SyncUploads {
		return s.Flush(ctx)
	}
	return syncTree(filepath.Join(s.o.Dir, stagingData))
}

// syncTree fsyncs every file and directory under root.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return nil // uploaded and removed meanwhile
		}
		defer f.Close()
		return f.Sync()
	})
}

// Flush waits until every entry staged so far is uploaded.
func (s *Staging) Flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.entries) > 0 {
		if s.closed {
			return errors.New("staging closed with uploads pending")
		}
		if err := s.waitLocked(ctx); err != nil {
			return fmt.Errorf("staging flush: %d entries not uploaded yet: %w", len(s.entries), err)
		}
	}
	return nil
}

// StagingStats describe the stage.
type StagingStats struct {
	Entries  int
	Bytes    int64 // staged, not uploaded yet
	Peak     int64 // most bytes staged at once since start
	Uploaded int64 // entries uploaded since start
}

// Stats returns the current figures.
func (s *Staging) Stats() StagingStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return StagingStats{Entries: len(s.entries), Bytes: s.staged, Peak: s.peak, Uploaded: s.uploaded}
}

// Close stops the uploaders; what is still staged is uploaded by the
// next NewStaging on the directory. It closes the remote if it can.
func (s *Staging) Close() error {
	s.mu.Lock()
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	if c, ok := s.remote.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// next picks the entry to upload: the oldest object not in flight, or a
// manifest once no object older than it is staged. s.mu must be held.
func (s *Staging) next() *stagedEntry {
	var obj, man *stagedEntry
	var oldestObj uint64 // lowest seq of a staged object, in flight or not
	for _, e := range s.entries {
		if !e.manifest && (oldestObj == 0 || e.seq < oldestObj) {
			oldestObj = e.seq
		}
		if e.inFlight {
			continue
		}
		if e.manifest {
			if man == nil || e.seq < man.seq {
				man = e
			}
		} else if obj == nil || e.seq < obj.seq {
			obj = e
		}
	}
	if obj != nil {
		return obj
	}
	if man != nil && (oldestObj == 0 || oldestObj > man.seq) {
		return man
	}
	return nil
}

func (s *Staging) uploader(ctx context.Context) {
	defer s.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		s.mu.Lock()
		var e *stagedEntry
		for {
			if s.closed {
				s.mu.Unlock()
				return
			}
			if e = s.next(); e != nil {
				break
			}
			s.cond.Wait()
		}
		e.inFlight = true
		s.mu.Unlock()

		err := s.upload(ctx, e)
		if errors.Is(err, fs.ErrNotExist) {
			// Its file went with an upload of the same name that ended
			// just before this entry replaced it: that upload carried
			// the same content.
			err = nil
		}

		s.mu.Lock()
		e.inFlight = false
		deleted := e.deleted
		if err == nil && s.entries[e.name] == e {
			delete(s.entries, e.name)
			s.staged -= e.size
			if !deleted {
				s.uploaded++
				s.noteUploadedLocked(e.name)
			}
			os.Remove(s.path(e.name))
		}
		s.cond.Broadcast()
		s.mu.Unlock()
		if deleted && err == nil {
			s.remote.Delete(context.WithoutCancel(ctx), e.name)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("upload failed; retrying", "name", e.name, "remote", s.remote.Location(), "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		} else {
			backoff = 100 * time.Millisecond
		}
	}
}

// noteUploadedLocked records an upload in the index. s.mu must be held.
func (s *Staging) noteUploadedLocked(name string) {
	switch {
	case s.known != nil:
		s.known[name] = struct{}{}
	case s.uploadedNames != nil:
		s.uploadedNames[name] = struct{}{}
	}
}

// upload sends one entry to the remote under the byte rate.
func (s *Staging) upload(ctx context.Context, e *stagedEntry) error {
	f, err := os.Open(s.path(e.name))
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := s.throttle(ctx, fi.Size()); err != nil {
		return err
	}
	return s.remote.Put(ctx, e.name, f, fi.Size())
}

// throttle waits so that uploads average at most o.Rate bytes a second.
func (s *Staging) throttle(ctx context.Context, n int64) error {
	if s.o.Rate <= 0 {
		return nil
	}
	s.rateMu.Lock()
	now := time.Now()
	if s.rateNext.Before(now) {
		s.rateNext = now
	}
	at := s.rateNext
	s.rateNext = s.rateNext.Add(time.Duration(float64(n) / s.o.Rate * float64(time.Second)))
	s.rateMu.Unlock()
	if d := time.Until(at); d > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	return nil
}
