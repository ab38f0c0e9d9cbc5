package appliance

import (
	"bytes"
	"context"
	"testing"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/pool"
)

// TestAdoptCheckpoints: a checkpoint manifest the catalog missed (the
// process died before indexing it) is indexed as partial by the re-run
// of its job, and only that job's checkpoints are.
func TestAdoptCheckpoints(t *testing.T) {
	e := newEnv(t, Config{})
	e.addHost("web1", nil)
	ctx := context.Background()
	mk := func(job string) *pool.Manifest {
		w, err := e.s.pool.NewWriter(ctx, pool.SnapshotMeta{Host: "web1", Source: "data", Labels: map[string]string{"job": job}})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Add(ctx, ".", pool.Entry{Type: pool.TypeDir, Mode: 0o755}, nil); err != nil {
			t.Fatal(err)
		}
		if err := w.Add(ctx, "f", pool.Entry{Type: pool.TypeFile, Mode: 0o644, Size: 3}, bytes.NewReader([]byte("abc"))); err != nil {
			t.Fatal(err)
		}
		m, err := w.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return m // the writer is left as a killed process leaves it
	}
	mine, other := mk("77"), mk("12")
	jc := &jobCtx{s: e.s, job: catalog.Job{ID: 78, RetryOf: 77, Host: "web1"}}
	e.s.adoptCheckpoints(ctx, jc, "web1", "data")
	got, err := e.s.cat.Snapshot(ctx, mine.ID)
	if err != nil || got.Status != catalog.SnapshotPartial || got.JobID != 77 || got.Files != 1 {
		t.Fatalf("adopted checkpoint: %+v %v", got, err)
	}
	if _, err := e.s.cat.Snapshot(ctx, other.ID); err == nil {
		t.Fatal("another job's checkpoint was adopted")
	}
	last, err := e.s.cat.LastSnapshot(ctx, "web1", "data", false)
	if err != nil || last.ID != mine.ID {
		t.Fatalf("basis of the re-run: %+v %v", last, err)
	}
}
