package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestField(t *testing.T) {
	r := &result{Samples: []sample{{Wall: 3 * time.Second}, {Wall: time.Second}, {Wall: 2 * time.Second}}}
	got, ok := field(r, fWall)
	if !ok || got != (stat{2, 1, 3}) {
		t.Fatalf("field = %+v, %v", got, ok)
	}
	r.Samples = r.Samples[:2]
	if got, _ := field(r, fWall); got.med != 2 {
		t.Fatalf("even median = %v, want 2", got.med)
	}
	if _, ok := field(&result{}, fWall); ok {
		t.Fatal("empty result has a field")
	}
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	mt := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(full, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCompareTreesAndDu(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	files := map[string]string{"x": "hello", "d/y": "world!", "d/e/z": ""}
	writeTree(t, a, files)
	writeTree(t, b, files)
	if n, err := compareTrees(a, b); err != nil || n != 3 {
		t.Fatalf("identical trees: %d, %v", n, err)
	}
	if app, _, n, err := du(a); err != nil || app != 11 || n != 3 {
		t.Fatalf("du = %d bytes, %d files, %v; want 11, 3", app, n, err)
	}
	writeTree(t, b, map[string]string{"d/y": "World!"})
	if _, err := compareTrees(a, b); !errors.Is(err, errMismatch) {
		t.Fatalf("changed byte: %v", err)
	}
	writeTree(t, b, map[string]string{"d/y": "world!", "extra": "1"})
	if _, err := compareTrees(a, b); !errors.Is(err, errMismatch) {
		t.Fatalf("extra file: %v", err)
	}
}

func TestMeasure(t *testing.T) {
	if _, err := os.Stat(timeBin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing: %v", timeBin, err)
		}
		t.Skipf("%s missing", timeBin)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "log")
	s, err := measure(context.Background(), exec.Command(sh, "-c", "echo done"), log)
	if err != nil {
		t.Fatal(err)
	}
	// The peak RSS is sh's own (a few MB), not this test binary's: the
	// reason measure goes through GNU time.
	if s.Wall <= 0 || s.CPU < 0 || s.MaxRSS <= 0 || s.MaxRSS > 32<<20 {
		t.Fatalf("sample = %+v", s)
	}
	out, _ := os.ReadFile(log)
	if !strings.Contains(string(out), "done") {
		t.Fatalf("log lacks output: %q", out)
	}
	if _, err := measure(context.Background(), exec.Command(sh, "-c", "echo boom; exit 3"), log); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("failing command: %v", err)
	}
}
