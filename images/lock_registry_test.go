package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// fakeRegistry is a pool.LockRegistry over a shared table of dead owners.
type fakeRegistry struct {
	self string
	mu   *sync.Mutex
	dead map[string]bool
}

func (r fakeRegistry) Self() string { return r.self }

func (r fakeRegistry) Dead(_ context.Context, owner string, created time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !created.IsZero() && r.dead[owner]
}

func imageLocks(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	if err := s.p.Backend().List(context.Background(), locksPrefix, func(oi pool.ObjectInfo) error {
		out = append(out, oi.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// Two Stores on one backend with a lock registry stand for instances a and
// b of a cluster: a pull on b blocks a's GC while b lives; once the
// registry says b is dead, a's GC proceeds at once (no 30 minutes), removes
// b's lock, and b's late Commit fails with ErrLockLost without writing its
// manifest.
func TestLockRegistryDeadWriter(t *testing.T) {
	ctx := context.Background()
	a := newStore(t, false)
	b := New(a.p, nil)
	var mu sync.Mutex
	dead := map[string]bool{}
	a.SetLockRegistry(fakeRegistry{"a", &mu, dead})
	b.SetLockRegistry(fakeRegistry{"b", &mu, dead})

	v1, v2 := smallImages()
	kept, _, err := a.IngestReaderAt(ctx, "keep", bytes.NewReader(v1), int64(len(v1)), IngestOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// b pulls v2: its lock names owner b.
	w, err := b.NewVersion(ctx, "vm", int64(len(v2)), VersionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range numBlocks(int64(len(v2))) {
		off := i * BlockSize
		if err := w.Put(ctx, i, v2[off:off+int64(blockLen(int64(len(v2)), i))], nil); err != nil {
			t.Fatal(err)
		}
	}
	locks := imageLocks(t, b)
	if len(locks) != 1 || !strings.HasPrefix(locks[0], locksPrefix+"writer-"+b.instance+"-") {
		t.Fatalf("locks while b pulls: %v", locks)
	}
	_, data, err := a.p.GetNamed(ctx, locks[0])
	if err != nil {
		t.Fatal(err)
	}
	var lb lockBody
	if err := json.Unmarshal(data, &lb); err != nil || lb.Owner != "b" || lb.Kind != "writer" || lb.Time.IsZero() {
		t.Fatalf("lock body %s: %+v, %v", data, lb, err)
	}

	// b alive: a's GC refuses and names the holder.
	_, err = a.GC(ctx, pool.GCOptions{Grace: -1})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), locks[0]+" (instance b, host ") {
		t.Fatalf("gc while b lives: %v", err)
	}
	if got := imageLocks(t, a); len(got) != 1 || got[0] != locks[0] {
		t.Fatalf("a live writer's lock was touched: %v", got)
	}

	// b dead: a's GC proceeds, removes b's lock and sweeps b's blocks.
	mu.Lock()
	dead["b"] = true
	mu.Unlock()
	rep, err := a.GC(ctx, pool.GCOptions{Grace: -1})
	if err != nil {
		t.Fatalf("gc after b died: %v", err)
	}
	if rep.StaleLocks != 1 || rep.Versions != 1 || rep.Swept == 0 {
		t.Fatalf("gc report: %+v", rep)
	}
	if got := imageLocks(t, a); len(got) != 0 {
		t.Fatalf("locks after gc: %v", got)
	}

	// b comes back (it was only cut off): its Commit must not write a
	// manifest that references swept blocks.
	_, _, err = w.Commit(ctx)
	if !errors.Is(err, ErrLockLost) || !errors.Is(err, pool.ErrLockLost) || !strings.Contains(err.Error(), locks[0]) {
		t.Fatalf("commit after losing the lock: %v", err)
	}
	if _, err := a.Latest(ctx, "vm"); err == nil {
		t.Fatal("a manifest was written after the lock was lost")
	}
	var versions []string
	a.Versions(ctx, func(v VersionRef) error { versions = append(versions, v.Name+"/"+v.ID); return nil })
	if len(versions) != 1 || versions[0] != "keep/"+kept.ID {
		t.Fatalf("versions: %v", versions)
	}

	// The pool is whole: the kept version reads back and checks clean.
	checkRead(t, a, kept, v1, false)
	crep, err := a.Check(ctx, pool.CheckOptions{ReadData: true})
	if err != nil || !crep.OK() || crep.Versions != 1 || crep.Objects != crep.Referenced {
		t.Fatalf("check: %s, %v", crep.String(), err)
	}
	if got := imageLocks(t, a); len(got) != 0 {
		t.Fatalf("locks left: %v", got)
	}
}

// A lock without an owner (an old writer, or one without a registry) is
// never judged by the registry: it blocks GC until it ages out.
func TestLockRegistryNoOwner(t *testing.T) {
	ctx := context.Background()
	a := newStore(t, false)
	b := New(a.p, nil) // no registry: its locks carry no owner
	var mu sync.Mutex
	a.SetLockRegistry(fakeRegistry{"a", &mu, map[string]bool{"": true, "b": true}})
	w, err := b.NewVersion(ctx, "vm", 10, VersionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	lb, ok := a.readLock(ctx, imageLocks(t, a)[0])
	if !ok || lb.Owner != "" {
		t.Fatalf("lock of a store without registry: %+v", lb)
	}
	if _, err := a.GC(ctx, pool.GCOptions{Grace: -1}); !errors.Is(err, ErrLocked) {
		t.Fatalf("gc with an ownerless fresh lock: %v", err)
	}
	if got := imageLocks(t, a); len(got) != 1 {
		t.Fatalf("ownerless lock removed: %v", got)
	}
}
