package images

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// Two Stores on one backend stand for two processes.
func TestCrossProcessLocks(t *testing.T) {
	ctx := context.Background()
	a := newStore(t, false)
	b := New(a.p, nil)
	w, err := a.NewVersion(ctx, "vm", 10, VersionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A pull in "process" a: b's GC refuses; a's own GC does not.
	if _, err := b.GC(ctx, pool.GCOptions{Grace: -1}); !errors.Is(err, ErrLocked) {
		t.Fatalf("foreign gc during a pull: %v", err)
	}
	if _, err := b.GC(ctx, pool.GCOptions{DryRun: true}); err != nil {
		t.Fatalf("dry run needs no lock: %v", err)
	}
	if _, err := a.GC(ctx, pool.GCOptions{Grace: -1}); err != nil {
		t.Fatalf("own gc: %v", err)
	}
	w.Abort()
	if _, err := b.GC(ctx, pool.GCOptions{Grace: -1}); err != nil {
		t.Fatalf("gc after the pull: %v", err)
	}

	// A stale writer lock (its process died) does not block GC.
	w, _ = a.NewVersion(ctx, "vm", 10, VersionOptions{})
	var lockFile string
	a.p.Backend().List(ctx, locksPrefix, func(oi pool.ObjectInfo) error { lockFile = oi.Name; return nil })
	old := time.Now().Add(-lockStale - time.Minute)
	if err := os.Chtimes(filepath.Join(a.p.Location(), filepath.FromSlash(lockFile)), old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GC(ctx, pool.GCOptions{Grace: -1}); err != nil {
		t.Fatalf("gc with a stale writer lock: %v", err)
	}
	w.Abort()

	// A GC in "process" b: a new writer in a waits until it is done.
	lockWaitPoll = 10 * time.Millisecond
	defer func() { lockWaitPoll = time.Second }()
	gl, err := b.takeLock(ctx, "gc")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		w, err := a.NewVersion(ctx, "vm", 10, VersionOptions{})
		if err == nil {
			w.Abort()
		}
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		found := false
		a.p.Backend().List(ctx, locksPrefix+"writer-", func(pool.ObjectInfo) error { found = true; return nil })
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writer never took its lock")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("writer did not wait for the foreign GC: %v", err)
	default:
	}
	gl.release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var left []string
	a.p.Backend().List(ctx, "locks/", func(oi pool.ObjectInfo) error { left = append(left, oi.Name); return nil })
	if len(left) != 0 {
		t.Fatalf("locks left: %s", strings.Join(left, ", "))
	}
}
