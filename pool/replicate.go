package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Replication (FORMAT.md §9): a replica is a byte-for-byte copy of a
// subset of a pool on another backend — the same identity file, the same
// objects, the same manifests — so it is itself a pool that opens with
// the same key and restores without any catalog.
//
// Invariants a replica keeps:
//   - objects are copied as stored (still compressed, still encrypted) and
//     only after the source copy was verified, so a corrupt object is never
//     propagated;
//   - a snapshot's manifest is written only after every object it
//     references is on the target and (for a Syncer target) durable, so a
//     replica never lists a snapshot whose objects are missing;
//   - nothing is ever deleted or overwritten by Replicate (an append-only
//     target suffices); pruning is the target's retention plus GC.

// ErrNotReplica: the target holds a different pool.
var ErrNotReplica = errors.New("target holds another pool")

// ReplicateOptions configure Replicate.
type ReplicateOptions struct {
	// Select picks the snapshots to copy among those the target lacks;
	// nil copies every complete snapshot. It sees the source manifest.
	Select func(*Manifest) bool
	// Concurrency is the number of objects copied at once (default 4).
	// Request-rate and in-flight limits of the target itself belong to
	// its decorators (Decorate).
	Concurrency int
	// BytesPerSecond caps the stored bytes sent to the target (0: no
	// limit), averaged over the run.
	BytesPerSecond float64
	// Limiter, when set, is used instead of BytesPerSecond: one limit
	// shared with other copies to the same target in this run (the
	// image pool's, images.(*Store).Replicate).
	Limiter *Bandwidth
	// Relist lists the target's objects again before each snapshot: for
	// a target that may collect garbage after each manifest it receives
	// (another appliance applying its own retention), so an object it
	// removed is never taken as present.
	Relist bool
	// Progress, when set, is called after each object and each snapshot.
	Progress func(ReplicateProgress)
	// Now and Sleep drive the bandwidth limit (defaults: the real clock).
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// ReplicateProgress is a running count of a replication.
type ReplicateProgress struct {
	Snapshot  string // snapshot being copied
	Objects   int    // objects copied so far
	Bytes     int64  // stored bytes copied so far
	Snapshots int    // manifests copied so far
}

// ReplicateReport is what Replicate did.
type ReplicateReport struct {
	Copied     []string // snapshots copied, in order
	Present    int      // selected snapshots the target already had
	Objects    int      // objects copied
	Bytes      int64    // their stored size
	Reused     int      // referenced objects the target already had
	NewReplica bool     // the target had no pool yet: the identity was written
}

func (r ReplicateReport) String() string {
	return fmt.Sprintf("%d snapshots copied (%d already there), %d objects (%d bytes) sent, %d objects already on the target",
		len(r.Copied), r.Present, r.Objects, r.Bytes, r.Reused)
}

// Replicate copies snapshots of p to dst, oldest first, sending only the
// objects dst lacks and each manifest last. An interrupted run leaves
// only unreferenced objects on dst; the next run lists them and does not
// send them again. dst must be empty or a replica of this pool
// (ErrNotReplica otherwise).
func (p *Pool) Replicate(ctx context.Context, dst Backend, o ReplicateOptions) (ReplicateReport, error) {
	var rep ReplicateReport
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleepCtx
	}
	where := fmt.Sprintf("replicate pool %s to %s", p.ID(), dst.Location())
	created, err := p.ensureReplicaIdentity(ctx, dst)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", where, err)
	}
	rep.NewReplica = created

	// What the target has: its snapshots and objects.
	have := map[string]bool{}
	if err := dst.List(ctx, snapshotsPrefix, func(oi ObjectInfo) error {
		have[strings.TrimPrefix(oi.Name, snapshotsPrefix)] = true
		return nil
	}); err != nil {
		return rep, fmt.Errorf("%s: list target snapshots: %w", where, err)
	}
	stored := map[Digest]bool{}
	listObjects := func() error {
		clear(stored)
		if err := dst.List(ctx, objectsPrefix, func(oi ObjectInfo) error {
			if d, ok := parseObjectName(oi.Name); ok {
				stored[d] = true
			}
			return nil
		}); err != nil {
			return fmt.Errorf("%s: list target objects: %w", where, err)
		}
		return nil
	}
	if err := listObjects(); err != nil {
		return rep, err
	}
	listed := true

	ids, err := p.SnapshotIDs(ctx)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", where, err)
	}
	bw := o.Limiter
	if bw == nil {
		bw = &Bandwidth{rate: o.BytesPerSecond, now: o.Now, sleep: o.Sleep}
	}
	var mu sync.Mutex // guards rep and stored while objects are copied
	walked := map[Digest]bool{}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		m, err := p.Snapshot(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return rep, fmt.Errorf("%s: %w", where, err)
		}
		if o.Select != nil && !o.Select(m) || o.Select == nil && m.Status != StatusComplete {
			continue
		}
		if have[id] {
			rep.Present++
			continue
		}
		if o.Relist && !listed {
			if err := listObjects(); err != nil {
				return rep, err
			}
			clear(walked)
		}
		listed = false
		// Objects first: every object the snapshot references that the
		// target lacks, children before the trees that name them.
		var todo []Digest
		reused := 0
		err = p.replicaWalk(ctx, m.Root, walked, func(d Digest) {
			if stored[d] {
				reused++
			} else {
				todo = append(todo, d)
			}
		})
		if err != nil {
			return rep, fmt.Errorf("%s: snapshot %s: %w", where, id, err)
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(o.Concurrency)
		for _, d := range todo {
			g.Go(func() error {
				n, err := p.copyObject(gctx, dst, d, bw)
				if err != nil {
					return fmt.Errorf("snapshot %s: %w", id, err)
				}
				mu.Lock()
				stored[d] = true
				rep.Objects++
				rep.Bytes += n
				pr := ReplicateProgress{Snapshot: id, Objects: rep.Objects, Bytes: rep.Bytes, Snapshots: len(rep.Copied)}
				mu.Unlock()
				if o.Progress != nil {
					o.Progress(pr)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return rep, fmt.Errorf("%s: %w", where, err)
		}
		rep.Reused += reused
		// The barrier, then the manifest, then the barrier again.
		if err := syncInner(ctx, dst); err != nil {
			return rep, fmt.Errorf("%s: sync: %w", where, err)
		}
		raw, err := p.verifiedNamed(ctx, snapshotsPrefix+id)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", where, err)
		}
		if err := bw.wait(ctx, int64(len(raw))); err != nil {
			return rep, err
		}
		if err := dst.Put(ctx, snapshotsPrefix+id, bytes.NewReader(raw), int64(len(raw))); err != nil {
			return rep, fmt.Errorf("%s: write manifest of snapshot %s: %w", where, id, err)
		}
		if err := syncInner(ctx, dst); err != nil {
			return rep, fmt.Errorf("%s: sync: %w", where, err)
		}
		have[id] = true
		rep.Copied = append(rep.Copied, id)
		if o.Progress != nil {
			o.Progress(ReplicateProgress{Snapshot: id, Objects: rep.Objects, Bytes: rep.Bytes, Snapshots: len(rep.Copied)})
		}
	}
	return rep, nil
}

// ensureReplicaIdentity writes p's identity file to an empty dst, or
// checks that dst already holds this pool. It reports whether it wrote.
func (p *Pool) ensureReplicaIdentity(ctx context.Context, dst Backend) (bool, error) {
	theirs, err := readAll(ctx, dst, IdentityName, 64<<10)
	if err == nil {
		id, perr := parseIdentity(theirs)
		if perr != nil {
			return false, fmt.Errorf("%w: %s on the target: %v", ErrNotReplica, IdentityName, perr)
		}
		if !strings.EqualFold(id.ID, p.ID()) {
			return false, fmt.Errorf("%w: it holds pool %s, not a replica of pool %s", ErrNotReplica, id.ID, p.ID())
		}
		return false, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return false, fmt.Errorf("read target %s: %w", IdentityName, err)
	}
	// Refuse to turn a non-empty foreign location into a replica.
	errNotEmpty := errors.New("not empty")
	if err := dst.List(ctx, "", func(oi ObjectInfo) error { return errNotEmpty }); errors.Is(err, errNotEmpty) {
		return false, fmt.Errorf("%w: the target is not empty and has no %s", ErrNotReplica, IdentityName)
	} else if err != nil {
		return false, fmt.Errorf("list target: %w", err)
	}
	mine, err := readAll(ctx, p.b, IdentityName, 64<<10)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", IdentityName, err)
	}
	if err := dst.Put(ctx, IdentityName, bytes.NewReader(mine), int64(len(mine))); err != nil {
		return false, fmt.Errorf("write target %s: %w", IdentityName, err)
	}
	return true, syncInner(ctx, dst)
}

// replicaWalk calls fn for every object below the tree root, each
// object's references before the object itself. Subtrees in walked are
// skipped (already handled this run).
func (p *Pool) replicaWalk(ctx context.Context, root Digest, walked map[Digest]bool, fn func(Digest)) error {
	if walked[root] {
		return nil
	}
	walked[root] = true
	if err := ctx.Err(); err != nil {
		return err
	}
	es, err := p.ReadTree(ctx, root)
	if err != nil {
		return err
	}
	for i := range es {
		e := &es[i]
		switch {
		case !e.Subtree.IsZero():
			if err := p.replicaWalk(ctx, e.Subtree, walked, fn); err != nil {
				return err
			}
		case e.Chunked:
			if walked[e.Content] {
				continue
			}
			walked[e.Content] = true
			refs, err := p.readChunkList(ctx, e.Content)
			if err != nil {
				return err
			}
			for _, c := range refs {
				if !walked[c.d] {
					walked[c.d] = true
					fn(c.d)
				}
			}
			fn(e.Content)
		case !e.Content.IsZero():
			if !walked[e.Content] {
				walked[e.Content] = true
				fn(e.Content)
			}
		}
	}
	fn(root)
	return nil
}

// copyObject verifies the stored object d and sends its bytes unchanged.
func (p *Pool) copyObject(ctx context.Context, dst Backend, d Digest, bw *Bandwidth) (int64, error) {
	name := ObjectName(d)
	raw, err := readAll(ctx, p.b, name, MaxObjectSize+headerSize+nonceSize+tagSize+64)
	if err != nil {
		return 0, fmt.Errorf("read object %s: %w", d, err)
	}
	_, plain, err := decodeObject(raw, p.aead(), objectBinding(d), false, nil)
	if err == nil && p.Hash(plain) != d {
		err = fmt.Errorf("%w: content does not match its digest", ErrCorrupt)
	}
	if err != nil {
		return 0, fmt.Errorf("object %s at %s: %w (not replicated; run a check)", d, p.Location(), err)
	}
	if err := bw.wait(ctx, int64(len(raw))); err != nil {
		return 0, err
	}
	if err := dst.Put(ctx, name, bytes.NewReader(raw), int64(len(raw))); err != nil {
		return 0, fmt.Errorf("write object %s: %w", d, err)
	}
	return int64(len(raw)), nil
}

// verifiedNamed returns the stored bytes of a named object after checking
// them.
func (p *Pool) verifiedNamed(ctx context.Context, name string) ([]byte, error) {
	raw, err := readAll(ctx, p.b, name, MaxObjectSize+headerSize+nonceSize+tagSize+checksumSize+64)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if _, _, err := decodeObject(raw, p.aead(), namedBinding(name), p.keys == nil, plainSum); err != nil {
		return nil, fmt.Errorf("%s at %s: %w (not replicated)", name, p.Location(), err)
	}
	return raw, nil
}

// A Bandwidth spaces writes so that bytes sent since the first one stay
// at or below rate per second. Safe for concurrent use; nil or a rate of
// 0 does not limit.
type Bandwidth struct {
	rate  float64
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	mu    sync.Mutex
	start time.Time
	sent  int64
}

// NewBandwidth returns a limit of rate bytes per second on the real
// clock (0: no limit).
func NewBandwidth(rate float64) *Bandwidth {
	return &Bandwidth{rate: rate, now: time.Now, sleep: sleepCtx}
}

func (b *Bandwidth) wait(ctx context.Context, n int64) error {
	if b == nil || b.rate <= 0 {
		return nil
	}
	b.mu.Lock()
	now := b.now()
	if b.start.IsZero() {
		b.start = now
	}
	due := b.start.Add(time.Duration(float64(b.sent) / b.rate * float64(time.Second)))
	b.sent += n
	b.mu.Unlock()
	return b.sleep(ctx, due.Sub(now))
}

// ReplicaSnapshots lists the manifests on a replica (or any pool backend)
// without needing its key: the IDs under snapshots/, sorted. Host and
// source are in the ID's manifest, which needs the key when encrypted.
func ReplicaSnapshots(ctx context.Context, b Backend) ([]string, error) {
	var ids []string
	err := b.List(ctx, snapshotsPrefix, func(oi ObjectInfo) error {
		if id := strings.TrimPrefix(oi.Name, snapshotsPrefix); validSnapshotID(id) {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list snapshots at %s: %w", b.Location(), err)
	}
	slices.Sort(ids)
	return ids, nil
}

// Copying for other replicators. The image pool (package images) is a
// pool of its own whose manifests are named objects the file pool's
// Replicate does not know; it replicates with these, under the same
// invariants: identity first, objects verified at the source and sent
// as stored, the barrier, then its manifests.

// EnsureReplica writes p's identity to an empty dst, or checks that dst
// already holds a replica of p (ErrNotReplica otherwise). It reports
// whether it wrote the identity.
func (p *Pool) EnsureReplica(ctx context.Context, dst Backend) (bool, error) {
	created, err := p.ensureReplicaIdentity(ctx, dst)
	if err != nil {
		return false, fmt.Errorf("replicate pool %s to %s: %w", p.ID(), dst.Location(), err)
	}
	return created, nil
}

// ReplicaObjects lists the digests stored on a replica (or any backend
// in the pool layout).
func ReplicaObjects(ctx context.Context, b Backend) (map[Digest]bool, error) {
	out := map[Digest]bool{}
	if err := b.List(ctx, objectsPrefix, func(oi ObjectInfo) error {
		if d, ok := parseObjectName(oi.Name); ok {
			out[d] = true
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list objects at %s: %w", b.Location(), err)
	}
	return out, nil
}

// CopyObjectTo verifies the stored object d and writes its stored bytes
// unchanged to dst under the same name, within lim (nil: no limit). It
// returns the bytes sent. A corrupt source object is never sent.
func (p *Pool) CopyObjectTo(ctx context.Context, dst Backend, d Digest, lim *Bandwidth) (int64, error) {
	return p.copyObject(ctx, dst, d, lim)
}

// CopyNamedTo verifies the named object name and writes its stored bytes
// unchanged to dst, within lim. It returns the bytes sent.
func (p *Pool) CopyNamedTo(ctx context.Context, dst Backend, name string, lim *Bandwidth) (int64, error) {
	raw, err := p.verifiedNamed(ctx, name)
	if err != nil {
		return 0, err
	}
	if err := lim.wait(ctx, int64(len(raw))); err != nil {
		return 0, err
	}
	if err := dst.Put(ctx, name, bytes.NewReader(raw), int64(len(raw))); err != nil {
		return 0, fmt.Errorf("write %s to %s: %w", name, dst.Location(), err)
	}
	return int64(len(raw)), nil
}

// SyncBackend is b's durability barrier (a no-op for backends durable on
// Put).
func SyncBackend(ctx context.Context, b Backend) error {
	if err := syncInner(ctx, b); err != nil {
		return fmt.Errorf("sync %s: %w", b.Location(), err)
	}
	return nil
}

// OpenWithKey is Open with the master key in memory (an appliance keeps
// received replicas' keys sealed in its catalog, never in a file). key
// may be nil for a plain pool.
func OpenWithKey(ctx context.Context, b Backend, key []byte, expectID string) (*Pool, error) {
	p, err := Open(ctx, b, OpenOptions{ExpectID: expectID})
	if err == nil || !errors.Is(err, ErrNoKey) || key == nil {
		return p, err
	}
	raw, err := readAll(ctx, b, IdentityName, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot read %s at %s: %w", ErrIdentity, IdentityName, b.Location(), err)
	}
	id, err := parseIdentity(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s at %s: %v", ErrIdentity, IdentityName, b.Location(), err)
	}
	k, err := deriveKeys(key)
	if err != nil {
		return nil, err
	}
	if !k.matches(id.ID, id.Encryption.KeyCheck) {
		return nil, fmt.Errorf("%w: the key given does not belong to pool %s at %s", ErrWrongKey, id.ID, b.Location())
	}
	return &Pool{b: b, id: *id, keys: k}, nil
}

// ParseKey reads the content of a key file (64 hex characters); what
// names where it came from, for the error.
func ParseKey(what string, data []byte) ([]byte, error) { return parseKey(what, data) }

// Sub returns the part of b below dir ("images" → the names
// images/…), as a Backend of its own: a pool nested in another pool's
// root, such as a replica's image pool. Closing it does not close b.
func Sub(b Backend, dir string) Backend {
	return &subBackend{inner: b, dir: strings.Trim(dir, "/") + "/"}
}

type subBackend struct {
	inner Backend
	dir   string
}

var _ Backend = (*subBackend)(nil)
var _ Syncer = (*subBackend)(nil)

func (s *subBackend) Location() string {
	return s.inner.Location() + "/" + strings.TrimSuffix(s.dir, "/")
}
func (s *subBackend) Sync(ctx context.Context) error {
	return syncInner(ctx, s.inner)
}
func (s *subBackend) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	return s.inner.Put(ctx, s.dir+name, r, size)
}
func (s *subBackend) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	return s.inner.Get(ctx, s.dir+name, off, length)
}
func (s *subBackend) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	if err := ValidateName(name); err != nil {
		return ObjectInfo{}, err
	}
	oi, err := s.inner.Stat(ctx, s.dir+name)
	oi.Name = strings.TrimPrefix(oi.Name, s.dir)
	return oi, err
}
func (s *subBackend) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := validPrefix(prefix); err != nil {
		return err
	}
	return s.inner.List(ctx, s.dir+prefix, func(oi ObjectInfo) error {
		oi.Name = strings.TrimPrefix(oi.Name, s.dir)
		return fn(oi)
	})
}
func (s *subBackend) Delete(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	return s.inner.Delete(ctx, s.dir+name)
}
