package catalog

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// TestLeases runs the leasing and instance cases on SQLite and
// PostgreSQL; TestClaimRace races claimers on PostgreSQL.
func TestLeases(t *testing.T) {
	cases := []struct {
		name string
		fn   func(t *testing.T, db *DB)
	}{
		{"Instances", testInstances},
		{"ClaimOrderLimits", testClaimOrderLimits},
		{"RenewExpire", testRenewExpire},
		{"EndRetryRequeue", testEndRetryRequeue},
		{"Singleton", testSingleton},
		{"ReleaseInstance", testReleaseInstance},
	}
	t.Run("sqlite", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				db, err := Open(ctx, filepath.Join(t.TempDir(), "catalog.db"))
				must(t, err)
				t.Cleanup(func() { db.Close() })
				c.fn(t, db)
			})
		}
	})
	t.Run("postgres", func(t *testing.T) {
		pg := testenv.Postgres(t)
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				db, err := Open(ctx, pg.CreateDB(t, fmt.Sprintf("lease%d", i)))
				must(t, err)
				t.Cleanup(func() { db.Close() })
				c.fn(t, db)
			})
		}
	})
}

var t0 = time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)

func testInstances(t *testing.T, db *DB) {
	a := &Instance{ID: "a", Host: "node1", Addr: "10.0.0.1:8080", Version: "v1", Started: t0, Capacity: 2}
	must(t, db.RegisterInstance(ctx, a))
	must(t, db.RegisterInstance(ctx, &Instance{ID: "b", Host: "node2", Started: t0.Add(time.Second)}))
	must(t, db.InstanceHeartbeat(ctx, "a", t0.Add(5*time.Second), 1, 0.75))
	if err := db.InstanceHeartbeat(ctx, "zz", t0, 0, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("heartbeat of unknown instance: %v", err)
	}
	must(t, db.StopInstance(ctx, "b", t0.Add(10*time.Second)))
	ins, err := db.Instances(ctx)
	must(t, err)
	if len(ins) != 2 || ins[0].ID != "a" || ins[0].Running != 1 || ins[0].Load != 0.75 || ins[0].Capacity != 2 ||
		!ins[0].LastHeartbeat.Equal(t0.Add(5*time.Second)) || ins[0].Addr != "10.0.0.1:8080" || !ins[0].Stopped.IsZero() ||
		ins[1].ID != "b" || !ins[1].Stopped.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("instances: %+v", ins)
	}
	n, err := db.PruneInstances(ctx, t0.Add(11*time.Second))
	must(t, err)
	ins, _ = db.Instances(ctx)
	if n != 2 || len(ins) != 0 {
		t.Fatalf("pruned %d, left %+v", n, ins)
	}
}

func newJob(t *testing.T, db *DB, host string, manual bool) int64 {
	t.Helper()
	j := &Job{Kind: "backup", Host: host, Manual: manual, Params: []byte(`{"sources":["etc"]}`), Created: t0}
	must(t, db.CreateJob(ctx, j))
	return j.ID
}

func claim(t *testing.T, db *DB, inst string, global int, now time.Time) *Job {
	t.Helper()
	j, err := db.ClaimJob(ctx, ClaimSpec{Instance: inst, Kinds: []string{"backup"}, Global: global, Lease: 10 * time.Second, Now: now})
	must(t, err)
	return j
}

func testClaimOrderLimits(t *testing.T, db *DB) {
	a1 := newJob(t, db, "a", false)
	a2 := newJob(t, db, "a", false)
	b1 := newJob(t, db, "b", false)
	c1 := newJob(t, db, "c", true)
	other := &Job{Kind: "restore", Host: "d"}
	must(t, db.CreateJob(ctx, other))
	// Manual first, then by age; host a busy → b next; then the limit.
	j := claim(t, db, "i1", 3, t0)
	if j == nil || j.ID != c1 || j.State != JobRunning || j.Instance != "i1" || j.Attempt != 1 ||
		(db.Driver() == "sqlite" && !j.Started.Equal(t0)) || j.Started.IsZero() {
		t.Fatalf("first claim %+v, want job %d", j, c1)
	}
	if j = claim(t, db, "i2", 3, t0); j == nil || j.ID != a1 {
		t.Fatalf("second claim %+v, want %d", j, a1)
	}
	if j = claim(t, db, "i1", 3, t0); j == nil || j.ID != b1 {
		t.Fatalf("third claim %+v, want %d (a is busy)", j, b1)
	}
	if j = claim(t, db, "i3", 4, t0); j != nil {
		t.Fatalf("claimed %+v while host a runs", j)
	}
	must(t, db.EndLeased(ctx, b1, "i1", JobDone, "", t0))
	if j = claim(t, db, "i3", 3, t0); j != nil {
		t.Fatalf("claimed %+v while host a runs", j)
	}
	must(t, db.EndLeased(ctx, a1, "i2", JobDone, "", t0))
	// Global limit: c1 still runs, limit 1 → nothing.
	if j = claim(t, db, "i3", 1, t0); j != nil {
		t.Fatalf("claimed %+v over the global limit", j)
	}
	if j = claim(t, db, "i3", 2, t0); j == nil || j.ID != a2 {
		t.Fatalf("claim %+v, want %d", j, a2)
	}
	if n, err := db.RunningCount(ctx, "backup"); err != nil || n != 2 {
		t.Fatalf("running %d %v", n, err)
	}
	if j = claim(t, db, "i3", 0, t0); j != nil {
		t.Fatalf("claimed %+v: only a restore is left", j)
	}
}

func testRenewExpire(t *testing.T, db *DB) {
	a := newJob(t, db, "a", true)
	b := newJob(t, db, "b", false)
	claim(t, db, "i1", 0, t0)
	claim(t, db, "i2", 0, t0)
	r := &Job{Kind: "restore", Host: "a", State: JobRunning}
	must(t, db.CreateJob(ctx, r))
	must(t, db.LeaseJob(ctx, r.ID, "i2", t0.Add(10*time.Second)))
	must(t, db.RequestCancel(ctx, a))
	ls, err := db.RenewLeases(ctx, "i1", t0.Add(30*time.Second))
	must(t, err)
	if len(ls) != 1 || ls[0].JobID != a || !ls[0].CancelRequested {
		t.Fatalf("leases of i1: %+v", ls)
	}
	// i2 stops renewing: at t0+20s its two jobs expire, a's does not.
	ex, err := db.ExpireLeases(ctx, t0.Add(20*time.Second), []string{"backup"})
	must(t, err)
	if len(ex) != 2 || ex[0].Job.ID != b || ex[0].Retry == nil || ex[0].Retry.RetryOf != b || ex[0].Job.Instance != "i2" ||
		ex[1].Job.ID != r.ID || ex[1].Retry != nil {
		t.Fatalf("expired %+v", ex)
	}
	jb, _ := db.Job(ctx, b)
	if jb.State != JobInterrupted || jb.Error == "" || !jb.Finished.Equal(t0.Add(20*time.Second)) {
		t.Fatalf("expired job %+v", jb)
	}
	retry, _ := db.Job(ctx, ex[0].Retry.ID)
	if retry.State != JobQueued || retry.Host != "b" || string(retry.Params) != `{"sources":["etc"]}` {
		t.Fatalf("retry %+v", retry)
	}
	if ls, _ := db.RenewLeases(ctx, "i2", t0.Add(40*time.Second)); len(ls) != 0 {
		t.Fatalf("i2 still holds %+v", ls)
	}
	if err := db.EndLeased(ctx, b, "i2", JobDone, "", t0); !errors.Is(err, ErrJobState) {
		t.Fatalf("end of a lost lease: %v", err)
	}
	if ex, _ := db.ExpireLeases(ctx, t0.Add(20*time.Second), []string{"backup"}); len(ex) != 0 {
		t.Fatalf("expired twice: %+v", ex)
	}
}

func testEndRetryRequeue(t *testing.T, db *DB) {
	a := newJob(t, db, "a", false)
	claim(t, db, "i1", 0, t0)
	must(t, db.RetryLeased(ctx, a, "i1", "attempt 1 failed", t0.Add(time.Minute)))
	if j := claim(t, db, "i1", 0, t0.Add(30*time.Second)); j != nil {
		t.Fatalf("claimed before not_before: %+v", j)
	}
	j := claim(t, db, "i2", 0, t0.Add(time.Minute))
	if j == nil || j.ID != a || j.Attempt != 2 || j.Instance != "i2" {
		t.Fatalf("retry claim %+v", j)
	}
	nj, err := db.RequeueLeased(ctx, a, "i2", "interrupted: shutting down", t0.Add(2*time.Minute))
	must(t, err)
	old, _ := db.Job(ctx, a)
	if old.State != JobInterrupted || nj.RetryOf != a || nj.State != JobQueued {
		t.Fatalf("requeue: old %+v new %+v", old, nj)
	}
	j = claim(t, db, "i3", 0, t0.Add(2*time.Minute))
	if j == nil || j.ID != nj.ID {
		t.Fatalf("claim of requeued %+v", j)
	}
	must(t, db.EndLeased(ctx, j.ID, "i3", JobFailed, "boom", t0))
	if j, _ = db.Job(ctx, nj.ID); j.State != JobFailed || j.Error != "boom" {
		t.Fatalf("ended %+v", j)
	}
	must(t, db.InterruptInstance(ctx, "i3", t0))
}

func testSingleton(t *testing.T, db *DB) {
	l, ok, err := db.TryLock(ctx, "gc")
	if err != nil || !ok {
		t.Fatalf("first lock: %v %v", ok, err)
	}
	must(t, l.Held(ctx))
	if db.Driver() == "postgres" {
		if _, ok, err := db.TryLock(ctx, "gc"); err != nil || ok {
			t.Fatalf("second lock granted: %v %v", ok, err)
		}
		if l2, ok, err := db.TryLock(ctx, "check"); err != nil || !ok {
			t.Fatalf("other name: %v %v", ok, err)
		} else {
			l2.Unlock()
		}
	}
	l.Unlock()
	l3, ok, err := db.TryLock(ctx, "gc")
	if err != nil || !ok {
		t.Fatalf("lock after unlock: %v %v", ok, err)
	}
	l3.Unlock()
}

// TestClaimRace: 6 claimers on their own connections race for 40 jobs
// on 10 hosts with a global limit of 4; a monitor in the claim path sees
// never more than 4 running, never two of one host, every job exactly once.
func TestClaimRace(t *testing.T) {
	pg := testenv.Postgres(t)
	dsn := pg.CreateDB(t, "race")
	db, err := Open(ctx, dsn)
	must(t, err)
	defer db.Close()
	for i := range 40 {
		newJob(t, db, fmt.Sprintf("h%d", i%10), false)
	}
	var mu sync.Mutex
	running := map[string]bool{}
	done := map[int64]int{}
	maxRun := 0
	var wg sync.WaitGroup
	errc := make(chan error, 6)
	for w := range 6 {
		wdb, err := Open(ctx, dsn)
		must(t, err)
		defer wdb.Close()
		inst := fmt.Sprintf("i%d", w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j, err := wdb.ClaimJob(ctx, ClaimSpec{Instance: inst, Kinds: []string{"backup"}, Global: 4, Lease: time.Minute, Now: time.Now()})
				if err != nil {
					errc <- err
					return
				}
				if j == nil {
					mu.Lock()
					n := len(done)
					mu.Unlock()
					if n == 40 {
						return
					}
					time.Sleep(time.Millisecond)
					continue
				}
				mu.Lock()
				if running[j.Host] {
					errc <- fmt.Errorf("host %s claimed twice at once", j.Host)
				}
				running[j.Host] = true
				maxRun = max(maxRun, len(running))
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
				mu.Lock()
				delete(running, j.Host)
				done[j.ID]++
				mu.Unlock()
				if err := wdb.EndLeased(ctx, j.ID, inst, JobDone, "", time.Now()); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if maxRun > 4 || len(done) != 40 {
		t.Fatalf("max running %d, done %d", maxRun, len(done))
	}
	for id, n := range done {
		if n != 1 {
			t.Errorf("job %d ran %d times", id, n)
		}
	}
}

// TestClaimFairAndNotify: a busy instance yields to a live idle one with
// room; Notify wakes a listener.
func TestClaimFairAndNotify(t *testing.T) {
	pg := testenv.Postgres(t)
	db, err := Open(ctx, pg.CreateDB(t, "fair"))
	must(t, err)
	defer db.Close()
	now := time.Now()
	for _, id := range []string{"busy", "idle", "full"} {
		must(t, db.RegisterInstance(ctx, &Instance{ID: id, Started: now, Capacity: map[string]int{"busy": 2, "idle": 2, "full": 0}[id]}))
	}
	for _, h := range []string{"a", "b", "c"} {
		newJob(t, db, h, false)
	}
	fair := func(inst string) *Job {
		j, err := db.ClaimJob(ctx, ClaimSpec{Instance: inst, Kinds: []string{"backup"}, Lease: 10 * time.Second, Now: now, Fair: true})
		must(t, err)
		return j
	}
	if j := fair("busy"); j == nil {
		t.Fatal("an instance running nothing must claim")
	}
	if j := fair("busy"); j != nil {
		t.Fatalf("busy claimed %d while idle runs nothing", j.ID)
	}
	if j := fair("idle"); j == nil {
		t.Fatal("idle did not claim")
	}
	if j := fair("busy"); j == nil {
		t.Fatal("busy must claim when nobody runs fewer")
	}
	// An instance whose heartbeat is older than the lease does not count.
	must(t, db.InstanceHeartbeat(ctx, "idle", now.Add(-time.Minute), 0, 0))
	newJob(t, db, "d", false)
	if j := fair("busy"); j == nil {
		t.Fatal("busy yielded to an instance that stopped beating")
	}

	lctx, cancel := context.WithCancel(ctx)
	woke := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() { db.Listen(lctx, func() { woke <- struct{}{} }); close(done) }()
	<-woke // the initial wake once listening
	must(t, db.Notify(ctx))
	select {
	case <-woke:
	case <-time.After(30 * time.Second):
		t.Fatal("Notify did not wake the listener")
	}
	cancel()
	<-done
}

func testReleaseInstance(t *testing.T, db *DB) {
	a := newJob(t, db, "a", false)
	b := newJob(t, db, "b", false)
	c := newJob(t, db, "c", false)
	claim(t, db, "i1", 0, t0)
	claim(t, db, "i1", 0, t0)
	claim(t, db, "i2", 0, t0)
	ex, err := db.ReleaseInstance(ctx, "i1", []int64{a}, t0, []string{"backup"}, "gone")
	must(t, err)
	if len(ex) != 1 || ex[0].Job.ID != a || ex[0].Retry == nil || !strings.HasPrefix(ex[0].Job.Error, "interrupted: gone; job ") {
		t.Fatalf("released %+v", ex)
	}
	if ex, _ := db.ReleaseInstance(ctx, "i1", []int64{}, t0, nil, "x"); len(ex) != 0 {
		t.Fatalf("empty id list released %+v", ex)
	}
	ex, err = db.ReleaseInstance(ctx, "i1", nil, t0, []string{"backup"}, "restarted")
	must(t, err)
	if len(ex) != 1 || ex[0].Job.ID != b {
		t.Fatalf("released %+v, want only %d (%d is i2's)", ex, b, c)
	}
	if j, _ := db.Job(ctx, c); j.State != JobRunning {
		t.Fatalf("i2's job %+v", j)
	}
}
