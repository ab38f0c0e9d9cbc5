package ftp

import (
	"context"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

func TestMain(m *testing.M) {
	testenv.KillLeftovers()
	os.Exit(m.Run())
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type poolPrev struct {
	p    *pool.Pool
	root pool.Digest
}

func (pp poolPrev) Lookup(ctx context.Context, rel string) (pool.Entry, bool, error) {
	e, err := pp.p.Lookup(ctx, pp.root, rel)
	if err != nil {
		return pool.Entry{}, false, nil
	}
	return e, true, nil
}

func newPool(t testing.TB) *pool.Pool {
	t.Helper()
	b, err := pool.CreateDirBackend(filepath.Join(t.TempDir(), "pool"))
	must(t, err)
	p, err := pool.Init(context.Background(), b, pool.InitOptions{})
	must(t, err)
	return p
}

// pull runs one pull into a new snapshot of p and returns its manifest,
// the final progress and the job (whose Options may have learned a
// fingerprint).
func pull(t testing.TB, p *pool.Pool, pl *Puller, src pullers.Source, prev *pool.Manifest) (*pool.Manifest, pullers.Progress, *pullers.Job, error) {
	t.Helper()
	ctx := context.Background()
	w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: "h", Source: "s"})
	must(t, err)
	j := &pullers.Job{Host: "127.0.0.1", Source: src, Sink: w}
	if prev != nil {
		j.Previous = poolPrev{p, prev.Root}
	}
	var last pullers.Progress
	j.Progress = func(pr pullers.Progress) { last = pr }
	if err := pl.Pull(ctx, j); err != nil {
		w.Abort()
		return nil, last, j, err
	}
	m, err := w.Finish(ctx)
	must(t, err)
	return m, last, j, nil
}

// treeOf reads a snapshot back as path -> content ("<dir>" for
// directories, "-> target" for symlinks).
func treeOf(t testing.TB, p *pool.Pool, m *pool.Manifest) map[string]string {
	t.Helper()
	out := map[string]string{}
	fsys := p.SnapshotFS(context.Background(), m)
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == "." {
			return nil
		}
		switch {
		case d.IsDir():
			out[path] = "<dir>"
		case d.Type()&fs.ModeSymlink != 0:
			tg, err := fs.ReadLink(fsys, path)
			if err != nil {
				return err
			}
			out[path] = "-> " + tg
		default:
			f, err := fsys.Open(path)
			if err != nil {
				return err
			}
			b, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				return err
			}
			out[path] = string(b)
		}
		return nil
	})
	must(t, err)
	return out
}

func keys(m map[string]string) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}

func errorsContain(m *pool.Manifest, path, substr string) bool {
	for _, e := range m.Errors {
		if strings.HasPrefix(e, path+": ") && strings.Contains(e, substr) {
			return true
		}
	}
	return false
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
