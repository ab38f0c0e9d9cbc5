package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLockRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "packages.lock")
	want := map[string]string{"rsync": "3.2.7-1+deb12u2", "linux-image-amd64": "6.1.158-1", "zstd": "1.5.4+dfsg2-5"}
	if err := writeLock(p, want); err != nil {
		t.Fatal(err)
	}
	got, err := readLock(p)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffLock(want, got); d != "" || len(got) != 3 {
		t.Fatalf("round trip: %v\n%s", got, d)
	}
	b, _ := os.ReadFile(p)
	if !strings.HasPrefix(string(b), "#") || !strings.Contains(string(b), "\nlinux-image-amd64=6.1.158-1\nrsync=") {
		t.Errorf("lock file not sorted with a header:\n%s", b)
	}
	if lockKey(want, false) != lockKey(got, false) || lockKey(want, false) == lockKey(map[string]string{"rsync": "x"}, false) {
		t.Error("lock key does not follow the content")
	}
	got["rsync"] = "3.2.7-1"
	delete(got, "zstd")
	got["extra"] = "1"
	d := diffLock(want, got)
	for _, s := range []string{"rsync: locked 3.2.7-1+deb12u2, installed 3.2.7-1", "zstd: locked 1.5.4+dfsg2-5, not installed", "extra: installed 1, not in the lock"} {
		if !strings.Contains(d, s) {
			t.Errorf("diff lacks %q:\n%s", s, d)
		}
	}
	os.WriteFile(p, []byte("rsync 3.2\n"), 0o644)
	if _, err := readLock(p); err == nil || !strings.Contains(err.Error(), ":1: want name=version") {
		t.Errorf("bad line: %v", err)
	}
}

func TestCheckStatic(t *testing.T) {
	dir := t.TempDir()
	txt := filepath.Join(dir, "script")
	os.WriteFile(txt, []byte("#!/bin/sh\n"), 0o755)
	if err := checkStatic(txt); err == nil {
		t.Error("a script passed")
	}
	if err := checkStatic(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("missing binary: %v", err)
	}
	// /bin/sh is dynamically linked on Debian.
	if err := checkStatic("/bin/sh"); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("/bin/sh: %v", err)
	}
}
