package pool

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestTreeLookup(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	src := t.TempDir()
	for name, body := range map[string]string{
		"a.txt": "top", "d/b.txt": "in d", "d/e/c.txt": "deep", "z/y.txt": "last",
	} {
		path := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := backupDir(t, ctx, p, src, "h", "s")
	tl := p.NewTreeLookup(m.Root)
	cases := []struct {
		path string
		size int64 // -1: not found; 0: a directory
	}{
		{"a.txt", 3}, {"d", 0}, {"d/b.txt", 4}, {"d/e/c.txt", 4}, {"d/nope", -1},
		{"nope/x", -1}, {"nope/y", -1}, {"a.txt/x", -1}, {"d/e", 0}, {"z/y.txt", 4}, {"a.txt", 3},
	}
	check := func(t *testing.T) {
		for _, c := range cases {
			e, ok, err := tl.Lookup(ctx, c.path)
			if err != nil {
				t.Fatalf("Lookup(%q): %v", c.path, err)
			}
			switch {
			case c.size < 0 && ok:
				t.Errorf("Lookup(%q) found %+v", c.path, e)
			case c.size < 0:
			case !ok:
				t.Errorf("Lookup(%q) not found", c.path)
			case c.size == 0 && e.Type != TypeDir, c.size > 0 && (e.Type != TypeFile || e.Size != c.size):
				t.Errorf("Lookup(%q) = %v size %d", c.path, e.Type, e.Size)
			}
		}
	}
	check(t)
	// Concurrent pullers share one lookup (run under -race).
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); check(t) }()
	}
	wg.Wait()
	e, _, _ := tl.Lookup(ctx, "d/e/c.txt")
	r, err := tl.OpenContent(ctx, &e)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, _ := r.Read(buf)
	if string(buf[:n]) != "deep" {
		t.Fatalf("OpenContent read %q", buf[:n])
	}
}
