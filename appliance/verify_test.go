package appliance

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/schedule"
	"github.com/cairn-backup/cairn/pool"
)

// flipObject flips a byte of a stored object of the appliance's pool.
func (e *testEnv) flipObject(d pool.Digest) {
	e.t.Helper()
	p := filepath.Join(e.dir, "pool", filepath.FromSlash(pool.ObjectName(d)))
	raw, err := os.ReadFile(p)
	if err != nil {
		e.t.Fatal(err)
	}
	raw[len(raw)-2] ^= 0x20
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// metric returns the value of one sample of /metrics, or NaN.
func (e *testEnv) metric(name string, labels ...string) float64 {
	e.t.Helper()
	w := e.do("socket", "GET", "/metrics", nil)
	sel := name
	if len(labels) > 0 {
		var l []string
		for i := 0; i+1 < len(labels); i += 2 {
			l = append(l, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
		}
		sel += "{" + strings.Join(l, ",") + "}"
	}
	re := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(sel) + " (\\S+)$")
	m := re.FindStringSubmatch(w.Body.String())
	if m == nil {
		return math.NaN()
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func TestInSliceCoversTheDigestSpace(t *testing.T) {
	// Successive 25% slices from any cursor cover every point exactly
	// once in four runs, across the wrap-around.
	w := sliceWidth(25)
	for _, start := range []uint64{0, 1 << 63, 0xdeadbeefcafef00d} {
		for _, x := range []uint64{0, 1, start, start - 1, start + w, start + w - 1, math.MaxUint64, 1 << 62} {
			n, from := 0, start
			for range 4 {
				if inSlice(x, from, w) {
					n++
				}
				from += w
			}
			if n != 1 {
				t.Fatalf("start %x: point %x in %d slices", start, x, n)
			}
		}
	}
	if !inSlice(12345, 999, sliceWidth(100)) {
		t.Fatal("100% slice")
	}
}

// TestScheduledCheckRotationFindsCorruption: the scheduled data check
// re-reads a rotating quarter of the pool; the run whose slice holds a
// corrupted object reports it and names the snapshots using it, and four
// runs cover the whole pool.
func TestScheduledCheckRotationFindsCorruption(t *testing.T) {
	resetFake(t)
	releaseFake()
	clock := schedule.NewFakeClock(time.Date(2030, 1, 1, 3, 0, 0, 0, time.Local))
	e := newEnv(t, Config{Clock: clock, GCSchedule: "-", CheckSchedule: "0 4 * * *", CheckPercent: 25})
	e.addHost("h1", map[string]string{"files": "40", "seed": "rot"})
	j := e.waitJob(e.backup("h1").ID)
	if j.State != "done" {
		t.Fatalf("backup: %+v", j)
	}
	snaps, _ := e.s.cat.Snapshots(context.Background(), "h1")
	m, err := e.s.pool.Snapshot(context.Background(), snaps[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	ent, err := e.s.pool.Lookup(context.Background(), m.Root, "f017.txt")
	if err != nil {
		t.Fatal(err)
	}
	e.flipObject(ent.Content)
	point := digestPoint(ent.Content)

	found := -1
	var sums []CheckSummary
	for run := range 4 {
		waitFor(t, fmt.Sprintf("scheduled check %d", run+1), func() bool {
			var checks []JobBody
			e.must("socket", "GET", "/api/v1/jobs?kind=check", nil, &checks)
			n := 0
			for _, c := range checks {
				if c.State == "done" || c.State == "failed" {
					n++
				}
			}
			if n <= run {
				clock.Advance(10 * time.Minute)
			}
			return n == run+1
		})
		var v VerifyBody
		e.must("socket", "GET", "/api/v1/verify", nil, &v)
		sum := *v.Check
		sums = append(sums, sum)
		if math.Abs(sum.SliceFrom-float64(run)*0.25) > 1e-9 {
			t.Fatalf("run %d re-read the slice from %v, want %v", run, sum.SliceFrom, float64(run)*0.25)
		}
		if math.Abs(sum.Coverage-float64(run+1)*0.25) > 1e-9 {
			t.Fatalf("run %d: coverage %v", run, sum.Coverage)
		}
		in := inSlice(point, uint64(sum.SliceFrom*math.Pow(2, 64)), sliceWidth(25))
		if in != (len(sum.Corrupt) == 1) || (found >= 0 && len(sum.Corrupt) > 0) {
			t.Fatalf("run %d (slice %v–%v, object at %v): corrupt %v", run, sum.SliceFrom, sum.SliceTo, fraction(point), sum.Corrupt)
		}
		if in {
			found = run
			want := fmt.Sprintf("h1/data@%s:f017.txt", snaps[0].ID)
			if sum.OK || sum.Corrupt[0] != ent.Content.String() || !slices.Contains(sum.Affected, want) ||
				!slices.Equal(sum.AffectedSnapshots, []string{snaps[0].ID}) {
				t.Fatalf("the check that re-read the object: %+v, want %s", sum, want)
			}
			if v := e.metric("cairn_pool_check_corrupt_objects", "pool", e.s.pool.ID()); v != 1 {
				t.Fatalf("cairn_pool_check_corrupt_objects = %v", v)
			}
			if v := e.metric("cairn_pool_check_affected_snapshots", "pool", e.s.pool.ID()); v != 1 {
				t.Fatalf("cairn_pool_check_affected_snapshots = %v", v)
			}
		}
	}
	if found < 0 {
		t.Fatalf("no run found the corrupt object at %v: %+v", fraction(point), sums)
	}
	if v := e.metric("cairn_pool_check_coverage_ratio", "pool", e.s.pool.ID()); v != 1 {
		t.Fatalf("coverage after four 25%% runs: %v", v)
	}
	t.Logf("object at %.3f of the digest space found by run %d of 4", fraction(point), found+1)
}

// TestRestoreTest: sampled files read through the restore tree match
// their digests; after a file's content is altered in the pool the test
// fails and says which file. The schedule runs it on its own.
func TestRestoreTest(t *testing.T) {
	resetFake(t)
	releaseFake()
	clock := schedule.NewFakeClock(time.Date(2030, 1, 1, 3, 0, 0, 0, time.Local))
	e := newEnv(t, Config{Clock: clock, GCSchedule: "-", CheckSchedule: "-"})
	e.addHost("h1", map[string]string{"files": "20", "seed": "rt"})
	e.addHost("h2", map[string]string{"files": "3", "seed": "rt2"})
	for _, h := range []string{"h1", "h2"} {
		if j := e.waitJob(e.backup(h).ID); j.State != "done" {
			t.Fatalf("backup: %+v", j)
		}
	}
	var res []RestoreTestResult
	e.must("socket", "POST", "/api/v1/verify/restore-test", RestoreTestParams{}, &res)
	if len(res) != 2 || !res[0].OK || res[0].Files != 20 || !res[1].OK || res[1].Files != 3 {
		t.Fatalf("restore tests: %+v", res)
	}
	if v := e.metric("cairn_restore_test_status", "host", "h1"); v != 1 {
		t.Fatalf("cairn_restore_test_status = %v", v)
	}
	// Alter every file's content object of h1 (so the sample hits one).
	snaps, _ := e.s.cat.Snapshots(context.Background(), "h1")
	m, _ := e.s.pool.Snapshot(context.Background(), snaps[0].ID)
	es, _ := e.s.pool.ReadTree(context.Background(), m.Root)
	for _, en := range es {
		if en.Name == "f004.txt" {
			e.flipObject(en.Content)
		}
	}
	// A restart empties the pool's caches, so the next reads hit the disk.
	e.s.Close()
	e = newEnv(t, Config{DataDir: e.dir, Clock: clock, GCSchedule: "-", CheckSchedule: "-"})
	e.must("socket", "POST", "/api/v1/verify/restore-test", RestoreTestParams{Host: "h1", Files: 30}, &res)
	if len(res) != 1 || res[0].OK || res[0].Files != 19 || len(res[0].Errors) != 1 || !strings.Contains(res[0].Errors[0], "f004.txt") {
		t.Fatalf("restore test of altered content: %+v", res)
	}
	t.Logf("restore test error: %s", res[0].Errors[0])
	if v := e.metric("cairn_restore_test_status", "host", "h1"); v != 0 {
		t.Fatalf("cairn_restore_test_status after the alteration = %v", v)
	}
	if v := e.metric("cairn_restore_test_status", "host", "h2"); v != 1 {
		t.Fatalf("h2 restore test status = %v", v)
	}
	// Unknown host, bad schedule.
	if w := e.do("socket", "POST", "/api/v1/verify/restore-test", RestoreTestParams{Host: "nope"}); w.Code != 404 {
		t.Fatalf("unknown host: %d %s", w.Code, w.Body)
	}
	if w := e.do("socket", "PUT", "/api/v1/verify/restore-test/schedule", map[string]string{"schedule": "every day"}); w.Code != 400 {
		t.Fatalf("bad schedule: %d %s", w.Code, w.Body)
	}
	// On a daily schedule the restore test runs as a job by itself.
	e.must("socket", "PUT", "/api/v1/verify/restore-test/schedule", map[string]string{"schedule": "0 5 * * *"}, nil)
	waitFor(t, "the scheduled restore test", func() bool {
		var js []JobBody
		e.must("socket", "GET", "/api/v1/jobs?kind="+restoreTestKind, nil, &js)
		if len(js) == 1 && (js[0].State == "failed" || js[0].State == "done") {
			return true
		}
		clock.Advance(10 * time.Minute)
		return false
	})
	var js []JobBody
	e.must("socket", "GET", "/api/v1/jobs?kind="+restoreTestKind, nil, &js)
	if js[0].State != "failed" || !strings.Contains(js[0].Error, "h1") || strings.Contains(js[0].Error, "h2") {
		t.Fatalf("scheduled restore test job: %+v", js[0])
	}
}

// TestAuditLagAlert: a target that cannot be reached lags more and more;
// past its threshold the audit and the metrics flag the host, while a
// working target is up to date.
func TestAuditLagAlert(t *testing.T) {
	resetFake(t)
	releaseFake()
	clock := schedule.NewFakeClock(time.Date(2030, 1, 1, 3, 0, 0, 0, time.Local))
	e := newEnv(t, Config{Clock: clock, GCSchedule: "-", CheckSchedule: "-"})
	e.must("socket", "POST", "/api/v1/replicas", ReplicaTargetInput{ReplicaTarget: ReplicaTarget{Name: "nas", Kind: KindPool, Retention: ReplicaRetention{Last: 1}},
		Location: filepath.Join(t.TempDir(), "nas")}, nil)
	e.must("socket", "POST", "/api/v1/replicas", ReplicaTargetInput{ReplicaTarget: ReplicaTarget{Name: "down", Kind: KindCairn, LagAlert: "24h"},
		Location: "http://127.0.0.1:1", Token: "cairn_nothing"}, nil)
	e.addHost("h1", map[string]string{"files": "3"})
	var ids []string
	for i := range 2 {
		if i > 0 {
			clock.Advance(time.Hour)
			e.must("socket", "PATCH", "/api/v1/hosts/h1", HostInput{Sources: []SourceInput{{Name: "data", Method: fakeMethod, Path: "/fake",
				Options: map[string]string{"seed": "2"}}}}, nil)
		}
		if j := e.waitJob(e.backup("h1").ID); j.State != "done" {
			t.Fatalf("backup: %+v", j)
		}
		e.waitReplicated("nas", 1)
		snaps, _ := e.s.cat.Snapshots(context.Background(), "h1")
		ids = nil
		for _, sn := range snaps {
			ids = append(ids, sn.ID)
		}
		slices.Sort(ids)
	}
	waitFor(t, "the failed run of down", func() bool {
		st := e.targetStatus("down")
		return !st.Running && st.LastError != ""
	})
	clock.Advance(25 * time.Hour)
	var a AuditBody
	e.must("socket", "GET", "/api/v1/audit", nil, &a)
	if !a.Lagging || len(a.Hosts) != 1 || len(a.Targets) != 2 {
		t.Fatalf("audit: %+v", a)
	}
	byTarget := map[string]AuditHostTarget{}
	for _, ht := range a.Hosts[0].Targets {
		byTarget[ht.Target] = ht
	}
	prim, nas, down := byTarget["primary"], byTarget["nas"], byTarget["down"]
	if !slices.Equal(prim.Snapshots, ids) || prim.NewestComplete != ids[1] {
		t.Fatalf("primary: %+v, want %v", prim, ids)
	}
	if !slices.Equal(nas.Snapshots, ids[1:]) || nas.NewestComplete != ids[1] || nas.Lagging || len(nas.Missing) != 0 || len(nas.Gaps) != 0 {
		t.Fatalf("nas (keep_last 1): %+v", nas)
	}
	if !down.Lagging || !slices.Equal(down.Missing, ids) || down.LagSeconds < 25*3600 {
		t.Fatalf("down: %+v", down)
	}
	for _, at := range a.Targets {
		if at.Name == "down" && (at.Reachable || !strings.Contains(at.Error, "127.0.0.1:1")) {
			t.Fatalf("down target: %+v", at)
		}
	}
	if v := e.metric("cairn_replication_lagging", "target", "down", "host", "h1"); v != 1 {
		t.Fatalf("cairn_replication_lagging{down} = %v", v)
	}
	if v := e.metric("cairn_replication_lagging", "target", "nas", "host", "h1"); v != 0 {
		t.Fatalf("cairn_replication_lagging{nas} = %v", v)
	}
	if v := e.metric("cairn_replication_up", "target", "down"); v != 0 {
		t.Fatalf("cairn_replication_up{down} = %v", v)
	}
	if v := e.metric("cairn_replication_lag_seconds", "target", "down", "host", "h1"); v < 25*3600 {
		t.Fatalf("cairn_replication_lag_seconds{down} = %v", v)
	}
}

// TestRestoreTestSameSecond: two snapshots of a source that started in
// one second appear in the restore tree as <source> and <source>~<id>;
// the restore test reads the newest one, not its twin.
func TestRestoreTestSameSecond(t *testing.T) {
	resetFake(t)
	releaseFake()
	clock := schedule.NewFakeClock(time.Date(2030, 1, 1, 3, 0, 0, 0, time.Local))
	e := newEnv(t, Config{Clock: clock, GCSchedule: "-", CheckSchedule: "-"})
	e.addHost("h1", map[string]string{"files": "4", "seed": "one"})
	for i, seed := range []string{"one", "two"} {
		if i > 0 {
			e.must("socket", "PATCH", "/api/v1/hosts/h1", HostInput{Sources: []SourceInput{{Name: "data", Method: fakeMethod, Path: "/fake",
				Options: map[string]string{"files": "4", "seed": seed}}}}, nil)
		}
		if j := e.waitJob(e.backup("h1").ID); j.State != "done" {
			t.Fatalf("backup: %+v", j)
		}
	}
	var res []RestoreTestResult
	e.must("socket", "POST", "/api/v1/verify/restore-test", RestoreTestParams{Host: "h1"}, &res)
	if len(res) != 1 || !res[0].OK || res[0].Files != 4 {
		t.Fatalf("restore test with two snapshots in one second: %+v", res)
	}
}
