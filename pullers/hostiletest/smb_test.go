package hostiletest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/smb"
)

// TestHostileSMB: a real Samba share holding the hostile tree as far as a
// Linux directory can (no "/", NUL, "." or ".." names): shell syntax,
// links out of the share and into loops, and a directory with more names
// than the cap. An evil SMB server (absurd replies) is not played: Go has
// no SMB2 server to script, and writing one (framing, NTLM, the query
// replies) is beyond this suite; pullers/smb's own tests cover what a
// server sends through Samba. Samba (without the POSIX extensions) follows
// symlinks itself: links out of the share are refused by it ("wide links
// = no"), a loop is cut by the puller's cycle detection.
func TestHostileSMB(t *testing.T) {
	s := testenv.Samba(t)
	mk := func(rel, data string) {
		p := filepath.Join(s.Dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range honest {
		mk(name, data)
	}
	// Links out of the share, and a loop in a cage: Samba follows it, so
	// cage/loop/{self,parent} are directories holding cage/loop again,
	// two ways per level; pullers/smb stops at each with a cycle error
	// (MaxDepth, 2^depth entries, is the backstop asserted below).
	for name, target := range map[string]string{"out": "/etc", "up": "../../../../..", "sub/back": "../..",
		"cage/loop/self": ".", "cage/loop/parent": ".."} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(s.Dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(s.Dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	const big, capN = 1000, 300
	for i := range big {
		mk(fmt.Sprintf("zz-huge/f%05d", i), "x")
	}
	w := newWorld(t)
	pl := smb.New()
	pl.MaxEntries = capN // as the appliance sets it from max_dir_entries
	pl.MaxDepth = 8      // the loop: 2^8 directories
	m, err := w.pull(t, pl, pullers.Source{Method: smb.Method, Name: "src", Path: "",
		Options: map[string]string{"host": s.Host, "port": strconv.Itoa(s.Port), "user": s.User, "share": s.Share},
		Secret:  map[string]string{"password": s.Password}})
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	w.check(t)
	tree := w.tree(t, m)
	for name, want := range honest {
		if e, ok := tree[name]; !ok || e.Type != pool.TypeFile || w.content(t, e) != want {
			t.Errorf("%s: %+v, want %q", name, e, want)
		}
	}
	// Nothing from outside the share: /etc is not behind "out" or "up".
	for name := range tree {
		if strings.HasPrefix(name, "out/") || strings.HasPrefix(name, "up/") || strings.HasPrefix(name, "sub/back/") {
			t.Errorf("stored %s from outside the share", name)
		}
	}
	huge, depth := 0, 0
	for name := range tree {
		if strings.HasPrefix(name, "zz-huge/") {
			huge++
		}
		depth = max(depth, strings.Count(name, "/"))
	}
	if huge != capN || !errorOn(m, "zz-huge", fmt.Sprintf("more than %d names in one directory", capN)) {
		t.Errorf("zz-huge: %d names kept, errors %q", huge, firstN(m.Errors, 10))
	}
	caged := 0
	for name := range tree {
		if strings.HasPrefix(name, "cage/") {
			caged++
		}
	}
	if depth > pl.MaxDepth+1 || caged > 1<<(pl.MaxDepth+1) {
		t.Errorf("the walk went %d levels deep, %d entries in the loop", depth, caged)
	}
	if all := strings.Join(m.Errors, "\n"); !strings.Contains(all, "directory cycle: cage/loop/self is cage/loop") ||
		!strings.Contains(all, "directory cycle: cage/loop/parent is cage") {
		t.Errorf("no cycle errors in %q", firstN(m.Errors, 10))
	}
	for _, e := range m.Errors {
		if !strings.HasPrefix(e, "cage/") {
			t.Logf("error: %s", e)
		}
	}
	t.Logf("%d entries, %d levels, %d errors, e.g. %q", len(tree), depth, m.ErrorCount, firstN(m.Errors, 6))
}
