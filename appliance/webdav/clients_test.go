package webdav

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.KillLeftovers()
	os.Exit(m.Run())
}

// TestRcloneCopy copies a whole snapshot with rclone's WebDAV backend and
// compares every file. (litmus cannot run against a read-only share: each
// of its suites starts with MKCOL; see TESTING.md §9.)
func TestRcloneCopy(t *testing.T) {
	testenv.Need(t, "rclone")
	m := testTree()
	srv := newServer(t, m, "/dav")
	out := t.TempDir()
	cmd := exec.Command("rclone", "--config", "/dev/null", "--retries", "1", "copy",
		"--webdav-url", srv.URL+"/dav/web1/latest", ":webdav:", out)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rclone copy: %v\n%s", err, b)
	}
	r := "web1/" + snap2 + "/root/"
	want := map[string][]byte{
		"root/etc/hostname":             m[r+"etc/hostname"].Data,
		"root/home/alice/notes.txt":     m[r+"home/alice/notes.txt"].Data,
		"root/home/alice/rel":           m[r+"home/alice/notes.txt"].Data,
		"root/home/alice/docs/hostname": m[r+"etc/hostname"].Data,
		"root/home/alice/My Doc ü.txt":  m[r+"home/alice/My Doc ü.txt"].Data,
		"root/home/alice/empty":         nil,
		"root/var/big.bin":              m[r+"var/big.bin"].Data,
	}
	got := map[string][]byte{}
	must(t, filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		b, err := os.ReadFile(p)
		got[filepath.ToSlash(rel)] = b
		return err
	}))
	for name, data := range want {
		if b, ok := got[name]; !ok || sum(b) != sum(data) {
			t.Errorf("%s: present=%v sha256 %s, want %s", name, ok, sum(b), sum(data))
		}
	}
	if len(got) != len(want) {
		var names []string
		for n := range got {
			names = append(names, n)
		}
		slices.Sort(names)
		t.Errorf("copied %d files, want %d: %q", len(got), len(want), names)
	}
}

// TestCadaver lists and fetches with cadaver, scripted through stdin.
func TestCadaver(t *testing.T) {
	testenv.Need(t, "cadaver")
	m := testTree()
	srv := newServer(t, m, "/dav")
	dir := t.TempDir()
	local := filepath.Join(dir, "notes.out")
	cmd := exec.Command("cadaver", srv.URL+"/dav/db1/")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.Stdin = strings.NewReader("ls\ncd latest/root/home/alice\nls\nget notes.txt " + local + "\nput notes.out x.txt\nquit\n")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cadaver: %v\n%s", err, b)
	}
	outStr := string(b)
	for _, want := range []string{snap1, snap2, "latest", "notes.txt", "My Doc ü.txt", "405"} {
		if !strings.Contains(outStr, want) {
			t.Errorf("cadaver output lacks %q:\n%s", want, outStr)
		}
	}
	data, err := os.ReadFile(local)
	if err != nil || !bytes.Equal(data, m["db1/"+snap2+"/root/home/alice/notes.txt"].Data) {
		t.Errorf("cadaver get: %q, %v", data, err)
	}
}
