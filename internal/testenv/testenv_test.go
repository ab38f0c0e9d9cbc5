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

// goneCheck asserts that a server left no process behind: registered
// before the server's helper (so its cleanup runs after the server's), it
// checks that the process group is empty, the leader is gone, the pidfile
// is removed, and that every descendant seen by snapshot (deferred right
// after the server started, so it runs while the test's connections may
// still be open) is gone too, including those that left the group.
type goneCheck struct {
	name string
	pid  int
	desc []procID
}

func watchGone(t *testing.T, name string) *goneCheck {
	t.Helper()
	g := &goneCheck{name: name}
	t.Cleanup(func() {
		if g.pid == 0 {
			return
		}
		for _, p := range g.desc {
			if p.alive() {
				t.Errorf("%s: descendant %d still alive after cleanup", name, p.pid)
			}
		}
		if m := GroupMembers(g.pid); len(m) > 0 {
			t.Errorf("%s: processes left in group %d after cleanup: %v", name, g.pid, m)
		}
		if err := syscall.Kill(g.pid, 0); err == nil {
			t.Errorf("%s: leader pid %d still exists after cleanup", name, g.pid)
		}
		if _, err := os.Stat(filepath.Join(pidDir(), strconv.Itoa(g.pid))); err == nil {
			t.Errorf("%s: pidfile of %d not removed", name, g.pid)
		}
	})
	return g
}

func (g *goneCheck) snapshot() { g.desc = descendants(g.pid) }

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
