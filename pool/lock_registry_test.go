package pool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRegistry is a cluster instance table for one test: names are dead
// when listed in dead.
type fakeRegistry struct {
	self  string
	mu    *sync.Mutex
	dead  map[string]bool
	asked *[]string // "owner@created" per Dead call
}

func (r fakeRegistry) Self() string { return r.self }

func (r fakeRegistry) Dead(_ context.Context, owner string, created time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.asked = append(*r.asked, owner)
	return r.dead[owner]
}

// TestLockRegistry: a writer of "instance B" (another pool handle, as
// another machine would have; same PID, so the PID check cannot help)
// holds a lock. While the registry says B is alive, GC refuses; once it
// says B is dead, GC proceeds at once, removes B's lock, sweeps its
// unfinished objects, B's writer (had it only been frozen) cannot commit
// (ErrLockLost), and the pool checks clean with the earlier snapshot
// intact. A dead owner's GC lock does not make writers wait; a
// live one's does. Without a registry the lock blocks as before.
func TestLockRegistry(t *testing.T) {
	ctx := context.Background()
	pa, b := structPool(t)
	pb, err := Open(ctx, b, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var asked []string
	dead := map[string]bool{}
	pa.SetLockRegistry(fakeRegistry{self: "A", mu: &mu, dead: dead, asked: &asked})
	pb.SetLockRegistry(fakeRegistry{self: "B", mu: &mu, dead: dead, asked: &asked})
	setDead := func(name string, v bool) {
		mu.Lock()
		dead[name] = v
		mu.Unlock()
	}

	src := t.TempDir()
	genTree(t, src, 21, 12)
	m1 := backupDir(t, ctx, pa, src, "h", "s")

	// B starts a backup and "dies" (its process is gone; the lock stays).
	w, err := pb.NewWriter(ctx, SnapshotMeta{Host: "h2", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.Add(ctx, ".", Entry{Name: ".", Type: TypeDir, Mode: 0o755}, nil); err != nil {
		t.Fatal(err)
	}
	partial := []byte(strings.Repeat("only in B's unfinished backup\n", 100))
	if err := w.Add(ctx, "x", Entry{Name: "x", Type: TypeFile, Mode: 0o644, Size: int64(len(partial))}, bytes.NewReader(partial)); err != nil {
		t.Fatal(err)
	}
	partialObj := ObjectName(pa.Hash(partial))
	for { // written in the background: wait until it is stored
		if _, err := b.Stat(ctx, partialObj); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	var lockName string
	b.List(ctx, locksPrefix+"writer-", func(oi ObjectInfo) error { lockName = oi.Name; return nil })
	_, data, err := pa.GetNamed(ctx, lockName)
	var info lockInfo
	if err != nil || json.Unmarshal(data, &info) != nil || info.Owner != "B" || info.Kind != "writer" {
		t.Fatalf("B's lock %s: %s, %v", lockName, data, err)
	}

	// B alive: GC refuses, naming the lock.
	if _, err := pa.GC(ctx, GCOptions{Grace: -1}); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), lockName) ||
		!strings.Contains(err.Error(), "backup h2/s@") || !strings.Contains(err.Error(), "instance B") {
		t.Fatalf("GC while B is alive: %v", err)
	}
	// No registry: judged by age only, so it blocks too.
	pa.SetLockRegistry(nil)
	setDead("B", true)
	if _, err := pa.GC(ctx, GCOptions{Grace: -1}); !errors.Is(err, ErrLocked) {
		t.Fatalf("GC without a registry: %v", err)
	}
	pa.SetLockRegistry(fakeRegistry{self: "A", mu: &mu, dead: dead, asked: &asked})

	// B dead: GC proceeds at once and cleans up after it.
	rep, err := pa.GC(ctx, GCOptions{Grace: -1})
	if err != nil || rep.StaleLocks != 1 || rep.Swept == 0 {
		t.Fatalf("GC after B died: %+v, %v", rep, err)
	}
	if _, err := b.Stat(ctx, lockName); !errors.Is(err, ErrNotFound) {
		t.Fatalf("B's lock after GC: %v", err)
	}
	if _, err := b.Stat(ctx, partialObj); !errors.Is(err, ErrNotFound) {
		t.Fatalf("B's unfinished object after GC: %v", err)
	}
	mu.Lock()
	if len(asked) == 0 || asked[len(asked)-1] != "B" {
		t.Fatalf("registry asked about %v", asked)
	}
	mu.Unlock()
	// Were B only frozen, not dead, its commit now fails: its lock is
	// gone, and with it the guarantee that GC kept what it uses.
	if _, err := w.Finish(ctx); !errors.Is(err, ErrLockLost) || !strings.Contains(err.Error(), lockName) {
		t.Fatalf("finish of B's backup after its lock was removed: %v", err)
	}
	crep, err := pa.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || !crep.OK() || crep.Snapshots != 1 {
		t.Fatalf("check after GC: %s, %v", crep.String(), err)
	}
	e := mustLookup(t, pa, m1.Root, "d01/e1/f0001.txt")
	want, _ := os.ReadFile(filepath.Join(src, "d01/e1/f0001.txt"))
	if got := readEntry(t, pa, &e); !bytes.Equal(got, want) {
		t.Fatal("snapshot content changed by GC")
	}

	// A GC lock of B: waited for while B lives, ignored once B is dead.
	gcLock := locksPrefix + "gc-bbbbbbbbbbbbbbbb-1"
	gl, _ := json.Marshal(lockInfo{Kind: "gc", Owner: "B", PID: os.Getpid(), Created: time.Now()})
	if err := pa.PutNamed(ctx, gcLock, KindManifest, gl); err != nil {
		t.Fatal(err)
	}
	setDead("B", false)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := pa.NewWriter(short, SnapshotMeta{Host: "h", Source: "s"}); err == nil || !strings.Contains(err.Error(), "waiting for GC") {
		t.Fatalf("writer with a live GC of B: %v", err)
	}
	setDead("B", true)
	w2, err := pa.NewWriter(ctx, SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatalf("writer after B's GC died: %v", err)
	}
	w2.Abort()

	// A lock removed while held is not written again by the heartbeat
	// (that would hide the loss); the writer's checkpoint then fails.
	saved := lockRefresh
	lockRefresh = 5 * time.Millisecond
	defer func() { lockRefresh = saved }()
	w3, err := pb.NewWriter(ctx, SnapshotMeta{Host: "h3", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer w3.Abort()
	if err := w3.Add(ctx, ".", Entry{Name: ".", Type: TypeDir, Mode: 0o755}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, w3.lock.name); err != nil {
		t.Fatal(err)
	}
	for !w3.lock.lost.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // ten more refresh periods
	if _, err := b.Stat(ctx, w3.lock.name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed lock written again: %v", err)
	}
	if _, err := w3.Checkpoint(ctx); !errors.Is(err, ErrLockLost) {
		t.Fatalf("checkpoint after the lock was removed: %v", err)
	}
}
