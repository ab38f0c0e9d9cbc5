package images

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// GCReport says what an image GC found and did.
type GCReport struct {
	DryRun     bool
	Versions   int   // manifests marked from
	Marked     int   // distinct blocks they reference
	Swept      int   // blocks deleted (DryRun: that would be)
	SweptBytes int64 // their stored size
	Kept       int   // unreferenced blocks kept: younger than the grace period
	KeptBytes  int64
	KeptInUse  int // unreferenced by manifests but held by a running version writer
	StaleLocks int // lock objects of dead holders removed (lock.go)
}

// GC deletes blocks that no image manifest references, except those
// younger than the grace period (o.Grace; 0 means pool.DefaultGCGrace)
// and those held by version writers in this process (see hold); while a
// writer of another process runs it fails with ErrLocked (lock.go). A
// manifest that cannot be read aborts the GC before anything is deleted:
// its blocks cannot be told apart from garbage.
//
// Use this, never pool.GC, on an image pool: pool.GC knows only file
// snapshots and would sweep every block.
func (s *Store) GC(ctx context.Context, o pool.GCOptions) (GCReport, error) {
	rep := GCReport{DryRun: o.DryRun}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	grace := o.Grace
	if grace == 0 {
		grace = pool.DefaultGCGrace
	}
	grace = max(grace, 0)
	if !o.DryRun {
		l, err := s.takeLock(ctx, "gc")
		if err != nil {
			return rep, fmt.Errorf("image gc: %w", err)
		}
		defer l.release()
		ws, err := s.foreignLocks(ctx, "writer")
		if err != nil {
			return rep, fmt.Errorf("image gc: %w", err)
		}
		if len(ws) > 0 {
			return rep, fmt.Errorf("%w: image gc at %s: an image pull is running in another process: %s; try again later",
				ErrLocked, s.p.Location(), s.describeLock(ctx, ws[0]))
		}
		// Locks of dead holders (aged out, or their owner dead by the lock
		// registry) go; a holder that comes back will not commit.
		rep.StaleLocks = s.removeDeadLocks(ctx)
	}

	s.mu.Lock()
	if s.gcActive == 0 {
		s.gcRefs = map[pool.Digest]struct{}{}
	}
	s.gcActive++
	for d := range s.live {
		s.gcRefs[d] = struct{}{}
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.gcActive--; s.gcActive == 0 {
			s.gcRefs = nil
		}
		s.mu.Unlock()
	}()

	marked := map[pool.Digest]struct{}{}
	var refs []VersionRef
	if err := s.Versions(ctx, func(v VersionRef) error { refs = append(refs, v); return nil }); err != nil {
		return rep, fmt.Errorf("image gc: %w", err)
	}
	for _, v := range refs {
		m, err := s.Load(ctx, v.Name, v.ID)
		if errors.Is(err, pool.ErrNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return rep, fmt.Errorf("image gc: %w (nothing deleted; run check)", err)
		}
		rep.Versions++
		m.Digests(func(d pool.Digest) { marked[d] = struct{}{} })
	}
	rep.Marked = len(marked)

	type cand struct {
		d    pool.Digest
		size int64
	}
	var cands []cand
	cutoff := now().Add(-grace)
	err := s.p.ListObjects(ctx, func(d pool.Digest, oi pool.ObjectInfo) error {
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
		return rep, fmt.Errorf("image gc: %w", err)
	}
	for _, c := range cands {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		s.mu.Lock()
		if _, ok := s.gcRefs[c.d]; ok {
			s.mu.Unlock()
			rep.KeptInUse++
			continue
		}
		if o.DryRun {
			s.mu.Unlock()
			rep.Swept++
			rep.SweptBytes += c.size
			continue
		}
		ch := make(chan struct{})
		s.deleting[c.d] = ch
		s.mu.Unlock()
		err := s.p.DeleteObject(ctx, c.d)
		s.mu.Lock()
		delete(s.deleting, c.d)
		close(ch)
		s.mu.Unlock()
		if err != nil {
			return rep, fmt.Errorf("image gc: %w", err)
		}
		rep.Swept++
		rep.SweptBytes += c.size
	}
	s.log.Info("image gc", "dry_run", o.DryRun, "versions", rep.Versions, "marked", rep.Marked, "swept", rep.Swept, "swept_bytes", rep.SweptBytes, "kept", rep.Kept)
	return rep, nil
}

// CheckUse names one place a bad block is used.
type CheckUse struct {
	Name, ID string      // image and version
	Block    int64       // block index
	Offset   int64       // its byte offset in the image
	Digest   pool.Digest // the missing or corrupt block
}

// CheckReport is what an image check found. Corrupt blocks are already in
// quarantine/ (the next ingest of that content stores them again).
type CheckReport struct {
	Versions    int
	BadVersions []string // "name/id: error" for manifests that do not read or decode
	Objects     int      // block objects stored
	Referenced  int      // distinct blocks referenced
	ReadObjects int      // blocks re-read and re-hashed
	ReadBytes   int64
	Missing     []pool.Digest
	Corrupt     []pool.Digest
	Affected    []CheckUse
}

// OK reports whether the check found no problem.
func (r *CheckReport) OK() bool {
	return len(r.BadVersions) == 0 && len(r.Missing) == 0 && len(r.Corrupt) == 0
}

func (r *CheckReport) String() string {
	s := fmt.Sprintf("%d image versions, %d blocks (%d referenced), %d re-read", r.Versions, r.Objects, r.Referenced, r.ReadObjects)
	if r.OK() {
		return s + ": no errors"
	}
	return s + fmt.Sprintf(": %d bad manifests, %d missing, %d corrupt blocks, used at %d places",
		len(r.BadVersions), len(r.Missing), len(r.Corrupt), len(r.Affected))
}

// Check verifies the image pool the way pool.Check verifies the file
// pool: every manifest reads and decodes, every referenced block is
// stored, and with o.ReadData a percentage (o.Percent; 0 or ≥100: all) of
// the stored blocks is re-read and re-hashed. Corrupt blocks are
// quarantined; the report names every version and block that uses a bad
// one. An error means the check itself could not run.
func (s *Store) Check(ctx context.Context, o pool.CheckOptions) (CheckReport, error) {
	var rep CheckReport
	var refs []VersionRef
	if err := s.Versions(ctx, func(v VersionRef) error { refs = append(refs, v); return nil }); err != nil {
		return rep, fmt.Errorf("image check: %w", err)
	}
	var ms []*Manifest
	for _, v := range refs {
		m, err := s.Load(ctx, v.Name, v.ID)
		if errors.Is(err, pool.ErrNotFound) {
			continue
		}
		if err != nil {
			if !errors.Is(err, pool.ErrCorrupt) && !errors.Is(err, ErrCorruptManifest) {
				return rep, fmt.Errorf("image check: %w", err)
			}
			rep.BadVersions = append(rep.BadVersions, v.Name+"/"+v.ID+": "+err.Error())
			continue
		}
		ms = append(ms, m)
	}
	rep.Versions = len(ms)
	stored := map[pool.Digest]int64{}
	if err := s.p.ListObjects(ctx, func(d pool.Digest, oi pool.ObjectInfo) error {
		stored[d] = oi.Size
		return nil
	}); err != nil {
		return rep, fmt.Errorf("image check: %w", err)
	}
	rep.Objects = len(stored)
	bad := map[pool.Digest]bool{}
	referenced := map[pool.Digest]struct{}{}
	for _, m := range ms {
		m.Digests(func(d pool.Digest) {
			if _, ok := referenced[d]; ok {
				return
			}
			referenced[d] = struct{}{}
			if _, ok := stored[d]; !ok {
				bad[d] = true
				rep.Missing = append(rep.Missing, d)
			}
		})
	}
	rep.Referenced = len(referenced)
	if o.ReadData {
		var todo []pool.Digest
		for d := range stored {
			if o.Percent > 0 && o.Percent < 100 && rand.Float64()*100 >= o.Percent {
				continue
			}
			todo = append(todo, d)
		}
		if err := s.readData(ctx, todo, bad, &rep); err != nil {
			return rep, err
		}
	}
	for _, d := range rep.Corrupt {
		if err := s.p.Quarantine(ctx, d); err != nil && !errors.Is(err, pool.ErrNotFound) {
			return rep, fmt.Errorf("image check: %w", err)
		}
	}
	if len(bad) > 0 {
		for _, m := range ms {
			for i := range m.NumBlocks() {
				if d, zero, _ := m.Block(i); !zero && bad[d] {
					rep.Affected = append(rep.Affected, CheckUse{Name: m.Name, ID: m.ID, Block: i, Offset: i * BlockSize, Digest: d})
				}
			}
		}
	}
	cmp := func(a, b pool.Digest) int { return slices.Compare(a[:], b[:]) }
	slices.SortFunc(rep.Missing, cmp)
	slices.SortFunc(rep.Corrupt, cmp)
	return rep, nil
}

// readData re-reads blocks on GOMAXPROCS workers.
func (s *Store) readData(ctx context.Context, todo []pool.Digest, bad map[pool.Digest]bool, rep *CheckReport) error {
	var (
		mu    sync.Mutex
		next  int
		fatal error
		wg    sync.WaitGroup
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				mu.Lock()
				if next == len(todo) || fatal != nil || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				d := todo[next]
				next++
				mu.Unlock()
				_, data, err := s.p.Get(ctx, d)
				mu.Lock()
				switch {
				case err == nil:
					rep.ReadObjects++
					rep.ReadBytes += int64(len(data))
				case errors.Is(err, pool.ErrCorrupt):
					rep.ReadObjects++
					bad[d] = true
					rep.Corrupt = append(rep.Corrupt, d)
				case errors.Is(err, pool.ErrNotFound):
					// swept since the listing
				default:
					fatal = fmt.Errorf("image check: read data: %w", err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if fatal != nil {
		return fatal
	}
	return ctx.Err()
}
