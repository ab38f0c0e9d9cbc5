package appliance

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
)

// TestClusterGCDeadInstanceLock: instance b runs a backup and dies (its
// heartbeat stops; its writer lock stays in the shared pool, as after
// kill -9 on another machine). While b beats, GC on instance a is refused
// because of b's lock; once the instance table shows b's heartbeat
// expired, a's GC runs at once (not after the lock's 30 minutes), removes
// the dead lock, and the pool checks clean with the earlier snapshot
// intact. Also: b restarted under the same ID makes its old lock stale at
// once, though b is alive again.
func TestClusterGCDeadInstanceLock(t *testing.T) {
	pg := testenv.Postgres(t)
	dsn := pg.CreateDB(t, "gclock")
	resetFake(t)
	poolDir := filepath.Join(t.TempDir(), "pool")
	key := filepath.Join(t.TempDir(), "secret.key")
	cc := func(id string, jobs int) Config {
		return Config{DB: dsn, Pool: poolDir, SecretKeyFile: key, MaxJobs: 1, GCSchedule: "-", CheckSchedule: "-",
			Cluster: ClusterConfig{Enabled: true, InstanceID: id, InstanceJobs: jobs, Heartbeat: 100 * time.Millisecond,
				LeaseTimeout: 600 * time.Millisecond, Poll: 50 * time.Millisecond}}
	}
	ctx := context.Background()
	a := newEnv(t, cc("a", -1)) // API and pool jobs only: b runs the backups
	b := newEnv(t, cc("b", 1))
	a.addHost("h", nil)
	if j := a.waitJob(a.backup("h").ID); j.State != "done" || j.Instance != "b" {
		t.Fatalf("first backup: %+v", j)
	}
	var snaps []SnapshotBody
	a.must("socket", "GET", "/api/v1/snapshots", nil, &snaps)
	if len(snaps) != 1 {
		t.Fatalf("snapshots %+v", snaps)
	}

	// b's second backup blocks after its first file, holding its lock.
	a.addHost("k", map[string]string{"block": "1"})
	a.backup("k")
	for h := <-fake.started; h != "k"; h = <-fake.started {
	}
	writerLocks := func() map[string]string { // name → owner
		out := map[string]string{}
		a.s.pool.Backend().List(ctx, "locks/writer-", func(oi pool.ObjectInfo) error {
			_, data, err := a.s.pool.GetNamed(ctx, oi.Name)
			var info struct{ Owner string }
			if err == nil && json.Unmarshal(data, &info) == nil {
				out[oi.Name] = info.Owner
			}
			return nil
		})
		return out
	}
	locks := writerLocks()
	if len(locks) != 1 {
		t.Fatalf("writer locks while b backs up: %v", locks)
	}
	var bLock string
	for name, owner := range locks {
		if owner != "b" {
			t.Fatalf("lock %s owned by %q, want b", name, owner)
		}
		bLock = name
	}

	// b alive: GC (a manual job on a) is refused, naming the lock.
	var gj JobBody
	a.must("socket", "POST", "/api/v1/pool/gc", nil, &gj)
	if j := a.waitJob(gj.ID); j.State != catalog.JobFailed || !strings.Contains(j.Error, "a backup is running in another process") ||
		!strings.Contains(j.Error, bLock) || !strings.Contains(j.Error, "backup k/data@") || !strings.Contains(j.Error, "instance b") {
		t.Fatalf("GC while b is alive: %+v", j)
	}

	// b dies: no heartbeat, no cleanup, the lock stays.
	b.s.jobs.cl.cancel()
	b.s.jobs.cl.wg.Wait()
	reg := instanceLocks{a.s.jobs.cl}
	created := time.Now()
	waitFor(t, "b's heartbeat to expire in the instance table", func() bool { return reg.Dead(ctx, "b", created) })
	if reg.Dead(ctx, "a", created) || reg.Dead(ctx, "nobody", created) {
		t.Fatal("a live or unknown instance declared dead")
	}
	a.must("socket", "POST", "/api/v1/pool/gc", nil, &gj)
	if j := a.waitJob(gj.ID); j.State != catalog.JobDone {
		t.Fatalf("GC after b died: %+v", j)
	}
	if l := writerLocks(); len(l) != 0 {
		t.Fatalf("dead instance's lock after GC: %v", l)
	}
	var cj JobBody
	a.must("socket", "POST", "/api/v1/pool/check", CheckParams{ReadData: true}, &cj)
	if j := a.waitJob(cj.ID); j.State != catalog.JobDone {
		t.Fatalf("check after GC: %+v", j)
	}
	w := a.do("socket", "GET", "/api/v1/snapshots/"+snaps[0].ID+"/file/f001.txt", nil)
	if w.Code != 200 || w.Body.String() != "file 1 of h/data seed \n" {
		t.Fatalf("file of the first snapshot after GC: %d %q", w.Code, w.Body)
	}

	// A lock of b taken before b restarted under the same ID is stale at
	// once, though b beats again; one taken after the restart is not.
	old := time.Now()
	b2 := newEnv(t, cc("b", -1))
	reg2 := instanceLocks{b2.s.jobs.cl}
	if !reg.Dead(ctx, "b", old) || reg.Dead(ctx, "b", time.Now()) || !reg2.Dead(ctx, "b", old) {
		t.Fatal("restart under the same ID not told apart from the live process")
	}
}
