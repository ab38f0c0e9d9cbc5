package pool

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"testing"
	"time"
)

// TestLocksOfKilledProcesses: a lock whose holder died without releasing
// it (SIGKILL) stops blocking at once when the holder ran on this machine
// and PID namespace; a live holder's lock still blocks.
func TestLocksOfKilledProcesses(t *testing.T) {
	if procScope() == "" {
		t.Fatal("no /proc: cannot name this machine's PID scope")
	}
	ctx := context.Background()
	p, _ := structPool(t)
	src := t.TempDir()
	genTree(t, src, 5, 3)
	backupDir(t, ctx, p, src, "h", "s")

	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { live.Process.Kill(); live.Wait() }()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	lock := func(name string, pid int, scope string) {
		t.Helper()
		b, _ := json.Marshal(lockInfo{Kind: "writer", PID: pid, Scope: scope, Created: time.Now()})
		if err := p.PutNamed(ctx, name, KindManifest, b); err != nil {
			t.Fatal(err)
		}
	}
	// A live holder blocks GC; so does a dead PID of another scope.
	lock(locksPrefix+"writer-aaaaaaaaaaaaaaaa-1", live.Process.Pid, procScope())
	if _, err := p.GC(ctx, GCOptions{Grace: -1}); !errors.Is(err, ErrLocked) {
		t.Fatalf("GC with a live foreign writer: %v", err)
	}
	p.DeleteNamed(ctx, locksPrefix+"writer-aaaaaaaaaaaaaaaa-1")
	lock(locksPrefix+"writer-bbbbbbbbbbbbbbbb-1", dead.Process.Pid, "otherhost/boot/pid:[1]")
	if _, err := p.GC(ctx, GCOptions{Grace: -1}); !errors.Is(err, ErrLocked) {
		t.Fatalf("GC with a writer of another machine: %v", err)
	}
	p.DeleteNamed(ctx, locksPrefix+"writer-bbbbbbbbbbbbbbbb-1")

	// A killed writer's lock neither blocks GC nor survives it.
	lock(locksPrefix+"writer-cccccccccccccccc-1", dead.Process.Pid, procScope())
	rep, err := p.GC(ctx, GCOptions{Grace: -1})
	if err != nil || rep.StaleLocks != 1 {
		t.Fatalf("GC with a killed writer's lock: %+v, %v", rep, err)
	}
	// A killed GC's lock does not make a new writer wait.
	b, _ := json.Marshal(lockInfo{Kind: "gc", PID: dead.Process.Pid, Scope: procScope(), Created: time.Now()})
	if err := p.PutNamed(ctx, locksPrefix+"gc-dddddddddddddddd-1", KindManifest, b); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	w, err := p.NewWriter(short, SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatalf("NewWriter after a killed GC: %v", err)
	}
	w.Abort()
}
