package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// Ingests racing with GCs that have no grace period: every committed
// version stays whole.
func TestGCRacesIngest(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, false)
	v1, v2 := smallImages()
	stop := make(chan struct{})
	gcs := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				gcs <- nil
				return
			default:
			}
			if _, err := s.GC(ctx, pool.GCOptions{Grace: -1}); err != nil {
				gcs <- err
				return
			}
		}
	}()
	type res struct {
		m   *Manifest
		img []byte
		err error
	}
	out := make(chan res, 4)
	for k, img := range [][]byte{v1, v2, v1, v2} {
		go func() {
			m, _, err := s.IngestReaderAt(ctx, fmt.Sprintf("img%d", k), bytes.NewReader(img), int64(len(img)), IngestOptions{})
			out <- res{m, img, err}
		}()
	}
	var got []res
	for range 4 {
		r := <-out
		if r.err != nil {
			t.Fatal(r.err)
		}
		got = append(got, r)
	}
	close(stop)
	if err := <-gcs; err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(ctx, pool.GCOptions{Grace: -1}); err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		checkRead(t, s, r.m, r.img, false)
	}
	if rep, err := s.Check(ctx, pool.CheckOptions{}); err != nil || !rep.OK() || rep.Objects != 5 {
		t.Fatalf("check: %s, %v", rep.String(), err)
	}
}
