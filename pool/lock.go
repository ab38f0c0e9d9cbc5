package pool

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"weak"
)

// Writer/GC coordination (FORMAT.md §8).
//
// In one process, writers register with the Pool's shared state. While a
// GC runs, every digest a writer references (stores, dedups against or
// reuses) is recorded under one mutex, and GC's check-and-delete of an
// object holds the same mutex, so either GC sees the reference and keeps
// the object, or the object is gone before the writer looks for it and the
// writer stores it again. What writers referenced before the GC started is
// taken from their open-directory stacks and pending writes (GC's roots).
//
// Across processes, lock objects locks/writer-<instance>-<n> and
// locks/gc-<instance> with a heartbeat: GC refuses to sweep while a
// foreign, fresh writer lock exists, and a new writer waits while a
// foreign, fresh GC lock exists. Each side writes its lock before looking
// for the other's, so at least one of them sees the other.

const locksPrefix = "locks/"

// Lock timing. Variables so tests can shorten them.
var (
	lockRefresh  = 5 * time.Minute  // heartbeat: rewrite the lock this often
	lockStale    = 30 * time.Minute // a lock not refreshed for this long is dead
	lockWaitPoll = time.Second      // how often a new writer re-checks GC locks
)

// ErrLocked reports that another process holds a lock that prevents the
// operation (a GC sweep while a foreign backup is running).
var ErrLocked = errors.New("pool locked")

// ErrContentMissing: Add was asked to reuse content (r == nil) that is not
// in the pool (quarantined or swept). The caller should Add the entry again
// with a reader.
var ErrContentMissing = errors.New("reused content is missing from the pool")

// poolState is the in-process state shared by everything that uses one
// *Pool: registered writers, GC bookkeeping, caches.
type poolState struct {
	instance string // random; names this process's lock objects

	mu       sync.Mutex
	writers  map[*Writer]struct{}
	nextLock int
	gcActive int
	gcRefs   map[Digest]struct{}      // referenced by writers while a GC runs
	deleting map[Digest]chan struct{} // objects GC is deleting right now

	gcMu sync.Mutex // one GC at a time per process

	registry LockRegistry // vouches for lock holders on other machines (guarded by mu)

	workers int // Writer concurrency; 0: default (guarded by mu)

	chunks *lru // decoded file data by digest
	trees  *lru // decoded trees by digest
	roots  *lru // root tree digest → Entry of the snapshot root directory
}

var states sync.Map // weak.Pointer[Pool] → *poolState

// state returns p's shared in-process state, created on first use and
// dropped when p is garbage.
func (p *Pool) state() *poolState {
	wp := weak.Make(p)
	if s, ok := states.Load(wp); ok {
		return s.(*poolState)
	}
	var rb [8]byte
	rand.Read(rb[:])
	s := &poolState{
		instance: hex.EncodeToString(rb[:]),
		writers:  map[*Writer]struct{}{},
		deleting: map[Digest]chan struct{}{},
		chunks:   newLRU(32 << 20),
		trees:    newLRU(8 << 20),
		roots:    newLRU(1 << 20),
	}
	actual, loaded := states.LoadOrStore(wp, s)
	if !loaded {
		runtime.AddCleanup(p, func(wp weak.Pointer[Pool]) { states.Delete(wp) }, wp)
	}
	return actual.(*poolState)
}

// refLocked notes that a writer references d. It must be called, with
// st.mu held, before the writer checks whether d exists or relies on it.
// It returns a channel to wait on (after unlocking) when GC is deleting d
// right now; the caller must then treat d as absent.
func (st *poolState) refLocked(d Digest) chan struct{} {
	if st.gcActive == 0 {
		return nil
	}
	st.gcRefs[d] = struct{}{}
	return st.deleting[d]
}

// lockInfo is the content of a lock object. It is informational; GC goes
// by the object's name and modification time.
type lockInfo struct {
	Kind     string    `json:"kind"` // "writer" or "gc"
	Instance string    `json:"instance"`
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Created  time.Time `json:"created"`
	Snapshot string    `json:"snapshot,omitempty"` // host/source being written
	// Scope is where PID means something (host, boot and PID namespace;
	// see procScope). A fresh lock of a dead PID in our own scope is
	// stale: its holder was killed (SIGKILL, OOM) and cannot come back.
	Scope string `json:"scope,omitempty"`
	// Owner names the holder in a LockRegistry (in cluster mode the
	// appliance's instance ID); a registry that knows the owner is dead
	// makes the lock stale at once, wherever the holder ran.
	Owner string `json:"owner,omitempty"`
}

// A LockRegistry knows which processes using a pool are alive, beyond
// what one machine can see: the appliance's cluster instance table, where
// every instance renews a heartbeat. With one set (Pool.SetLockRegistry),
// this process writes its registry name into its lock objects, and a
// foreign lock whose owner the registry declares dead is stale at once
// instead of after 30 minutes without a refresh: GC does not wait for a
// writer killed on another machine, and writers do not wait for such a GC.
type LockRegistry interface {
	// Self is this process's name in the registry.
	Self() string
	// Dead reports whether owner, which wrote a lock at created (by its
	// own clock), is gone for good: no heartbeat for long enough that it
	// has stopped its work, a clean stop, or a restart since created.
	// Any doubt (unknown owner, registry unreachable) must answer false.
	Dead(ctx context.Context, owner string, created time.Time) bool
}

// SetLockRegistry sets (nil: removes) the registry that vouches for
// lock holders; see LockRegistry. Locks taken afterwards carry its name.
func (p *Pool) SetLockRegistry(r LockRegistry) {
	st := p.state()
	st.mu.Lock()
	st.registry = r
	st.mu.Unlock()
}

func (st *poolState) lockRegistry() LockRegistry {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.registry
}

// procScope names this machine's boot and PID namespace, or "" if they
// cannot be known (then no lock is judged by its PID).
var procScope = sync.OnceValue(func() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	hn, _ := os.Hostname()
	return hn + "/" + strings.TrimSpace(string(boot)) + "/" + ns
})

// holderDead reports whether lock object name was taken by a process of
// our scope that no longer exists, or by an owner the lock registry
// declares dead. Any doubt (unreadable lock, other scope and no registry
// verdict, live PID) answers false: the lock is then judged by its age.
func (p *Pool) holderDead(ctx context.Context, name string) bool {
	_, data, err := p.GetNamed(ctx, name)
	if err != nil {
		return false
	}
	var info lockInfo
	if json.Unmarshal(data, &info) != nil {
		return false
	}
	if scope := procScope(); scope != "" && info.Scope == scope && info.PID > 0 && info.PID != os.Getpid() &&
		errors.Is(syscall.Kill(info.PID, 0), syscall.ESRCH) {
		return true
	}
	if r := p.state().lockRegistry(); r != nil && info.Owner != "" {
		return r.Dead(ctx, info.Owner, info.Created)
	}
	return false
}

// ErrLockLost reports that a writer's lock object was removed by another
// process that judged its holder dead (a lock registry said so, or the
// lock aged out while the holder was frozen). A GC may then have deleted
// objects the snapshot uses, so it is not committed.
var ErrLockLost = errors.New("pool lock lost")

// describeLock names a lock object and, when it is readable, its holder:
// "locks/writer-… (backup h/s@id by instance b, host x, pid 12, since …)".
func (p *Pool) describeLock(ctx context.Context, name string) string {
	_, data, err := p.GetNamed(ctx, name)
	var info lockInfo
	if err != nil || json.Unmarshal(data, &info) != nil {
		return name
	}
	var parts []string
	if info.Snapshot != "" {
		parts = append(parts, "backup "+info.Snapshot)
	}
	if info.Owner != "" {
		parts = append(parts, "instance "+info.Owner)
	}
	if info.Host != "" {
		parts = append(parts, "host "+info.Host)
	}
	if info.PID > 0 {
		parts = append(parts, fmt.Sprintf("pid %d", info.PID))
	}
	if !info.Created.IsZero() {
		parts = append(parts, "since "+info.Created.UTC().Format(time.RFC3339))
	}
	if len(parts) == 0 {
		return name
	}
	return name + " (" + strings.Join(parts, ", ") + ")"
}

// heldLock is a lock object kept fresh by a heartbeat goroutine.
type heldLock struct {
	p    *Pool
	name string
	stop chan struct{}
	done chan struct{}
	lost atomic.Bool // the lock object vanished while held
}

// verify checks that the lock object still exists, before a writer
// commits a manifest: a writer whose lock another process removed as
// stale must not commit (see ErrLockLost).
func (l *heldLock) verify(ctx context.Context) error {
	if l == nil {
		return nil
	}
	if !l.lost.Load() {
		_, err := l.p.Backend().Stat(ctx, l.name)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("check lock %s: %w", l.name, err)
		}
		l.lost.Store(err != nil)
	}
	if l.lost.Load() {
		return fmt.Errorf("%w: %s at %s was removed by another process that judged this one dead; a GC may have deleted objects this snapshot uses, so it is not committed (run the backup again)",
			ErrLockLost, l.name, l.p.Location())
	}
	return nil
}

func (p *Pool) takeLock(ctx context.Context, name string, info lockInfo) (*heldLock, error) {
	hn, _ := os.Hostname()
	info.Instance, info.Host, info.PID, info.Created = p.state().instance, hn, os.Getpid(), time.Now().UTC()
	info.Scope = procScope()
	if r := p.state().lockRegistry(); r != nil {
		info.Owner = r.Self()
	}
	data, _ := json.Marshal(info)
	if err := p.PutNamed(ctx, name, KindManifest, data); err != nil {
		return nil, fmt.Errorf("take lock %s: %w", name, err)
	}
	l := &heldLock{p: p, name: name, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		t := time.NewTicker(lockRefresh)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				// A lock removed by another process (it judged us dead)
				// is not written again: the holder has lost it.
				bctx := context.WithoutCancel(ctx)
				if _, err := p.Backend().Stat(bctx, name); errors.Is(err, ErrNotFound) {
					l.lost.Store(true)
					return
				}
				// A failed refresh is retried at the next tick; the lock
				// only goes stale after several misses.
				p.PutNamed(bctx, name, KindManifest, data)
			}
		}
	}()
	return l, nil
}

// release stops the heartbeat and deletes the lock object.
func (l *heldLock) release(ctx context.Context) {
	if l == nil {
		return
	}
	close(l.stop)
	<-l.done
	l.p.DeleteNamed(context.WithoutCancel(ctx), l.name)
}

// foreignLocks lists fresh lock objects of kind ("writer" or "gc") that
// belong to other instances.
func (p *Pool) foreignLocks(ctx context.Context, kind string, now time.Time) ([]string, error) {
	mine := locksPrefix + kind + "-" + p.state().instance + "-"
	var out []string
	err := p.Backend().List(ctx, locksPrefix+kind+"-", func(oi ObjectInfo) error {
		if strings.HasPrefix(oi.Name, mine) {
			return nil
		}
		if now.Sub(oi.ModTime) < lockStale {
			out = append(out, oi.Name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list locks at %s: %w", p.Location(), err)
	}
	live := out[:0]
	for _, name := range out {
		if !p.holderDead(ctx, name) {
			live = append(live, name)
		}
	}
	return live, nil
}

// lru is a byte-bounded least-recently-used cache. Values are shared and
// must not be modified.
type lru struct {
	mu    sync.Mutex
	max   int
	size  int
	order *list.List // front: most recently used; values *lruItem
	items map[Digest]*list.Element
}

type lruItem struct {
	d    Digest
	v    any
	size int
}

func newLRU(max int) *lru {
	return &lru{max: max, order: list.New(), items: map[Digest]*list.Element{}}
}

func (c *lru) get(d Digest) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[d]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*lruItem).v, true
}

func (c *lru) add(d Digest, v any, size int) {
	if size > c.max/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[d]; ok {
		return
	}
	c.items[d] = c.order.PushFront(&lruItem{d: d, v: v, size: size})
	c.size += size
	for c.size > c.max {
		el := c.order.Back()
		it := el.Value.(*lruItem)
		c.order.Remove(el)
		delete(c.items, it.d)
		c.size -= it.size
	}
}

// remove drops d (after a quarantine, so nobody serves stale data).
func (c *lru) remove(d Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[d]; ok {
		c.size -= el.Value.(*lruItem).size
		c.order.Remove(el)
		delete(c.items, d)
	}
}

// removeStaleLocks deletes foreign lock objects whose heartbeat stopped
// (their holder crashed). Errors are ignored: a stale lock is harmless.
func (p *Pool) removeStaleLocks(ctx context.Context, now time.Time) int {
	mine := p.state().instance
	var stale, fresh []string
	p.Backend().List(ctx, locksPrefix, func(oi ObjectInfo) error {
		switch {
		case strings.Contains(oi.Name, "-"+mine+"-"):
		case now.Sub(oi.ModTime) >= lockStale:
			stale = append(stale, oi.Name)
		default:
			fresh = append(fresh, oi.Name)
		}
		return nil
	})
	for _, name := range fresh {
		if p.holderDead(ctx, name) {
			stale = append(stale, name)
		}
	}
	for _, name := range stale {
		p.DeleteNamed(ctx, name)
	}
	return len(stale)
}
