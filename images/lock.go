package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
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
// them sees the other.

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

type heldLock struct {
	s    *Store
	name string
	stop chan struct{}
	wg   sync.WaitGroup
}

// takeLock writes a lock object of kind ("writer" or "gc") and keeps it
// fresh until release.
func (s *Store) takeLock(ctx context.Context, kind string) (*heldLock, error) {
	s.mu.Lock()
	s.nextLock++
	name := fmt.Sprintf("%s%s-%s-%d", locksPrefix, kind, s.instance, s.nextLock)
	s.mu.Unlock()
	body, _ := json.Marshal(struct {
		Kind string    `json:"kind"`
		Time time.Time `json:"time"`
	}{kind, time.Now().UTC()})
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
				if err := s.p.PutNamed(context.Background(), name, pool.KindManifest, body); err != nil {
					s.log.Warn("refresh image pool lock", "lock", name, "err", err)
				}
			}
		}
	})
	return l, nil
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

// foreignLocks lists fresh lock objects of kind held by other instances.
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
	return out, nil
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
