package testenv

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fillTree writes a small tree with a private file, a subdir and a symlink.
func fillTree(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "sub", "deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"a.txt":              []byte("hello\n"),
		"private.bin":        randomBytes(t, 64<<10),
		"sub/deeper/big.bin": randomBytes(t, 1<<20),
		"sub/with space.txt": []byte("space\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("deeper/big.bin", filepath.Join(dir, "sub", "link")); err != nil {
		t.Fatal(err)
	}
}

// treeDigest describes a tree: per path, the type and the content's sha256
// (or the link target).
func treeDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link:" + target
		case d.IsDir():
			out[rel] = "dir"
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = "file:" + sha(b)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return out
}

func assertSameTree(t *testing.T, want, got string) {
	t.Helper()
	w, g := treeDigest(t, want), treeDigest(t, got)
	if len(w) != len(g) {
		t.Fatalf("tree %s has %d entries, %s has %d:\n%v\n%v", got, len(g), want, len(w), g, w)
	}
	for k, v := range w {
		if g[k] != v {
			t.Fatalf("tree %s: %s is %q, want %q", got, k, g[k], v)
		}
	}
}

func TestRsyncd(t *testing.T) {
	g := watchGone(t, "rsyncd")
	done := timed(t, "rsyncd")
	s := Rsyncd(t)
	done()
	g.pid = s.Pid
	defer g.snapshot()
	fillTree(t, s.Dir)
	work := t.TempDir()

	// Module listing.
	out, err := exec.Command("rsync", "rsync://"+s.Addr+"/").CombinedOutput()
	if err != nil || !strings.Contains(string(out), s.Module) || !strings.Contains(string(out), s.AuthModule) {
		t.Fatalf("module list: %v\n%s", err, out)
	}

	// Open module.
	dest := filepath.Join(work, "open")
	if out, err := exec.Command("rsync", "-a", s.URL(s.Module), dest+"/").CombinedOutput(); err != nil {
		t.Fatalf("rsync pull %s: %v\n%s", s.URL(s.Module), err, out)
	}
	assertSameTree(t, s.Dir, dest)

	// Auth module with RSYNC_PASSWORD.
	dest = filepath.Join(work, "auth")
	cmd := exec.Command("rsync", "-a", s.URL(s.AuthModule), dest+"/")
	cmd.Env = append(os.Environ(), "RSYNC_PASSWORD="+s.Password)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rsync pull %s: %v\n%s", s.URL(s.AuthModule), err, out)
	}
	assertSameTree(t, s.Dir, dest)

	// A wrong password is refused.
	cmd = exec.Command("rsync", "-a", s.URL(s.AuthModule), filepath.Join(work, "bad")+"/")
	cmd.Env = append(os.Environ(), "RSYNC_PASSWORD=wrong")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "auth failed") {
		t.Fatalf("wrong password: err %v\n%s", err, out)
	}
}
