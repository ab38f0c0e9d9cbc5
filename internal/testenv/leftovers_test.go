package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestKillLeftovers: a daemon whose owning test process is gone is killed
// with its whole group; one whose owner is alive is left alone.
func TestKillLeftovers(t *testing.T) {
	Need(t, "sh", "sleep")
	start := func() *exec.Cmd {
		// sh with a child sleep: the group has two members.
		cmd := exec.Command("sh", "-c", "sleep 600 & wait")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
		deadline := time.Now().Add(30 * time.Second)
		for len(GroupMembers(cmd.Process.Pid)) < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("sleep child did not start")
			}
			time.Sleep(pollStep)
		}
		return cmd
	}
	orphan, owned := start(), start()
	self := os.Getpid()
	write := func(pid int, ownerStart uint64) string {
		if err := os.MkdirAll(pidDir(), 0o1777); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(pidDir(), strconv.Itoa(pid))
		line := fmt.Sprintf("%d %d %d %d fake\n", pid, procStart(pid), self, ownerStart)
		if err := os.WriteFile(p, []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(p) })
		return p
	}
	// A wrong start time makes this process look like a dead owner whose
	// pid was reused.
	orphanFile := write(orphan.Process.Pid, procStart(self)+1)
	ownedFile := write(owned.Process.Pid, procStart(self))

	KillLeftovers()

	if err := orphan.Wait(); err == nil {
		t.Fatalf("orphan exited cleanly; want killed")
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(GroupMembers(orphan.Process.Pid)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("orphan group still has %v", GroupMembers(orphan.Process.Pid))
		}
		time.Sleep(pollStep)
	}
	if _, err := os.Stat(orphanFile); !os.IsNotExist(err) {
		t.Fatalf("orphan pidfile not removed: %v", err)
	}
	if len(GroupMembers(owned.Process.Pid)) != 2 {
		t.Fatalf("daemon of a live owner was touched: group %v", GroupMembers(owned.Process.Pid))
	}
	if _, err := os.Stat(ownedFile); err != nil {
		t.Fatalf("pidfile of a live owner removed: %v", err)
	}
}
