package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// Cross-process coordination (FORMAT.md §5). In one process, version
// writers and GC coordinate through the Store's holds. Across processes
// (several appliance instances on one S3 image pool) they use lock
// objects locks/images-writer-<instance>-<n> and
// locks/images-gc-<instance>-<n>, rewritten every lockRefresh: a GC
// refuses to sweep (ErrLocked) while a fresh foreign writer lock exists,
// and a new writer waits while a fresh foreign GC lock exists. Each side
// writes its own lock before looking for the other's, so at least one of
// them sees the other. With a lock registry (SetLockRegistry), a lock
// whose owner the registry declares dead is stale at once.

const locksPrefix = "locks/images-"

// Lock timing; variables so tests can shorten them.
var (
	lockRefresh  = 5 * time.Minute
	lockStale    = 30 * time.Minute
	lockWaitPoll = time.Second
)

// ErrLocked: another process holds a lock that prevents the operation (a
// GC sweep while a foreign image pull runs).
var ErrLocked = errors.New("image pool locked")

// ErrLockLost: a version writer's lock object was removed by another
// process that judged its holder dead (a lock registry said so, or the
// lock aged out while the holder was frozen). A GC may then have deleted
// blocks the version uses, so its manifest is not written. It is
// pool.ErrLockLost, so errors.Is matches either name.
var ErrLockLost = pool.ErrLockLost

// lockBody is the content of a lock object (FORMAT.md §5). GC goes by the
// object's name and modification time; Owner, when set, lets a lock
// registry declare the holder dead at once.
type lockBody struct {
	Kind  string    `json:"kind"`
	Time  time.Time `json:"time"`            // when the lock was taken
	Owner string    `json:"owner,omitempty"` // the holder's name in a LockRegistry
	Host  string    `json:"host,omitempty"`  // informational
}

// SetLockRegistry sets (nil: removes) the registry that vouches for lock
// holders on other machines, as pool.Pool.SetLockRegistry does for the
// file pool: locks taken afterwards carry r.Self(), and a foreign lock
// whose owner r declares dead is stale at once instead of after 30
// minutes, so an image GC does not wait for a pull killed on another
// machine (and removes its lock), and writers do not wait for such a GC.
func (s *Store) SetLockRegistry(r pool.LockRegistry) {
	s.mu.Lock()
	s.registry = r
	s.mu.Unlock()
}

func (s *Store) lockRegistry() pool.LockRegistry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.registry
}

type heldLock struct {
	s    *Store
	name string
	stop chan struct{}
	wg   sync.WaitGroup
	lost atomic.Bool // the lock object vanished while held
}

// takeLock writes a lock object of kind ("writer" or "gc") and keeps it
// fresh until release. A lock another process removed (it judged this
// one dead) is not written again: the holder has lost it.
func (s *Store) takeLock(ctx context.Context, kind string) (*heldLock, error) {
	s.mu.Lock()
	s.nextLock++
	name := fmt.Sprintf("%s%s-%s-%d", locksPrefix, kind, s.instance, s.nextLock)
	reg := s.registry
	s.mu.Unlock()
	lb := lockBody{Kind: kind, Time: time.Now().UTC()}
	lb.Host, _ = os.Hostname()
	if reg != nil {
		lb.Owner = reg.Self()
	}
	body, _ := json.Marshal(lb)
	if err := s.p.PutNamed(ctx, name, pool.KindManifest, body); err != nil {
		return nil, fmt.Errorf("take %s lock: %w", kind, err)
	}
	l := &heldLock{s: s, name: name, stop: make(chan struct{})}
	l.wg.Go(func() {
		t := time.NewTicker(lockRefresh)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				bctx := context.Background()
				if _, err := s.p.Backend().Stat(bctx, name); errors.Is(err, pool.ErrNotFound) {
					s.log.Warn("image pool lock was removed by another process", "lock", name)
					l.lost.Store(true)
					return
				}
				if err := s.p.PutNamed(bctx, name, pool.KindManifest, body); err != nil {
					s.log.Warn("refresh image pool lock", "lock", name, "err", err)
				}
			}
		}
	})
	return l, nil
}

// verify checks that the lock object still exists, before a version
// writer writes its manifest (see ErrLockLost).
func (l *heldLock) verify(ctx context.Context) error {
	if l == nil {
		return nil
	}
	if !l.lost.Load() {
		_, err := l.s.p.Backend().Stat(ctx, l.name)
		if err != nil && !errors.Is(err, pool.ErrNotFound) {
			return fmt.Errorf("check lock %s: %w", l.name, err)
		}
		l.lost.Store(err != nil)
	}
	if l.lost.Load() {
		return fmt.Errorf("%w: %s at %s was removed by another process that judged this one dead; a GC may have deleted blocks this version uses, so it is not committed (pull the image again)",
			ErrLockLost, l.name, l.s.p.Location())
	}
	return nil
}

func (l *heldLock) release() {
	close(l.stop)
	l.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.s.p.DeleteNamed(ctx, l.name); err != nil {
		l.s.log.Warn("release image pool lock (it goes stale)", "lock", l.name, "err", err)
	}
}

// readLock returns the content of lock object name; ok is false when it
// cannot be read or decoded.
func (s *Store) readLock(ctx context.Context, name string) (lb lockBody, ok bool) {
	_, data, err := s.p.GetNamed(ctx, name)
	if err != nil || json.Unmarshal(data, &lb) != nil {
		return lb, false
	}
	return lb, true
}

// holderDead reports whether the lock registry declares the owner of lock
// object name dead. Any doubt (no registry, no owner, unreadable lock)
// answers false: the lock is then judged by its age.
func (s *Store) holderDead(ctx context.Context, name string) bool {
	r := s.lockRegistry()
	if r == nil {
		return false
	}
	lb, ok := s.readLock(ctx, name)
	if !ok || lb.Owner == "" {
		return false
	}
	return r.Dead(ctx, lb.Owner, lb.Time)
}

// describeLock names a lock object and, when readable, its holder:
// "locks/images-writer-… (instance b, host x, since …)".
func (s *Store) describeLock(ctx context.Context, name string) string {
	lb, ok := s.readLock(ctx, name)
	if !ok {
		return name
	}
	var parts []string
	if lb.Owner != "" {
		parts = append(parts, "instance "+lb.Owner)
	}
	if lb.Host != "" {
		parts = append(parts, "host "+lb.Host)
	}
	if !lb.Time.IsZero() {
		parts = append(parts, "since "+lb.Time.UTC().Format(time.RFC3339))
	}
	if len(parts) == 0 {
		return name
	}
	return name + " (" + strings.Join(parts, ", ") + ")"
}

// foreignLocks lists live lock objects of kind held by other instances:
// fresh (modified within lockStale) and not of an owner the lock registry
// declares dead.
func (s *Store) foreignLocks(ctx context.Context, kind string) ([]string, error) {
	prefix := locksPrefix + kind + "-"
	own := prefix + s.instance + "-"
	cutoff := time.Now().Add(-lockStale)
	var out []string
	err := s.p.Backend().List(ctx, prefix, func(oi pool.ObjectInfo) error {
		if !strings.HasPrefix(oi.Name, own) && oi.ModTime.After(cutoff) {
			out = append(out, oi.Name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s locks at %s: %w", kind, s.p.Location(), err)
	}
	live := out[:0]
	for _, name := range out {
		if !s.holderDead(ctx, name) {
			live = append(live, name)
		}
	}
	return live, nil
}

// removeDeadLocks deletes foreign lock objects that are stale: not
// refreshed for lockStale, or of an owner the lock registry declares
// dead. A holder that comes back finds its lock gone and does not commit
// (ErrLockLost). Errors are ignored: a stale lock is harmless. It returns
// how many it removed.
func (s *Store) removeDeadLocks(ctx context.Context) int {
	cutoff := time.Now().Add(-lockStale)
	var stale, fresh []string
	s.p.Backend().List(ctx, locksPrefix, func(oi pool.ObjectInfo) error {
		switch {
		case strings.Contains(oi.Name, "-"+s.instance+"-"):
		case !oi.ModTime.After(cutoff):
			stale = append(stale, oi.Name)
		default:
			fresh = append(fresh, oi.Name)
		}
		return nil
	})
	for _, name := range fresh {
		if s.holderDead(ctx, name) {
			stale = append(stale, name)
		}
	}
	n := 0
	for _, name := range stale {
		if s.p.DeleteNamed(ctx, name) == nil {
			s.log.Info("removed a dead image pool lock", "lock", name)
			n++
		}
	}
	return n
}

// writerLock takes a writer lock and waits while a foreign GC runs.
func (s *Store) writerLock(ctx context.Context) (*heldLock, error) {
	l, err := s.takeLock(ctx, "writer")
	if err != nil {
		return nil, err
	}
	logged := false
	for {
		gcs, err := s.foreignLocks(ctx, "gc")
		if err != nil {
			l.release()
			return nil, err
		}
		if len(gcs) == 0 {
			return l, nil
		}
		if !logged {
			s.log.Info("waiting for an image GC in another process", "lock", gcs[0])
			logged = true
		}
		select {
		case <-ctx.Done():
			l.release()
			return nil, ctx.Err()
		case <-time.After(lockWaitPoll):
		}
	}
}
