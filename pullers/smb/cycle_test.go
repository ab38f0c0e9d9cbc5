package smb_test

import (
	"crypto/sha256"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers/internal/pipetest"
	"github.com/cairn-backup/cairn/pullers/pullertest"
	"github.com/cairn-backup/cairn/pullers/smb"
)

// TestDirectoryCycles: Samba follows symlinks itself, so loop/self -> .,
// loop/parent -> .. and a/b/c/top -> ../../.. are directories holding an
// ancestor again, endlessly. Each is stored as an empty directory with an
// error naming the cycle, and the walk ends. A link to a sibling
// (sib/link -> ../other) is no cycle: the server shows a copy of other,
// stored as a second directory. An honest chain d/d/.../d (25 levels,
// the same file in each, times set equal) looks like a cycle to the
// signature and must survive the probe whole.
func TestDirectoryCycles(t *testing.T) {
	s := testenv.Samba(t)
	want := map[string][32]byte{}
	mk := func(rel, data string) {
		p := filepath.Join(s.Dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		want[rel] = sha256.Sum256([]byte(data))
	}
	mk("r", "root file\n")
	mk("loop/f", "in the loop\n")
	mk("a/b/c/deep", "under a/b/c\n")
	mk("other/g", "the sibling's\n")
	want["sib/link/g"] = want["other/g"]
	const levels = 25 // fewer than the probe's 30 repetitions (see the package documentation)
	chain := ""
	for range levels {
		chain = path(chain, "d")
		mk(chain+"/f", "same\n")
	}
	for name, target := range map[string]string{"loop/self": ".", "loop/parent": "..",
		"a/b/c/top": "../../..", "sib/link": "../other"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(s.Dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	// The chain's times all equal (creation and change times are the
	// file system's coarse clock anyway): its levels match by signature.
	same := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	for p := chain; p != "."; p = filepath.Dir(p) {
		for _, q := range []string{p + "/f", p} {
			if err := os.Chtimes(filepath.Join(s.Dir, q), same, same); err != nil {
				t.Fatal(err)
			}
		}
	}

	var mu sync.Mutex
	var probes []string
	smb.SetProbeHook(func(rel, anc string) {
		mu.Lock()
		probes = append(probes, rel+" ~ "+anc)
		mu.Unlock()
	})
	defer smb.SetProbeHook(nil)

	p := pullertest.NewPool(t)
	pl := smb.New()
	m, _ := pullertest.Pull(t, p, pl, source(s, ""), nil, nil)
	pipetest.Compare(t, want, pipetest.Sums(t, p, m))
	checkPool(t, p)

	wantErrs := map[string]string{
		"loop/self":   "directory cycle: loop/self is loop",
		"loop/parent": "directory cycle: loop/parent is .",
		"a/b/c/top":   "directory cycle: a/b/c/top is .",
	}
	if m.Status != pool.StatusPartial || m.ErrorCount != len(wantErrs) {
		t.Errorf("status %s, %d errors %q; want the %d cycles", m.Status, m.ErrorCount, m.Errors, len(wantErrs))
	}
	for rel, msg := range wantErrs {
		if !hasError(m, rel+": ", msg) {
			t.Errorf("no error %q in %q", msg, m.Errors)
		}
		// Kept as a directory without children.
		fsys := p.SnapshotFS(t.Context(), m)
		ents, err := fs.ReadDir(fsys, rel)
		if err != nil || len(ents) != 0 {
			t.Errorf("%s: %d children, %v; want an empty directory", rel, len(ents), err)
		}
	}
	// The chain's levels were probed (their signatures match) and kept.
	mu.Lock()
	defer mu.Unlock()
	chained := 0
	for _, pr := range probes {
		if strings.HasPrefix(pr, "d/d") {
			chained++
		}
	}
	if chained == 0 {
		t.Errorf("no probe in the chain (probes %q): the test does not exercise a signature match", probes)
	}
	slices.Sort(probes)
	t.Logf("%d probes, e.g. %q", len(probes), probes[:min(len(probes), 6)])
}

func path(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
