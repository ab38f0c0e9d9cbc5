package hostiletest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// world is what one hostile pull may touch: a pool in base/pool, and
// around it a canary directory and files that must come out unchanged.
type world struct {
	base   string
	pool   *pool.Pool
	before map[string]string // path under base (outside pool/) → digest
	cwd    map[string]bool   // names in the working directory
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{base: t.TempDir()}
	for name, data := range map[string]string{"canary/passwd": "root:x:0:0\n", "canary/sub/keep": "keep\n", "escape": "outside\n", "etc/shadow": "secret\n"} {
		p := filepath.Join(w.base, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := pool.CreateDirBackend(filepath.Join(w.base, "pool"))
	if err != nil {
		t.Fatal(err)
	}
	if w.pool, err = pool.Init(context.Background(), b, pool.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	w.before = w.around(t)
	w.cwd = names(t, ".")
	return w
}

// around digests every file, dir and link under base but outside the
// pool.
func (w *world) around(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(w.base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(w.base, p)
		if rel == "pool" {
			return filepath.SkipDir
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "link " + target
		case d.IsDir():
			out[rel] = "dir"
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("%x", sha256.Sum256(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func names(t *testing.T, dir string) map[string]bool {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range es {
		out[e.Name()] = true
	}
	return out
}

// pull runs pl into a new snapshot; a failed pull aborts the writer and
// commits nothing.
func (w *world) pull(t *testing.T, pl pullers.Puller, src pullers.Source) (*pool.Manifest, error) {
	t.Helper()
	ctx := context.Background()
	wr, err := w.pool.NewWriter(ctx, pool.SnapshotMeta{Host: "hostile", Source: src.Name})
	if err != nil {
		t.Fatal(err)
	}
	err = pl.Pull(ctx, &pullers.Job{Host: "hostile", Source: src, Sink: wr})
	if err != nil {
		wr.Abort()
		return nil, err
	}
	m, err := wr.Finish(ctx)
	if err != nil {
		t.Fatalf("finish the snapshot: %v", err)
	}
	return m, nil
}

// check asserts the promises that hold whatever the pull did: nothing
// around the pool changed, no new file in the working directory, no
// marker anywhere a run command would leave it, and the pool passes a
// full check.
func (w *world) check(t *testing.T) {
	t.Helper()
	after := w.around(t)
	for p, d := range w.before {
		if after[p] != d {
			t.Errorf("%s changed outside the pool", p)
		}
	}
	for p := range after {
		if _, ok := w.before[p]; !ok {
			t.Errorf("%s appeared outside the pool", p)
		}
	}
	for n := range names(t, ".") {
		if !w.cwd[n] {
			t.Errorf("%s appeared in the working directory", n)
		}
	}
	for _, dir := range []string{".", w.base, os.TempDir(), filepath.Dir(w.base)} {
		if _, err := os.Lstat(filepath.Join(dir, Marker)); err == nil {
			t.Fatalf("%s exists in %s: something the server sent was run", Marker, dir)
		}
	}
	rep, err := w.pool.Check(context.Background(), pool.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatalf("pool check: %v", err)
	}
	if !rep.OK() {
		t.Errorf("pool check: %s", rep.String())
	}
}

// tree lists every path of a snapshot with its entry.
func (w *world) tree(t *testing.T, m *pool.Manifest) map[string]pool.Entry {
	t.Helper()
	return snapshotTree(t, w.pool, m)
}

// content reads a stored file.
func (w *world) content(t *testing.T, e pool.Entry) string {
	t.Helper()
	cr, err := w.pool.OpenContent(context.Background(), &e)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(io.NewSectionReader(cr, 0, e.Size))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// noEvil asserts that no stored file holds content served only under a
// name that must have been refused.
func (w *world) noEvil(t *testing.T, tree map[string]pool.Entry) {
	t.Helper()
	for name, e := range tree {
		if e.Type == pool.TypeFile && strings.HasPrefix(w.content(t, e), "EVIL") {
			t.Errorf("%q stored from a name that should have been refused", name)
		}
	}
}

// errorOn reports whether m has a per-file error on path containing substr.
func errorOn(m *pool.Manifest, path, substr string) bool {
	for _, e := range m.Errors {
		if strings.HasPrefix(e, path+": ") && strings.Contains(e, substr) {
			return true
		}
	}
	return false
}

// heap samples the heap in use at points the servers choose (every N
// lines or entries sent), so the peak is measured the same way on a fast
// and a slow machine.
type heap struct {
	mu         sync.Mutex
	base, peak uint64
	samples    int
	last       int // the last count a server passed
}

func newHeap() *heap {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return &heap{base: ms.HeapInuse, peak: ms.HeapInuse}
}

func (h *heap) sample(n int) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h.mu.Lock()
	h.peak = max(h.peak, ms.HeapInuse)
	h.samples++
	h.last = max(h.last, n)
	h.mu.Unlock()
}

// count is the highest count a server passed to sample.
func (h *heap) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// growth is the peak heap in use over the base, in bytes.
func (h *heap) growth() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return int64(h.peak) - int64(h.base)
}

// honest are the files of the hostile trees that must be stored byte for
// byte, whatever their names say.
var honest = map[string]string{"ok.txt": "fine\n", "sub/deep.txt": "deep\n", "-rf": "dash\n",
	"$(touch " + Marker + ")": "subst\n", "`touch " + Marker + "`": "backticks\n", "; touch " + Marker + " #": "semicolon\n"}

// links are the links of the hostile trees, with their targets.
var links = map[string]string{"out": "/etc", "up": "../../../../..", "loop/self": ".", "loop/parent": "..", "sub/back": "../.."}

// checkTree asserts the honest files, that no refused content was stored,
// and that links are stored as links and never followed.
func (w *world) checkTree(t *testing.T, tree map[string]pool.Entry) {
	t.Helper()
	for name, want := range honest {
		e, ok := tree[name]
		if !ok {
			t.Errorf("%s missing from the snapshot", name)
			continue
		}
		if got := w.content(t, e); got != want {
			t.Errorf("%s holds %q, want %q", name, got, want)
		}
	}
	w.noEvil(t, tree)
	for name, target := range links {
		if e, ok := tree[name]; !ok || e.Type != pool.TypeSymlink || e.Target != target {
			t.Errorf("%s: %+v, want a symlink to %q", name, tree[name], target)
		}
	}
	for name := range tree {
		for link := range links {
			if strings.HasPrefix(name, link+"/") {
				t.Errorf("followed a link: %s", name)
			}
		}
	}
}
