package testenv

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	KillLeftovers()
	os.Exit(m.Run())
}

// assertGone registers (before the server's own cleanup, so it runs after
// it) a check that the process group of a stopped server is empty.
func assertGone(t *testing.T, name string, pid *int) {
	t.Helper()
	assertGoneAll(t, name, pid, new([]procID))
}

// assertGoneAll is assertGone that also checks extra processes (for
// example descendants that left the group).
func assertGoneAll(t *testing.T, name string, pid *int, extra *[]procID) {
	t.Helper()
	t.Cleanup(func() {
		for _, p := range *extra {
			if p.alive() {
				t.Errorf("%s: descendant %d still alive after cleanup", name, p.pid)
			}
		}
		if *pid == 0 {
			return
		}
		if m := GroupMembers(*pid); len(m) > 0 {
			t.Errorf("%s: processes left in group %d after cleanup: %v", name, *pid, m)
		}
		if err := syscall.Kill(*pid, 0); err == nil {
			t.Errorf("%s: leader pid %d still exists after cleanup", name, *pid)
		}
		if _, err := os.Stat(filepath.Join(pidDir(), strconv.Itoa(*pid))); err == nil {
			t.Errorf("%s: pidfile of %d not removed", name, *pid)
		}
	})
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// timed logs how long a helper took to return a ready server.
func timed(t *testing.T, what string) func() {
	start := time.Now()
	return func() { t.Logf("%s ready in %v", what, time.Since(start).Round(time.Millisecond)) }
}
