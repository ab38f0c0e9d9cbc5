package pullertest

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// Config is one protocol's conformance run.
type Config struct {
	// Dir is where the tree is generated (a served directory of the
	// protocol's server); the tree is Dir/scenario.
	Dir string
	// NewPuller makes the puller under test.
	NewPuller func() pullers.Puller
	// SourceFor returns the Source that pulls the local directory dir
	// (Dir/scenario) over the protocol.
	SourceFor func(dir string) pullers.Source
	Caps      Capabilities
	Options   Options
}

// PoolPrevious is a snapshot in a pool as a pullers.Previous.
type PoolPrevious struct {
	Pool *pool.Pool
	Root pool.Digest
}

// Lookup implements pullers.Previous. A path that is not in the snapshot
// is (Entry{}, false, nil).
func (pp PoolPrevious) Lookup(ctx context.Context, rel string) (pool.Entry, bool, error) {
	e, err := pp.Pool.Lookup(ctx, pp.Root, rel)
	if err != nil {
		return pool.Entry{}, false, nil
	}
	return e, true, nil
}

// NewPool makes an empty pool in a temporary directory.
func NewPool(t testing.TB) *pool.Pool {
	t.Helper()
	ctx := context.Background()
	b, err := pool.CreateDirBackend(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.Init(ctx, b, pool.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Pull runs one pull into a new snapshot of p and returns its manifest and
// the last progress report. progress may be nil.
func Pull(t testing.TB, p *pool.Pool, pl pullers.Puller, src pullers.Source, prev pullers.Previous, progress func(pullers.Progress)) (*pool.Manifest, pullers.Progress) {
	t.Helper()
	ctx := context.Background()
	w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: "host", Source: "src"})
	if err != nil {
		t.Fatal(err)
	}
	var last pullers.Progress
	err = pl.Pull(ctx, &pullers.Job{Host: "host", Source: src, Sink: w, Previous: prev, Progress: func(pr pullers.Progress) {
		last = pr
		if progress != nil {
			progress(pr)
		}
	}})
	if err != nil {
		w.Abort()
		t.Fatalf("pullertest: pull %s: %v", src.Method, err)
	}
	m, err := w.Finish(ctx)
	if err != nil {
		t.Fatalf("pullertest: finish snapshot: %v", err)
	}
	return m, last
}

// Run generates the scenario, pulls it twice (the second time
// incrementally) and compares both snapshots with the source. See the
// package documentation.
func Run(t *testing.T, c Config) {
	t.Helper()
	ctx := context.Background()
	s := Generate(t, c.Dir, c.Options)
	src := c.SourceFor(s.Dir)
	p := NewPool(t)

	m1, p1 := Pull(t, p, c.NewPuller(), src, nil, s.OnProgress)
	fired, herr := s.Fired()
	if !fired || herr != nil {
		t.Fatalf("pullertest: the puller never reported %s through Progress.Path, or the hook failed (%v)", TriggerPath, herr)
	}
	t.Logf("first pull: %d files, %d bytes, %d errors; manifest %s, %d errors: %s", p1.Files, p1.Bytes, p1.Errors, m1.Status, m1.ErrorCount, Short(fmt.Sprintf("%q", m1.Errors)))
	if p1.Errors != int64(m1.ErrorCount) {
		t.Errorf("pullertest: progress counted %d errors, the manifest %d", p1.Errors, m1.ErrorCount)
	}
	r1 := Compare(t, s, p.SnapshotFS(ctx, m1), m1, c.Caps)
	if r1.Files < 15 {
		t.Errorf("pullertest: only %d files compared", r1.Files)
	}

	// Incremental: nothing changes now; every non-empty file whose size
	// and mtime match the first snapshot is reused. The changed file may
	// have been stored with its new content (then it is reused too) or
	// failed.
	m2, p2 := Pull(t, p, c.NewPuller(), src, PoolPrevious{p, m1.Root}, nil)
	t.Logf("second pull: %d files, %d skipped, %d errors; %s", p2.Files, p2.Skipped, p2.Errors, Short(fmt.Sprintf("%q", m2.Errors)))
	r2 := CompareStable(t, s, p.SnapshotFS(ctx, m2), m2, c.Caps)
	// Count in the snapshot, not in the comparison: a protocol may show
	// more files (Samba follows symlinks, mangles names).
	nonEmpty := int64(0)
	err := fs.WalkDir(p.SnapshotFS(ctx, m2), ".", func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, ierr := d.Info(); ierr == nil && d.Type().IsRegular() && info.Size() > 0 {
			nonEmpty++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("pullertest: walk the second snapshot: %v", err)
	}
	if int64(r2.NonEmpty) > nonEmpty {
		t.Fatalf("pullertest: compared %d non-empty files, the snapshot has %d", r2.NonEmpty, nonEmpty)
	}
	wantSkip := nonEmpty
	if !r1.Changed {
		wantSkip-- // the changed file was read again
	}
	if p2.Skipped < wantSkip || p2.Skipped > nonEmpty {
		t.Errorf("pullertest: incremental pull skipped %d files, want %d (of %d non-empty)", p2.Skipped, wantSkip, nonEmpty)
	}

	rep, err := p.Check(ctx, pool.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Errorf("pullertest: pool check: %v %s", err, rep.String())
	}
}
