package sftp_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/pullertest"
	"github.com/cairn-backup/cairn/pullers/sftp"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for rel, data := range files {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPaths(t *testing.T) {
	for _, tc := range []struct {
		path, paths string
		want        []string
		bad         bool
	}{
		{path: "data", want: []string{"data"}},
		{path: "/srv/www/", paths: " /etc, /srv/www/html,/etc", want: []string{"/etc", "/srv/www"}},
		{paths: "/a/b,/a,/a-b", want: []string{"/a", "/a-b"}},
		{paths: "/,/etc", want: []string{"/"}},
		{path: "rel", paths: "/abs", bad: true},
		{bad: true},
	} {
		got, err := sftp.Paths(pullers.Source{Path: tc.path, Options: map[string]string{"paths": tc.paths}})
		if (err != nil) != tc.bad || (!tc.bad && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("Paths(%q, %q) = %q, %v; want %q (error %v)", tc.path, tc.paths, got, err, tc.want, tc.bad)
		}
	}
}

// TestOptions: several paths, excludes, and full_every against real sshd.
func TestOptions(t *testing.T) {
	s := testenv.SSHD(t)
	a, b := filepath.Join(s.Dir, "a"), filepath.Join(s.Dir, "b", "c")
	writeTree(t, a, map[string]string{"keep": "1", "skip.tmp": "2", "cache/x": "3", "sub/keep2": "4"})
	writeTree(t, b, map[string]string{"f": "5", "g.tmp": "6"})
	src := keySource(t, s, "")
	src.Options["paths"] = a + "," + b
	src.Excludes = []string{"*.tmp", strAfter(a, "/") + "/cache"}
	p := pullertest.NewPool(t)
	m, prog := pullertest.Pull(t, p, sftp.New(), src, nil, nil)
	got := snapshotNames(t, p, m)
	ra, rb := strAfter(a, "/"), strAfter(b, "/")
	want := []string{ra + "/keep", ra + "/sub", ra + "/sub/keep2", rb + "/f"}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%q missing from %q", w, got)
		}
	}
	for _, n := range got {
		if filepath.Ext(n) == ".tmp" || filepath.Base(n) == "cache" || filepath.Base(n) == "x" {
			t.Errorf("excluded %q is in the snapshot", n)
		}
	}
	if prog.Files != int64(len(got)) || m.Status != pool.StatusComplete {
		t.Errorf("progress %d files, snapshot %d entries, status %s", prog.Files, len(got), m.Status)
	}
	e, err := p.Lookup(context.Background(), m.Root, rb+"/f")
	if err != nil || e.Size != 1 {
		t.Fatalf("lookup: %+v %v", e, err)
	}

	// full_every=3: over three consecutive days each of the 3 files is
	// re-read exactly once; the other days it is skipped.
	src.Options["full_every"] = "3"
	reread := 0
	for day := range 3 {
		pl := sftp.New()
		pl.Now = func() time.Time { return time.Date(2026, 3, 1+day, 12, 0, 0, 0, time.UTC) }
		_, pr := pullertest.Pull(t, p, pl, src, pullertest.PoolPrevious{Pool: p, Root: m.Root}, nil)
		reread += int(3 - pr.Skipped)
	}
	if reread != 3 {
		t.Errorf("over 3 days of full_every=3, %d re-reads of 3 files; want 3", reread)
	}
	src.Options["full_every"] = ""
	src.Options["full"] = "true"
	if _, pr := pullertest.Pull(t, p, sftp.New(), src, pullertest.PoolPrevious{Pool: p, Root: m.Root}, nil); pr.Skipped != 0 {
		t.Errorf("full=true skipped %d files", pr.Skipped)
	}
	src.Options["full"] = ""
	if _, pr := pullertest.Pull(t, p, sftp.New(), src, pullertest.PoolPrevious{Pool: p, Root: m.Root}, nil); pr.Skipped != 3 {
		t.Errorf("incremental skipped %d files, want 3", pr.Skipped)
	}
}

func strAfter(s, prefix string) string { return s[len(prefix):] }

func TestHostTest(t *testing.T) {
	s := testenv.SSHD(t)
	writeTree(t, s.Dir, map[string]string{"x": "1", "y/z": "2"})
	src := keySource(t, s, s.Dir)
	delete(src.Options, "host_key")
	id, err := sftp.New().Test(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if id["host_key"] != sftp.HostKeyString(s.HostKey) || id["entries"] != "2" || id["host_key_fingerprint"] != sshFingerprint(s) ||
		!strings.HasPrefix(id["server"], "SSH-2.0-OpenSSH") {
		t.Errorf("Test = %q", id)
	}
}
