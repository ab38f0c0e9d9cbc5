package pool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"
)

// CheckOptions configure Check.
type CheckOptions struct {
	// ReadData re-reads and re-hashes stored objects (all, or Percent).
	ReadData bool
	// Percent, with ReadData, re-reads this percentage of the objects,
	// chosen at random. 0 or ≥ 100 means all.
	Percent float64
	// Select, when set, chooses the objects ReadData re-reads instead of
	// Percent (a rotating slice of the digest space, so successive checks
	// cover the whole pool).
	Select func(Digest) bool

	// Rereads is how many times an object that fails verification (hash
	// mismatch, damaged or short encoding) is read again with a fresh GET
	// before it is declared corrupt and quarantined, so bytes damaged on
	// the way (a flaky network, a proxy, an eventually consistent
	// overwrite) never quarantine a good object. 0 means DefaultRereads;
	// negative means none. RereadDelay is the wait before the first
	// re-read, doubled for each further one (default 200ms, jittered
	// ±25%; on a local directory, with nothing to wait out, 0); negative
	// re-reads at once. Sleep waits (tests inject it; default a timer).
	Rereads     int
	RereadDelay time.Duration
	Sleep       func(ctx context.Context, d time.Duration) error
}

// DefaultRereads is CheckOptions.Rereads when it is 0: with the default
// delay an object is read 4 times over about 1.4 s (0.2 + 0.4 + 0.8 s)
// before it is declared corrupt.
const DefaultRereads = 3

func (o *CheckOptions) rereads() int {
	switch {
	case o.Rereads < 0:
		return 0
	case o.Rereads == 0:
		return DefaultRereads
	}
	return o.Rereads
}

// verified runs read, which fetches an object afresh and verifies it,
// again while it fails with ErrCorrupt, up to o.rereads() more times
// with backoff. flaky reports that a read failed but a later one
// verified: the object is good, its bytes were damaged on the way.
func (o *CheckOptions) verified(ctx context.Context, read func() error) (flaky bool, err error) {
	base := o.RereadDelay
	if base == 0 {
		base = 200 * time.Millisecond
	}
	sleep := o.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	err = read()
	for i := 0; err != nil && errors.Is(err, ErrCorrupt) && i < o.rereads(); i++ {
		if base > 0 {
			d := base << min(i, 20)
			d = d*3/4 + rand.N(d/2+1)
			if serr := sleep(ctx, d); serr != nil {
				return false, serr
			}
		} else if cerr := ctx.Err(); cerr != nil {
			return false, cerr
		}
		if err = read(); err == nil {
			return true, nil
		}
	}
	return false, err
}

// CheckUse names one place a bad object is used.
type CheckUse struct {
	Snapshot string // snapshot ID
	Host     string
	Source   string
	Path     string // path in the snapshot ("." for the root)
	Digest   Digest // the missing or corrupt object
}

// CheckReport is what Check found. Corrupt objects are already in
// quarantine/; the next backup that contains their content stores them
// again.
type CheckReport struct {
	Snapshots    int      // manifests checked
	BadSnapshots []string // "id: error" for manifests that do not parse
	Objects      int      // objects stored
	Referenced   int      // distinct objects referenced by snapshots
	ReadObjects  int      // objects re-read and re-hashed
	ReadBytes    int64    // their plaintext size
	Missing      []Digest // referenced but not stored
	Corrupt      []Digest // failed verification on every read, moved to quarantine/
	Affected     []CheckUse
	// Flaky counts objects that failed verification on a read but
	// verified on a fresh re-read: good objects, damaged on the way. They
	// are not quarantined (see CheckOptions.Rereads).
	Flaky int
}

// OK reports whether the check found no problem.
func (r *CheckReport) OK() bool {
	return len(r.BadSnapshots) == 0 && len(r.Missing) == 0 && len(r.Corrupt) == 0
}

func (r *CheckReport) String() string {
	s := fmt.Sprintf("%d snapshots, %d objects (%d referenced), %d re-read", r.Snapshots, r.Objects, r.Referenced, r.ReadObjects)
	if r.Flaky > 0 {
		s += fmt.Sprintf(" (%d read back wrong, then verified on a fresh read: not corrupt)", r.Flaky)
	}
	if r.OK() {
		return s + ": no errors"
	}
	return s + fmt.Sprintf(": %d bad manifests, %d missing, %d corrupt objects, used at %d paths",
		len(r.BadSnapshots), len(r.Missing), len(r.Corrupt), len(r.Affected))
}

// Check verifies the pool: every manifest parses and every object a
// snapshot references exists (trees and chunk lists are read and
// verified on the way). With ReadData it also re-reads and re-hashes
// stored objects. Corrupt objects are quarantined, and the report names
// every snapshot and path that uses a missing or corrupt object. An
// object or manifest that fails verification is read again, afresh, up to
// CheckOptions.Rereads times before it counts as corrupt, so bytes damaged
// on their way from the storage never quarantine a good object. An error
// means the check itself could not run (storage unreachable).
func (p *Pool) Check(ctx context.Context, o CheckOptions) (CheckReport, error) {
	var rep CheckReport
	if o.RereadDelay == 0 && onLocalDisk(p.b) {
		o.RereadDelay = -1 // no network or eventual consistency to wait out
	}
	// Manifests first: objects they reference were stored before them, so
	// the object listing that follows includes all of them.
	ids, err := p.SnapshotIDs(ctx)
	if err != nil {
		return rep, fmt.Errorf("check: %w", err)
	}
	var manifests []*Manifest
	for _, id := range ids {
		var m *Manifest
		flaky, err := o.verified(ctx, func() (err error) {
			m, err = p.Snapshot(ctx, id)
			return err
		})
		if flaky {
			rep.Flaky++
		}
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrInvalidName) {
				return rep, fmt.Errorf("check: %w", err)
			}
			rep.BadSnapshots = append(rep.BadSnapshots, id+": "+err.Error())
			continue
		}
		manifests = append(manifests, m)
	}
	rep.Snapshots = len(manifests)
	stored := map[Digest]int64{}
	if err := p.ListObjects(ctx, func(d Digest, oi ObjectInfo) error {
		stored[d] = oi.Size
		return nil
	}); err != nil {
		return rep, fmt.Errorf("check: %w", err)
	}
	rep.Objects = len(stored)

	bad := map[Digest]bool{}      // missing or corrupt
	verified := map[Digest]bool{} // read and hashed during the walk
	referenced := map[Digest]struct{}{}
	// classify records a failed Get: missing or corrupt, else fatal.
	classify := func(d Digest, err error) error {
		switch {
		case errors.Is(err, ErrNotFound):
			bad[d] = true
			rep.Missing = append(rep.Missing, d)
		case errors.Is(err, ErrCorrupt):
			bad[d] = true
			rep.Corrupt = append(rep.Corrupt, d)
		default:
			return fmt.Errorf("check: %w", err)
		}
		return nil
	}
	var walk func(d Digest) error
	ref := func(e *Entry) error {
		switch {
		case !e.Subtree.IsZero():
			return walk(e.Subtree)
		case e.Chunked:
			if _, ok := referenced[e.Content]; ok {
				return nil
			}
			referenced[e.Content] = struct{}{}
			var refs []chunkRef
			flaky, err := o.verified(ctx, func() (err error) {
				refs, err = p.readChunkList(ctx, e.Content)
				return err
			})
			if flaky {
				rep.Flaky++
			}
			if err != nil {
				return classify(e.Content, err)
			}
			verified[e.Content] = true
			for _, c := range refs {
				if _, ok := referenced[c.d]; ok {
					continue
				}
				referenced[c.d] = struct{}{}
				if _, ok := stored[c.d]; !ok {
					bad[c.d] = true
					rep.Missing = append(rep.Missing, c.d)
				}
			}
		case !e.Content.IsZero():
			if _, ok := referenced[e.Content]; ok {
				return nil
			}
			referenced[e.Content] = struct{}{}
			if _, ok := stored[e.Content]; !ok {
				bad[e.Content] = true
				rep.Missing = append(rep.Missing, e.Content)
			}
		}
		return nil
	}
	walk = func(d Digest) error {
		if _, ok := referenced[d]; ok {
			return nil
		}
		referenced[d] = struct{}{}
		if err := ctx.Err(); err != nil {
			return err
		}
		var es []Entry
		flaky, err := o.verified(ctx, func() error {
			_, data, err := p.Get(ctx, d)
			if err == nil {
				es, err = DecodeTree(data)
			}
			return err
		})
		if flaky {
			rep.Flaky++
		}
		if err != nil {
			return classify(d, err)
		}
		verified[d] = true
		for i := range es {
			if err := ref(&es[i]); err != nil {
				return err
			}
		}
		return nil
	}
	for _, m := range manifests {
		if err := walk(m.Root); err != nil {
			return rep, err
		}
	}
	rep.Referenced = len(referenced)

	if o.ReadData {
		if err := p.readData(ctx, o, stored, verified, bad, &rep); err != nil {
			return rep, err
		}
	}
	for _, d := range rep.Corrupt {
		if err := p.Quarantine(ctx, d); err != nil && !errors.Is(err, ErrNotFound) {
			return rep, fmt.Errorf("check: %w", err)
		}
		st := p.state()
		st.chunks.remove(d)
		st.trees.remove(d)
	}
	if len(bad) > 0 {
		if err := p.findUses(ctx, &o, manifests, bad, &rep); err != nil {
			return rep, err
		}
	}
	slices.SortFunc(rep.Missing, func(a, b Digest) int { return slices.Compare(a[:], b[:]) })
	slices.SortFunc(rep.Corrupt, func(a, b Digest) int { return slices.Compare(a[:], b[:]) })
	return rep, nil
}

// onLocalDisk reports whether b is (decorators around) a local directory.
func onLocalDisk(b Backend) bool {
	for {
		if _, ok := b.(*DirBackend); ok {
			return true
		}
		u, ok := b.(interface{ Unwrap() Backend })
		if !ok {
			return false
		}
		b = u.Unwrap()
	}
}

// readData re-reads stored objects on GOMAXPROCS workers.
func (p *Pool) readData(ctx context.Context, o CheckOptions, stored map[Digest]int64, verified, bad map[Digest]bool, rep *CheckReport) error {
	var todo []Digest
	for d := range stored {
		if verified[d] || bad[d] {
			continue
		}
		if o.Select != nil {
			if !o.Select(d) {
				continue
			}
		} else if o.Percent > 0 && o.Percent < 100 && rand.Float64()*100 >= o.Percent {
			continue
		}
		todo = append(todo, d)
	}
	var (
		mu    sync.Mutex
		fatal error
		next  int
		wg    sync.WaitGroup
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next == len(todo) || fatal != nil || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				d := todo[next]
				next++
				mu.Unlock()
				var size int
				flaky, err := o.verified(ctx, func() error {
					_, data, err := p.Get(ctx, d)
					size = len(data)
					return err
				})
				mu.Lock()
				if flaky {
					rep.Flaky++
				}
				switch {
				case err == nil:
					rep.ReadObjects++
					rep.ReadBytes += int64(size)
				case errors.Is(err, ErrCorrupt):
					rep.ReadObjects++
					bad[d] = true
					rep.Corrupt = append(rep.Corrupt, d)
				case errors.Is(err, ErrNotFound):
					// deleted since the listing (GC): not a problem
				default:
					fatal = fmt.Errorf("check: read data: %w", err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if fatal != nil {
		return fatal
	}
	rep.ReadObjects += len(verified)
	return ctx.Err()
}

// findUses lists every snapshot path that uses a bad object. Trees that
// contain nothing bad are skipped (memoized per digest).
func (p *Pool) findUses(ctx context.Context, o *CheckOptions, manifests []*Manifest, bad map[Digest]bool, rep *CheckReport) error {
	treeBad := map[Digest]bool{}
	listBad := map[Digest]Digest{} // chunk list → its first bad chunk (zero: none)
	readTree := func(d Digest) (es []Entry, err error) {
		_, err = o.verified(ctx, func() error {
			_, data, err := p.Get(ctx, d)
			if err == nil {
				es, err = DecodeTree(data)
			}
			return err
		})
		return es, err
	}
	// badContent returns the bad object a file entry depends on, if any.
	badContent := func(e *Entry) (Digest, bool) {
		if e.Content.IsZero() {
			return Digest{}, false
		}
		if bad[e.Content] {
			return e.Content, true
		}
		if !e.Chunked {
			return Digest{}, false
		}
		if c, ok := listBad[e.Content]; ok {
			return c, !c.IsZero()
		}
		var refs []chunkRef
		_, err := o.verified(ctx, func() (err error) {
			refs, err = p.readChunkList(ctx, e.Content)
			return err
		})
		var found Digest
		if err == nil {
			for _, c := range refs {
				if bad[c.d] {
					found = c.d
					break
				}
			}
		}
		listBad[e.Content] = found
		return found, !found.IsZero()
	}
	var contains func(d Digest) (bool, error)
	contains = func(d Digest) (bool, error) {
		if v, ok := treeBad[d]; ok {
			return v, nil
		}
		if bad[d] {
			treeBad[d] = true
			return true, nil
		}
		es, err := readTree(d)
		if err != nil {
			treeBad[d] = true // unreadable now (quarantined meanwhile)
			return true, nil
		}
		v := false
		for i := range es {
			e := &es[i]
			if _, b := badContent(e); b {
				v = true
			} else if !e.Subtree.IsZero() {
				b, err := contains(e.Subtree)
				if err != nil {
					return false, err
				}
				v = v || b
			}
		}
		treeBad[d] = v
		return v, nil
	}
	var report func(m *Manifest, d Digest, path string) error
	report = func(m *Manifest, d Digest, path string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		use := CheckUse{Snapshot: m.ID, Host: m.Host, Source: m.Source, Path: path, Digest: d}
		if bad[d] {
			rep.Affected = append(rep.Affected, use)
			return nil
		}
		es, err := readTree(d)
		if err != nil {
			rep.Affected = append(rep.Affected, use)
			return nil
		}
		for i := range es {
			e := &es[i]
			sub := e.Name
			if path != "." {
				sub = path + "/" + e.Name
			}
			if c, b := badContent(e); b {
				rep.Affected = append(rep.Affected, CheckUse{Snapshot: m.ID, Host: m.Host, Source: m.Source, Path: sub, Digest: c})
			} else if !e.Subtree.IsZero() {
				if b, err := contains(e.Subtree); err != nil {
					return err
				} else if b {
					if err := report(m, e.Subtree, sub); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	for _, m := range manifests {
		if b, err := contains(m.Root); err != nil {
			return err
		} else if b {
			if err := report(m, m.Root, "."); err != nil {
				return err
			}
		}
	}
	return nil
}
