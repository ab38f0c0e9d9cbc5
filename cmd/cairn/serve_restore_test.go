package main

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cairn-backup/cairn/fusefs"
	"github.com/cairn-backup/cairn/internal/testenv"
)

// srcFileSums returns the sha256 of every regular file under root by
// slash path.
func srcFileSums(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(root, p)
			out[filepath.ToSlash(rel)] = fileSum(t, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestServeRestoreDoors runs the real binary: `cairn serve --mount`, a
// local-method backup through the CLI, the files read back through the
// FUSE mount and through the WebDAV share with rclone (Basic auth as a
// user made with `cairn user add`), then SIGTERM and the mount is gone.
func TestServeRestoreDoors(t *testing.T) {
	testenv.Need(t, "fusermount3", "rclone")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("FUSE mount and socket-admin tests need root here")
		}
		t.Skip("needs root (FUSE, socket admin)")
	}
	tmp := t.TempDir()
	src, data, mnt := filepath.Join(tmp, "src"), filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	makeTree(t, src)
	want := srcFileSums(t, src)
	if len(want) == 0 {
		t.Fatal("empty source tree")
	}
	p := startServe(t, data, "--mount", mnt)
	if ok, err := fusefs.Mounted(mnt); err != nil || !ok {
		t.Fatalf("%s not mounted after start (%v):\n%s", mnt, err, p.stderr)
	}
	mustCLI(t, data, "host", "add", "web1", "--method", "local", "--path", src, "--source", "files")
	mustCLI(t, data, "backup", "run", "web1", "--wait")

	// FUSE: the new snapshot appears without a remount.
	base := filepath.Join(mnt, "web1", "latest", "files")
	waitFor(t, "the snapshot in the mount", func() bool {
		_, err := os.Stat(base)
		return err == nil
	})
	for name, sum := range want {
		if got := fileSum(t, filepath.Join(base, filepath.FromSlash(name))); got != sum {
			t.Fatalf("mount %s: sha %s, want %s", name, got, sum)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "new"), []byte("x"), 0o644); err == nil {
		t.Fatal("write into the mount succeeded")
	}

	// WebDAV with a real client, as a user with a password.
	pwFile := filepath.Join(tmp, "pw")
	if err := os.WriteFile(pwFile, []byte("dav-user-password-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, data, "user", "add", "davuser", "--role", "operator", "--password-file", pwFile)
	obscured, err := exec.Command("rclone", "obscure", "dav-user-password-1").Output()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", "/dev/null", "--webdav-url", "http://" + p.addr + "/dav/",
		"--webdav-user", "davuser", "--webdav-pass", strings.TrimSpace(string(obscured))}
	out, err := exec.Command("rclone", append([]string{"lsf"}, append(args, ":webdav:")...)...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "web1/" {
		t.Fatalf("rclone lsf: %v %q", err, out)
	}
	dst := filepath.Join(tmp, "dav-copy")
	out, err = exec.Command("rclone", append([]string{"copy"}, append(args, ":webdav:web1/latest/files", dst)...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rclone copy: %v\n%s", err, out)
	}
	got := srcFileSums(t, dst)
	for name, sum := range want {
		if got[name] != sum {
			t.Fatalf("rclone copy %s: sha %s, want %s", name, got[name], sum)
		}
	}
	// Without credentials: 401.
	out, err = exec.Command("rclone", "--config", "/dev/null", "--webdav-url", "http://"+p.addr+"/dav/", "lsf", ":webdav:").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "401") {
		t.Fatalf("rclone without credentials: %v %s", err, out)
	}

	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exit %d:\n%s", code, p.stderr)
	}
	if ok, err := fusefs.Mounted(mnt); err != nil || ok {
		t.Fatalf("%s still mounted after SIGTERM (%v):\n%s", mnt, err, p.stderr)
	}
}

// TestServeMountClearsStale: a serve killed with SIGKILL leaves a dead
// FUSE mount; the next `cairn serve --mount` clears it and mounts again.
func TestServeMountClearsStale(t *testing.T) {
	testenv.Need(t, "fusermount3")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("FUSE mount tests need root here")
		}
		t.Skip("needs root (FUSE)")
	}
	tmp := t.TempDir()
	src, data, mnt := filepath.Join(tmp, "src"), filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	makeTree(t, src)
	want := srcFileSums(t, src)
	p := startServe(t, data, "--mount", mnt)
	mustCLI(t, data, "host", "add", "web1", "--method", "local", "--path", src, "--source", "files")
	mustCLI(t, data, "backup", "run", "web1", "--wait")
	p.stop(syscall.SIGKILL)
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	if ok, _ := fusefs.Mounted(mnt); !ok {
		t.Fatal("no mount left behind by SIGKILL; the test proves nothing")
	}
	if _, err := os.ReadDir(mnt); err == nil {
		t.Fatal("the dead mount still answers")
	}
	p = startServe(t, data, "--mount", mnt)
	base := filepath.Join(mnt, "web1", "latest", "files")
	for name, sum := range want {
		if got := fileSum(t, filepath.Join(base, filepath.FromSlash(name))); got != sum {
			t.Fatalf("mount after restart %s: sha %s, want %s", name, got, sum)
		}
	}
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exit %d:\n%s", code, p.stderr)
	}
	if ok, err := fusefs.Mounted(mnt); err != nil || ok {
		t.Fatalf("%s still mounted after SIGTERM (%v)", mnt, err)
	}
}
