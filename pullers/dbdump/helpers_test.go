package dbdump

import (
	"context"
	"io"
	"os"
	"path/filepath"
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

func newPool(t testing.TB) *pool.Pool {
	t.Helper()
	b, err := pool.CreateDirBackend(filepath.Join(t.TempDir(), "pool"))
	must(t, err)
	p, err := pool.Init(context.Background(), b, pool.InitOptions{})
	must(t, err)
	return p
}

// pull runs one pull into a new snapshot; on a pull error the writer is
// aborted (as the appliance does) and the error returned.
func pull(t testing.TB, p *pool.Pool, pl pullers.Puller, src pullers.Source) (*pool.Manifest, error) {
	t.Helper()
	ctx := context.Background()
	w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: "db", Source: "dumps"})
	must(t, err)
	if err := pl.Pull(ctx, &pullers.Job{Host: "127.0.0.1", Source: src, Sink: w}); err != nil {
		w.Abort()
		return nil, err
	}
	m, err := w.Finish(ctx)
	must(t, err)
	return m, nil
}

// readFile returns one file of a snapshot.
func readFile(t testing.TB, p *pool.Pool, m *pool.Manifest, name string) []byte {
	t.Helper()
	f, err := p.SnapshotFS(context.Background(), m).Open(name)
	must(t, err)
	defer f.Close()
	b, err := io.ReadAll(f)
	must(t, err)
	return b
}

func names(t testing.TB, p *pool.Pool, m *pool.Manifest) []string {
	t.Helper()
	ents, err := p.SnapshotFS(context.Background(), m).(interface {
		ReadDir(string) ([]os.DirEntry, error)
	}).ReadDir(".")
	must(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func poolMeta() pool.SnapshotMeta { return pool.SnapshotMeta{Host: "db", Source: "dumps"} }
