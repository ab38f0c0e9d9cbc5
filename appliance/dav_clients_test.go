package appliance

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// TestDAVCadaver lists the share and gets a file with cadaver, logging in
// from a netrc in a temporary HOME.
func TestDAVCadaver(t *testing.T) {
	testenv.Need(t, "cadaver")
	re := newRestoreEnv(t)
	u, _ := url.Parse(re.srv.URL)
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".netrc"),
		[]byte("machine "+u.Hostname()+" login alice password alice-secret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := filepath.Join(t.TempDir(), "got.bin")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "cadaver", re.srv.URL+"/dav/www/latest/files/")
	cmd.Env = append(os.Environ(), "HOME="+home)
	cmd.Dir = home
	cmd.Stdin = strings.NewReader("ls\ncd sub\nls\nget b.bin " + got + "\nquit\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cadaver: %v\n%s", err, out)
	}
	for _, want := range []string{"a.txt", "sub", "b.bin", "deep"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("cadaver listing lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(got)
	if err != nil {
		t.Fatalf("cadaver get: %v\n%s", err, out)
	}
	if sha(b) != re.sums["sub/b.bin"] {
		t.Fatalf("cadaver get sub/b.bin: sha %s want %s", sha(b), re.sums["sub/b.bin"])
	}
	// The hidden host is not there for cadaver either.
	cmd = exec.CommandContext(ctx, "cadaver", re.srv.URL+"/dav/")
	cmd.Env = append(os.Environ(), "HOME="+home)
	cmd.Dir = home
	cmd.Stdin = strings.NewReader("ls\nquit\n")
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "www") || strings.Contains(string(out), "pg") {
		t.Fatalf("cadaver ls /dav/: %v, want www and no pg:\n%s", err, out)
	}
}

// TestDAVDavfs2 mounts the share with the davfs2 kernel client: files read
// correctly; directory listings fail on this kernel (issue 8), and the test
// says so loudly the day they start working.
func TestDAVDavfs2(t *testing.T) {
	testenv.Need(t, "cadaver", "mount.davfs")
	testenv.NeedRoot(t, "mount -t davfs needs root")
	re := newRestoreEnv(t)
	tmp := t.TempDir()
	// The cache stays in davfs2's default (/var/cache/davfs2): mount.davfs
	// drops to the davfs2 user, who cannot enter a 0700 test directory.
	mnt := filepath.Join(tmp, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	secrets, conf := filepath.Join(tmp, "secrets"), filepath.Join(tmp, "davfs2.conf")
	if err := os.WriteFile(secrets, []byte(mnt+" alice alice-secret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("secrets "+secrets+"\nuse_locks 0\nask_auth 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mount", "-t", "davfs", "-o", "ro,conf="+conf, re.srv.URL+"/dav/", mnt)
	cmd.Stdin = nil
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mount -t davfs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
			exec.Command("umount", "-l", mnt).Run()
		}
	})

	for name, want := range re.sums {
		b, err := os.ReadFile(filepath.Join(mnt, "www", "latest", "files", filepath.FromSlash(name)))
		if err != nil || sha(b) != want {
			t.Fatalf("davfs2 read %s: %v, sha %s want %s", name, err, sha(b), want)
		}
	}
	if _, err := os.Stat(filepath.Join(mnt, "pg")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("davfs2 stat of the hidden host: %v, want not exist", err)
	}

	// Known failure (issue 8): with davfs2 1.6.1 on this kernel,
	// getdents64 with a buffer of 32 KiB or more (glibc's readdir, so ls and
	// file managers) fails with EINVAL; buffers up to 16 KiB work, and so
	// does Go's os.ReadDir (8 KiB). Measured: 1, 4, 8, 16 KiB list; 32 and
	// 64 KiB give EINVAL.
	dir := filepath.Join(mnt, "www", "latest", "files")
	ents, err := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if err != nil || strings.Join(names, ",") != "a.txt,sub" {
		t.Fatalf("davfs2 listing with Go's small getdents64 buffer: %v %v, want [a.txt sub]: davfs2 listings changed: update this test and the docs", names, err)
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := syscall.Getdents(int(f.Fd()), make([]byte, 32<<10))
	if err == nil {
		t.Fatalf("davfs2 listings now work (getdents64 with a 32 KiB buffer returned %d bytes): update this test and the docs (issue 8)", n)
	}
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("davfs2 getdents64 (32 KiB) failed differently than known (want EINVAL): %v: update this test and the docs", err)
	}
	out, err := exec.Command("ls", dir).CombinedOutput()
	if err == nil {
		t.Fatalf("davfs2 listings now work (ls %s: %q): update this test and the docs (issue 8)", dir, out)
	}
	if !strings.Contains(string(out), "Invalid argument") {
		t.Fatalf("ls on davfs2 failed differently than known (want Invalid argument): %v %s: update this test and the docs", err, out)
	}
}

// TestDAVTraversal: encoded dot-dots, encoded slashes, overlong UTF-8 and
// backslashes never leave the tree and never reveal a hidden host: a
// trick aimed at the hidden host answers exactly as the same trick aimed
// at a host that does not exist.
func TestDAVTraversal(t *testing.T) {
	re := newRestoreEnv(t)
	u, _ := url.Parse(re.srv.URL)
	raw := func(auth, p string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest("GET", re.srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL = &url.URL{Scheme: "http", Host: u.Host, Opaque: p}
		user, pw, _ := strings.Cut(auth, ":")
		req.SetBasicAuth(user, pw)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	pgData := []byte("of pg/data")
	hiddenTricks := []string{
		"/dav/%2e%2e/dav/HOST/latest/data/f000.txt",
		"/dav/www/%2e%2e/HOST/latest/data/f000.txt",
		"/dav/www/..%2fHOST/latest/data/f000.txt",
		"/dav/www%2f..%2fHOST/latest/data/f000.txt",
		"/dav/www/latest/files/%2e%2e%2f%2e%2e%2f%2e%2e%2fHOST/latest/data/f000.txt",
		"/dav/www/%c0%ae%c0%ae/HOST/latest/data/f000.txt",
		"/dav/www/%c0%ae%c0%ae%c0%afHOST/latest/data/f000.txt",
		"/dav/www/%e0%80%ae%e0%80%ae/HOST/latest/data/f000.txt",
		`/dav/www\..\HOST\latest\data\f000.txt`,
		"/dav/www/%5c..%5cHOST/latest/data/f000.txt",
		"/dav/HOST%2flatest%2fdata%2ff000.txt",
		"/dav/HOST/latest/data/f000.txt",
		"/dav/./HOST/latest/data/f000.txt",
		"/dav//HOST/latest/data/f000.txt",
	}
	for _, trick := range hiddenTricks {
		hidden := strings.ReplaceAll(trick, "HOST", "pg")
		code, body := raw("alice:alice-secret-pw", hidden)
		if bytes.Contains(body, pgData) || (code >= 200 && code < 400) {
			t.Errorf("alice GET %s: %d, revealed the hidden host:\n%.300s", hidden, code, body)
			continue
		}
		if code != http.StatusNotFound && code != http.StatusBadRequest {
			t.Errorf("alice GET %s: %d, want 404 (or 400)", hidden, code)
		}
		if ncode, nbody := raw("alice:alice-secret-pw", strings.ReplaceAll(trick, "HOST", "nosuchhost")); ncode != code ||
			!bytes.Equal(nbody, bytes.ReplaceAll(body, []byte("pg"), []byte("nosuchhost"))) {
			t.Errorf("%s: hidden host answers %d %q, missing host %d %q: names leak", trick, code, body, ncode, nbody)
		}
	}
	passwd, _ := os.ReadFile("/etc/passwd")
	for _, p := range []string{
		"/dav/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
		"/dav/www/latest/files/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
		"/dav/www/latest/files/..%5c..%5c..%5c..%5c..%5c..%5cetc%5cpasswd",
		"/dav/www/latest/files/%c0%ae%c0%ae/%c0%ae%c0%ae/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
		"/dav/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
		`/dav/..\..\..\..\..\etc\passwd`,
	} {
		for _, who := range []string{"alice:alice-secret-pw", "boss:boss-secret-pw"} {
			code, body := raw(who, p)
			if code >= 200 && code < 300 || bytes.Contains(body, []byte("root:x:0:0")) || (len(passwd) > 0 && bytes.Equal(body, passwd)) {
				t.Errorf("%s GET %s: %d, escaped the tree:\n%.300s", who, p, code, body)
			}
		}
	}
	// Dot-dots that stay inside the visible tree may resolve, but only to
	// what the plain path gives.
	code, body := raw("alice:alice-secret-pw", "/dav/www/latest/files/sub/%2e%2e/a.txt")
	if code == http.StatusOK && sha(body) != re.sums["a.txt"] {
		t.Errorf("sub/%%2e%%2e/a.txt: wrong content")
	}
}
