package torture

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestFuzzCorporaCommitted: every fuzz target of the module (found by its
// `func FuzzXxx` line, as internal/torture/fuzz.sh finds them) has a
// committed seed corpus in its package's testdata/fuzz/FuzzXxx, so `go
// test` replays it and `make torture` starts from it.
func TestFuzzCorporaCommitted(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^func (Fuzz\w+)\(`)
	n := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || filepath.Ext(p) != ".go" || !regexp.MustCompile(`_test\.go$`).MatchString(p) {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			m := re.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			n++
			dir := filepath.Join(filepath.Dir(p), "testdata", "fuzz", m[1])
			ents, err := os.ReadDir(dir)
			rel, _ := filepath.Rel(root, dir)
			if err != nil || len(ents) == 0 {
				t.Errorf("%s has no committed seed corpus in %s", m[1], rel)
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("only %d fuzz targets found", n)
	}
	t.Logf("%d fuzz targets, each with a committed corpus", n)
}
