package dbdump

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pullers"
)

// TestCancelKillsTool: cancelling a pull kills the dump tool and its
// children at once and returns the context's error.
func TestCancelKillsTool(t *testing.T) {
	bin := t.TempDir()
	marker := filepath.Join(bin, "started")
	must(t, os.WriteFile(filepath.Join(bin, "pg_dump"), []byte("#!/bin/sh\nsleep 600 &\necho $! > "+marker+".tmp\nmv "+marker+".tmp "+marker+"\nwait\n"), 0o755))
	p := newPool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := p.NewWriter(context.Background(), poolMeta())
	must(t, err)
	defer w.Abort()
	done := make(chan error, 1)
	go func() {
		done <- NewPostgres().Pull(ctx, &pullers.Job{Host: "h", Sink: w, Source: pullers.Source{
			Options: map[string]string{"databases": "appdb", "globals": "false", "bin_dir": bin}}})
	}()
	deadline := time.Now().Add(30 * time.Second)
	var pid int
	for {
		if b, err := os.ReadFile(marker); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fake pg_dump did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Pull = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Pull did not return after cancel")
	}
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the tool's child %d survived the cancel", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// alive: the process exists and is not a zombie (an orphan may wait a
// while for its reaper here).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
