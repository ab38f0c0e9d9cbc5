package appliance

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/images"
	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
)

// TestClusterImageLockDeadInstance: the instance table is the image pool's
// lock registry too. An image pull on instance b blocks image GC on a
// while b lives (the error names instance b); once b has stopped, a's GC
// runs at once, removes b's lock, and b's late commit fails with
// ErrLockLost instead of writing a manifest whose blocks were swept.
func TestClusterImageLockDeadInstance(t *testing.T) {
	pg := testenv.Postgres(t)
	dsn := pg.CreateDB(t, "imagelock")
	poolDir := filepath.Join(t.TempDir(), "pool")
	imgDir := filepath.Join(t.TempDir(), "images")
	key := filepath.Join(t.TempDir(), "secret.key")
	cc := func(id string) Config {
		return Config{DB: dsn, Pool: poolDir, Images: imgDir, SecretKeyFile: key, MaxJobs: 1, GCSchedule: "-", CheckSchedule: "-",
			Cluster: ClusterConfig{Enabled: true, InstanceID: id, InstanceJobs: -1, Heartbeat: 100 * time.Millisecond,
				LeaseTimeout: 600 * time.Millisecond, Poll: 50 * time.Millisecond}}
	}
	ctx := context.Background()
	a := newEnv(t, cc("a"))
	b := newEnv(t, cc("b"))
	as, err := a.s.imageStore(ctx, true) // created after the registry was set
	if err != nil || as == nil {
		t.Fatalf("image store on a: %v", err)
	}
	bs, err := b.s.imageStore(ctx, false)
	if err != nil || bs == nil {
		t.Fatalf("image store on b: %v", err)
	}
	data := []byte(strings.Repeat("cairn image block ", 100))
	w, err := bs.NewVersion(ctx, "vm", int64(len(data)), images.VersionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Put(ctx, 0, data, nil); err != nil {
		t.Fatal(err)
	}

	// b alive: a's image GC is refused, naming b.
	_, err = as.GC(ctx, pool.GCOptions{Grace: -1})
	if !errors.Is(err, images.ErrLocked) || !strings.Contains(err.Error(), "(instance b, host ") {
		t.Fatalf("image gc while b lives: %v", err)
	}

	// b stops (cleanly here; a missed heartbeat counts the same): a's GC
	// proceeds at once and removes b's lock.
	b.s.Close()
	rep, err := as.GC(ctx, pool.GCOptions{Grace: -1})
	if err != nil || rep.StaleLocks != 1 || rep.Swept != 1 {
		t.Fatalf("image gc after b stopped: %+v, %v", rep, err)
	}
	if _, _, err := w.Commit(ctx); !errors.Is(err, images.ErrLockLost) {
		t.Fatalf("b's commit after losing its lock: %v", err)
	}
	if _, err := as.Latest(ctx, "vm"); err == nil {
		t.Fatal("a manifest was written after the lock was lost")
	}
	if crep, err := as.Check(ctx, pool.CheckOptions{ReadData: true}); err != nil || !crep.OK() || crep.Objects != 0 {
		t.Fatalf("image check: %s, %v", crep.String(), err)
	}
}
