package images

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/pool"
)

// Replication of an image pool (FORMAT.md §7): a replica is the same
// image pool — its identity, its marker, the blocks of the versions
// copied and their manifests, byte for byte as stored — on another
// backend, so it opens with the same key and reads with no catalog.

// ReplicateOptions configure (*Store).Replicate.
type ReplicateOptions struct {
	// Want, when set, picks the versions to consider by name before
	// their manifests are read (cheap); Select then sees the manifest.
	// nil for both copies every version.
	Want   func(VersionRef) bool
	Select func(*Manifest) bool
	// Concurrency is the number of blocks copied at once (default 4).
	Concurrency int
	// Limiter caps the stored bytes sent (nil: no limit); share it with
	// the file pool's copy to the same target.
	Limiter *pool.Bandwidth
	// Progress, when set, is called after each block and each version.
	Progress func(pool.ReplicateProgress)
}

// ReplicateReport is what Replicate did.
type ReplicateReport struct {
	Copied     []string // versions copied, "name/id", oldest first
	Present    int      // versions the target already had
	Objects    int      // blocks sent
	Bytes      int64    // their stored size (and the manifests')
	Reused     int      // referenced blocks the target already had
	NewReplica bool     // the target had no image pool yet
}

func (r ReplicateReport) String() string {
	return fmt.Sprintf("%d image versions copied (%d already there), %d blocks (%d bytes) sent, %d blocks already on the target",
		len(r.Copied), r.Present, r.Objects, r.Bytes, r.Reused)
}

// Replicate copies versions of s to dst, oldest first: for each, the
// blocks dst lacks, the durability barrier, then the manifest and the
// barrier again, so a replica never lists a version whose blocks are
// missing. An interrupted run leaves only unreferenced blocks, which the
// next run finds and does not send again. Nothing on dst is deleted or
// overwritten (an append-only target suffices). dst must be empty or a
// replica of this image pool (pool.ErrNotReplica otherwise).
func (s *Store) Replicate(ctx context.Context, dst pool.Backend, o ReplicateOptions) (ReplicateReport, error) {
	var rep ReplicateReport
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	where := fmt.Sprintf("replicate image pool %s to %s", s.p.ID(), dst.Location())
	created, err := s.p.EnsureReplica(ctx, dst)
	if err != nil {
		return rep, err
	}
	rep.NewReplica = created
	if _, err := dst.Stat(ctx, MarkerName); errors.Is(err, pool.ErrNotFound) {
		n, err := s.p.CopyNamedTo(ctx, dst, MarkerName, o.Limiter)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", where, err)
		}
		rep.Bytes += n
		if err := pool.SyncBackend(ctx, dst); err != nil {
			return rep, fmt.Errorf("%s: %w", where, err)
		}
	} else if err != nil {
		return rep, fmt.Errorf("%s: %w", where, err)
	}
	have, err := ReplicaVersions(ctx, dst)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", where, err)
	}
	var refs []VersionRef
	if err := s.Versions(ctx, func(v VersionRef) error { refs = append(refs, v); return nil }); err != nil {
		return rep, fmt.Errorf("%s: %w", where, err)
	}
	// Oldest first: version IDs sort by time.
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].ID != refs[j].ID {
			return refs[i].ID < refs[j].ID
		}
		return refs[i].Name < refs[j].Name
	})
	var stored map[pool.Digest]bool
	var mu sync.Mutex // guards rep and stored while blocks are copied
	for _, v := range refs {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		key := v.Name + "/" + v.ID
		if o.Want != nil && !o.Want(v) {
			continue
		}
		if have[key] {
			rep.Present++
			continue
		}
		m, err := s.Load(ctx, v.Name, v.ID)
		if errors.Is(err, pool.ErrNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return rep, fmt.Errorf("%s: %w", where, err)
		}
		if o.Select != nil && !o.Select(m) {
			continue
		}
		if stored == nil {
			if stored, err = pool.ReplicaObjects(ctx, dst); err != nil {
				return rep, fmt.Errorf("%s: %w", where, err)
			}
		}
		var todo []pool.Digest
		seen := map[pool.Digest]bool{}
		reused := 0
		m.Digests(func(d pool.Digest) {
			if seen[d] {
				return
			}
			seen[d] = true
			if stored[d] {
				reused++
			} else {
				todo = append(todo, d)
			}
		})
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(o.Concurrency)
		for _, d := range todo {
			g.Go(func() error {
				n, err := s.p.CopyObjectTo(gctx, dst, d, o.Limiter)
				if err != nil {
					return fmt.Errorf("image %s version %s: block %w", v.Name, v.ID, err)
				}
				mu.Lock()
				stored[d] = true
				rep.Objects++
				rep.Bytes += n
				pr := pool.ReplicateProgress{Snapshot: key, Objects: rep.Objects, Bytes: rep.Bytes, Snapshots: len(rep.Copied)}
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
		if err := pool.SyncBackend(ctx, dst); err != nil {
			return rep, fmt.Errorf("%s: %w", where, err)
		}
		n, err := s.p.CopyNamedTo(ctx, dst, ManifestName(v.Name, v.ID), o.Limiter)
		if err != nil {
			return rep, fmt.Errorf("%s: image %s version %s: %w", where, v.Name, v.ID, err)
		}
		rep.Bytes += n
		if err := pool.SyncBackend(ctx, dst); err != nil {
			return rep, fmt.Errorf("%s: %w", where, err)
		}
		have[key] = true
		rep.Copied = append(rep.Copied, key)
		if o.Progress != nil {
			o.Progress(pool.ReplicateProgress{Snapshot: key, Objects: rep.Objects, Bytes: rep.Bytes, Snapshots: len(rep.Copied)})
		}
	}
	return rep, nil
}

// ReplicaVersions lists the versions on a replica (or any image pool
// backend) without needing its key: "name/id" → true.
func ReplicaVersions(ctx context.Context, b pool.Backend) (map[string]bool, error) {
	out := map[string]bool{}
	err := b.List(ctx, versionsPrefix, func(oi pool.ObjectInfo) error {
		name, id, ok := strings.Cut(strings.TrimPrefix(oi.Name, versionsPrefix), "/")
		if ok && validName(name) == nil && validID(id) == nil {
			out[name+"/"+id] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list image versions at %s: %w", b.Location(), err)
	}
	return out, nil
}

// DeleteVersionsOf deletes the versions whose manifest names a
// file-pool snapshot for which gone reports true: when retention removes
// a placeholder snapshot (FORMAT.md §6) from a replica, its version goes
// with it. Versions naming no snapshot are kept. A manifest that cannot
// be read stops it before anything more is deleted. It returns the
// versions deleted, "name/id"; their blocks go at the next GC.
func (s *Store) DeleteVersionsOf(ctx context.Context, gone func(snapshot string) bool) ([]string, error) {
	var refs []VersionRef
	if err := s.Versions(ctx, func(v VersionRef) error { refs = append(refs, v); return nil }); err != nil {
		return nil, err
	}
	var out []string
	for _, v := range refs {
		m, err := s.Load(ctx, v.Name, v.ID)
		if errors.Is(err, pool.ErrNotFound) {
			continue
		}
		if err != nil {
			return out, err
		}
		if m.Snapshot == "" || !gone(m.Snapshot) {
			continue
		}
		if err := s.Delete(ctx, v.Name, v.ID); err != nil {
			return out, err
		}
		out = append(out, v.Name+"/"+v.ID)
	}
	return out, nil
}
