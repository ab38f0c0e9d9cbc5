package appliance

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/internal/testenv"
)

// TestQueueLimitAndHostExclusion: with a global limit of 2, five hosts
// with two manual runs each never have more than 2 pulls at once, never
// two for one host, and all complete.
func TestQueueLimitAndHostExclusion(t *testing.T) {
	resetFake(t)
	e := newEnv(t, Config{MaxJobs: 2})
	var ids []int64
	for i := range 5 {
		h := fmt.Sprintf("h%d", i)
		e.addHost(h, map[string]string{"block": "1"})
		// Two jobs per host: all sources, and the one source by name.
		var one JobBody
		e.must("socket", "POST", "/api/v1/hosts/"+h+"/backup", BackupInput{Sources: []string{"data"}}, &one)
		ids = append(ids, e.backup(h).ID, one.ID)
	}
	<-fake.started
	<-fake.started
	// Two pulls run, eight jobs wait.
	var queued []JobBody
	e.must("socket", "GET", "/api/v1/jobs?state=queued", nil, &queued)
	if len(queued) != 8 {
		t.Fatalf("%d queued jobs, want 8", len(queued))
	}
	// Asking again for a backup that already waits gives that job.
	if again := e.backup("h4"); again.ID != ids[8] {
		t.Fatalf("a duplicate run made job %d; job %d was already waiting", again.ID, ids[8])
	}
	releaseFake()
	for _, id := range ids {
		if j := e.waitJob(id); j.State != "done" {
			t.Fatalf("job %d: %s %s", id, j.State, j.Error)
		}
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if fake.max > 2 || fake.hostDup {
		t.Fatalf("max concurrent pulls %d (limit 2), same host twice: %v", fake.max, fake.hostDup)
	}
	if fake.max != 2 {
		t.Fatalf("max concurrent pulls %d: the limit of 2 was never used", fake.max)
	}
}

// TestCancel: a running job ends cancelled (keeping a partial snapshot of
// what it pulled), a queued one is cancelled at once, a finished one
// cannot be.
func TestCancel(t *testing.T) {
	resetFake(t)
	e := newEnv(t, Config{})
	e.addHost("h", map[string]string{"block": "1"})
	run := e.backup("h")
	queued := e.backup("h")
	<-fake.started
	waitPulled(t, e, run.ID)
	var j JobBody
	e.must("socket", "POST", fmt.Sprintf("/api/v1/jobs/%d/cancel", queued.ID), nil, &j)
	if j.State != "cancelled" {
		t.Fatalf("queued job after cancel: %s", j.State)
	}
	e.must("socket", "POST", fmt.Sprintf("/api/v1/jobs/%d/cancel", run.ID), nil, &j)
	if j.State != "cancelled" {
		t.Fatalf("running job after cancel: %s %s", j.State, j.Error)
	}
	if w := e.do("socket", "POST", fmt.Sprintf("/api/v1/jobs/%d/cancel", run.ID), nil); w.Code != 409 {
		t.Fatalf("cancel of a finished job: %d", w.Code)
	}
	var snaps []SnapshotBody
	e.must("socket", "GET", "/api/v1/snapshots", nil, &snaps)
	if len(snaps) != 1 || snaps[0].Status != "partial" || snaps[0].Files != 1 {
		t.Fatalf("after cancel: snapshots %+v, want one partial with the file pulled", snaps)
	}
	releaseFake()
}

// TestShutdownInterruptsAndRequeues: a job running at shutdown ends
// interrupted, its partial snapshot is kept, and the next start re-queues
// it; the re-run completes and the earlier snapshot is intact.
func TestShutdownInterruptsAndRequeues(t *testing.T) {
	resetFake(t)
	dir := t.TempDir()
	e := newEnv(t, Config{DataDir: dir})
	e.addHost("h", map[string]string{"block": "1"})
	j := e.backup("h")
	<-fake.started
	waitPulled(t, e, j.ID)
	e.s.Close()
	e2 := newEnv(t, Config{DataDir: dir})
	releaseFake()
	old, err := e2.s.cat.Job(context.Background(), j.ID)
	if err != nil || old.State != catalog.JobInterrupted {
		t.Fatalf("job after shutdown: %+v %v", old, err)
	}
	var jobs []JobBody
	waitFor(t, "the re-queued job to finish", func() bool {
		e2.must("socket", "GET", "/api/v1/jobs?host=h", nil, &jobs)
		return len(jobs) == 2 && jobs[0].State == "done"
	})
	if jobs[0].RetryOf != j.ID {
		t.Fatalf("re-run %+v does not name %d", jobs[0], j.ID)
	}
	var snaps []SnapshotBody
	e2.must("socket", "GET", "/api/v1/snapshots", nil, &snaps)
	if len(snaps) != 2 || snaps[0].Status != "partial" || snaps[1].Status != "complete" || snaps[1].Files != 3 {
		t.Fatalf("snapshots %+v: want the partial one, then a complete one", snaps)
	}
	// The partial snapshot is still readable.
	w := e2.do("socket", "GET", "/api/v1/snapshots/"+snaps[0].ID+"/file/f000.txt", nil)
	if w.Code != 200 || w.Body.String() != "file 0 of h/data seed \n" {
		t.Fatalf("partial snapshot file: %d %q", w.Code, w.Body)
	}
	// A third start re-queues nothing more.
	e2.s.Close()
	e3 := newEnv(t, Config{DataDir: dir})
	e3.must("socket", "GET", "/api/v1/jobs", nil, &jobs)
	if len(jobs) != 2 {
		t.Fatalf("jobs after a clean restart: %+v", jobs)
	}
}

// TestSecretsNeverLeak: credentials are stored encrypted, never returned
// by the API, and scrubbed from errors, job logs and the server log.
func TestSecretsNeverLeak(t *testing.T) {
	resetFake(t)
	releaseFake()
	e := newEnv(t, Config{})
	const pw = "s3cr3t-Pa55word-xyz"
	name := "h"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{{
		Name: "data", Method: fakeMethod, Path: "/x", Options: map[string]string{"fail": "login refused for"},
		Secret: map[string]string{"password": pw, "user": "backup"}}}}, nil)
	j := e.waitJob(e.backup("h").ID)
	if j.State != "failed" || !strings.Contains(j.Error, "login refused for ***") {
		t.Fatalf("job %s: %q", j.State, j.Error)
	}
	var bodies []string
	for _, p := range []string{"/api/v1/hosts", "/api/v1/hosts/h", fmt.Sprintf("/api/v1/jobs/%d", j.ID), "/api/v1/jobs"} {
		w := e.do("socket", "GET", p, nil)
		if w.Code != 200 {
			t.Fatalf("GET %s: %d", p, w.Code)
		}
		bodies = append(bodies, w.Body.String())
	}
	if !strings.Contains(bodies[1], `"secret_keys": [`) || !strings.Contains(bodies[1], `"password"`) {
		t.Fatalf("host does not list its secret keys: %s", bodies[1])
	}
	w := e.do("socket", "GET", "/metrics", nil)
	bodies = append(bodies, w.Body.String(), e.logs.String())
	for i, b := range bodies {
		if strings.Contains(b, pw) {
			t.Errorf("body %d contains the password: %s", i, b)
		}
	}
	// At rest: the catalog files hold no plaintext.
	e.s.Close()
	ms, _ := filepath.Glob(filepath.Join(e.dir, "catalog.db*"))
	if len(ms) == 0 {
		t.Fatal("no catalog files")
	}
	for _, f := range ms {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), pw) {
			t.Errorf("%s contains the password in plaintext", f)
		}
	}
	fi, err := os.Stat(filepath.Join(e.dir, "secret.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret.key: %v %v", fi.Mode(), err)
	}
}

// TestMissingCredential: a method that needs a credential refuses a
// source without it, and nothing is stored.
func TestMissingCredential(t *testing.T) {
	e := newEnv(t, Config{})
	name := "h"
	w := e.do("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{{
		Name: "d", Method: "apptest-needs-secret", Path: "/x"}}})
	if w.Code != 400 || !strings.Contains(w.Body.String(), `needs the credential \"password\"`) {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if w := e.do("socket", "GET", "/api/v1/hosts/h", nil); w.Code != 404 {
		t.Fatalf("host stored despite the error: %d", w.Code)
	}
}

// TestRetentionAfterBackup: keep-last 2 leaves the two newest snapshots
// after three backups; the preview says so first.
func TestRetentionAfterBackup(t *testing.T) {
	resetFake(t)
	releaseFake()
	e := newEnv(t, Config{})
	e.addHost("h", nil)
	for range 3 {
		if j := e.waitJob(e.backup("h").ID); j.State != "done" {
			t.Fatalf("backup: %+v", j)
		}
	}
	var plan RetentionPlan
	e.must("socket", "GET", "/api/v1/hosts/h/retention", nil, &plan)
	if plan.Policy != "keep everything" || len(plan.Sources["data"].Keep) != 3 {
		t.Fatalf("plan without policy: %+v", plan)
	}
	two := 2
	_ = two
	e.must("socket", "PATCH", "/api/v1/hosts/h", HostInput{Retention: &RetentionBody{Last: 2}}, nil)
	e.must("socket", "GET", "/api/v1/hosts/h/retention", nil, &plan)
	if len(plan.Sources["data"].Keep) != 2 || len(plan.Sources["data"].Remove) != 1 {
		t.Fatalf("preview with keep-last 2: %+v", plan.Sources["data"])
	}
	doomed := plan.Sources["data"].Remove[0].ID
	if j := e.waitJob(e.backup("h").ID); j.State != "done" {
		t.Fatalf("backup: %+v", j)
	}
	var snaps []SnapshotBody
	e.must("socket", "GET", "/api/v1/snapshots", nil, &snaps)
	if len(snaps) != 2 {
		t.Fatalf("after retention: %d snapshots", len(snaps))
	}
	for _, s := range snaps {
		if s.ID == doomed {
			t.Fatalf("snapshot %s survived retention", doomed)
		}
	}
	if _, err := e.s.pool.Snapshot(context.Background(), doomed); err == nil {
		t.Fatalf("manifest of %s still in the pool", doomed)
	}
}

// TestMetrics: after a good and a failed backup, /metrics says so in the
// Prometheus text format.
func TestMetrics(t *testing.T) {
	resetFake(t)
	releaseFake()
	e := newEnv(t, Config{})
	e.addHost("good", nil)
	e.addHost("bad", map[string]string{"fail": "boom"})
	e.waitJob(e.backup("good").ID)
	e.waitJob(e.backup("bad").ID)
	w := e.do("socket", "GET", "/metrics", nil)
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("/metrics: %d %s", w.Code, w.Header())
	}
	body := w.Body.String()
	for _, re := range []string{
		`(?m)^cairn_backup_last_success\{host="good",source="data"\} 1$`,
		`(?m)^cairn_backup_last_success\{host="bad",source="data"\} 0$`,
		`(?m)^cairn_backup_last_success_timestamp_seconds\{host="good",source="data"\} 1\d{9}(\.\d+)?$`,
		`(?m)^cairn_backup_last_success_timestamp_seconds\{host="bad",source="data"\} 0$`,
		`(?m)^cairn_backup_last_files\{host="good",source="data"\} [1-9]\d*$`,
		`(?m)^cairn_backup_last_bytes\{host="good",source="data"\} [1-9]\d*$`,
		`(?m)^cairn_jobs_queued 0$`,
		`(?m)^cairn_jobs_running 0$`,
		`(?m)^cairn_pool_objects\{pool="[0-9a-f-]{36}"\} [1-9]\d*$`,
		`(?m)^cairn_pool_bytes\{pool="[0-9a-f-]{36}"\} [1-9]\d*$`,
		`(?m)^# TYPE cairn_backup_last_success gauge$`,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("/metrics lacks %s", re)
		}
	}
	// Every sample line is "name{labels} value" or "name value".
	line := regexp.MustCompile(`^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+$`)
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if l := sc.Text(); !strings.HasPrefix(l, "# ") && !line.MatchString(l) {
			t.Errorf("malformed metrics line %q", l)
		}
	}
	// The same metrics as a node-exporter textfile.
	tf := filepath.Join(t.TempDir(), "cairn.prom")
	if err := e.s.writeTextfile(context.Background(), tf); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(tf); err != nil || !strings.Contains(string(b), `cairn_backup_last_success{host="good",source="data"} 1`) {
		t.Fatalf("textfile: %v\n%s", err, b)
	}
	// A pool check adds its result.
	var j JobBody
	e.must("socket", "POST", "/api/v1/pool/check", CheckParams{ReadData: true}, &j)
	if j = e.waitJob(j.ID); j.State != "done" {
		t.Fatalf("check: %+v", j)
	}
	if body := e.do("socket", "GET", "/metrics", nil).Body.String(); !strings.Contains(body, "cairn_pool_check_success{") {
		t.Fatalf("no check result in metrics:\n%s", body)
	}
}

// TestEventsStream: the SSE stream carries job state and progress.
func TestEventsStream(t *testing.T) {
	resetFake(t)
	releaseFake()
	e := newEnv(t, Config{})
	e.addHost("h", nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(context.WithValue(r.Context(), peerKey, peer{unix: true, uid: 0}))
		e.s.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, ":") {
		t.Fatalf("first line %q %v", l, err)
	}
	j := e.backup("h")
	seen := map[string]bool{}
	for !seen[`"state":"done"`] {
		l, err := br.ReadString('\n')
		if err == io.EOF {
			t.Fatal("stream ended")
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(l, "data: ") {
			continue
		}
		if !strings.Contains(l, fmt.Sprintf(`"job_id":%d`, j.ID)) {
			continue
		}
		for _, k := range []string{`"type":"progress"`, `"type":"log"`, `"type":"snapshot"`, `"state":"running"`, `"state":"done"`} {
			if strings.Contains(l, k) {
				seen[k] = true
			}
		}
	}
	for _, k := range []string{`"type":"progress"`, `"type":"log"`, `"type":"snapshot"`, `"state":"running"`} {
		if !seen[k] {
			t.Errorf("no %s event", k)
		}
	}
}

// TestRestoreTargets: restores never overwrite, and operators restore
// only below DATA/restores.
func TestRestoreTargets(t *testing.T) {
	resetFake(t)
	releaseFake()
	e := newEnv(t, Config{})
	op := e.user("op", "operator")
	e.addHost("h", nil)
	e.waitJob(e.backup("h").ID)
	elsewhere := filepath.Join(t.TempDir(), "x")
	w := e.do(op, "POST", "/api/v1/restores", RestoreInput{Host: "h", Snapshot: "latest", Source: "data", To: elsewhere})
	if w.Code != 403 {
		t.Fatalf("operator restoring to %s: %d %s", elsewhere, w.Code, w.Body)
	}
	to := filepath.Join(e.dir, "restores", "one")
	var j JobBody
	e.must(op, "POST", "/api/v1/restores", RestoreInput{Host: "h", Snapshot: "latest", Source: "data", To: to}, &j)
	if j = e.waitJob(j.ID); j.State != "done" {
		t.Fatalf("restore: %+v", j)
	}
	b, err := os.ReadFile(filepath.Join(to, "f002.txt"))
	if err != nil || string(b) != "file 2 of h/data seed \n" {
		t.Fatalf("restored file: %q %v", b, err)
	}
	// A symlink below DATA/restores does not lead an operator out.
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(e.dir, "restores", "link")); err != nil {
		t.Fatal(err)
	}
	w = e.do(op, "POST", "/api/v1/restores", RestoreInput{Host: "h", Snapshot: "latest", Source: "data",
		To: filepath.Join(e.dir, "restores", "link", "x")})
	if w.Code != 403 || !strings.Contains(w.Body.String(), "symlink") {
		t.Fatalf("operator restoring through a symlink: %d %s", w.Code, w.Body)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("restore wrote outside: %v", ents)
	}
	w = e.do("socket", "POST", "/api/v1/restores", RestoreInput{Host: "h", Snapshot: "latest", Source: "data", To: to})
	if w.Code != 400 || !strings.Contains(w.Body.String(), "not empty") {
		t.Fatalf("restore onto a non-empty dir: %d %s", w.Code, w.Body)
	}
	for _, bad := range []RestoreInput{
		{Host: "h", Snapshot: "latest", Source: "data", To: "relative"},
		{Host: "h", Snapshot: "latest", Source: "data", Path: "../etc", To: elsewhere},
		{Host: "h", Snapshot: "latest", Source: "nosuch", To: elsewhere},
	} {
		if w := e.do("socket", "POST", "/api/v1/restores", bad); w.Code < 400 || w.Code >= 500 {
			t.Errorf("restore %+v: %d %s", bad, w.Code, w.Body)
		}
	}
}

// waitPulled waits until a running job has stored its first file.
func waitPulled(t *testing.T, e *testEnv, id int64) {
	t.Helper()
	waitFor(t, "the first file to be pulled", func() bool {
		p, ok := e.s.jobs.live(id)
		return ok && p.Files >= 1
	})
}

// TestInstancesSingle: a single-instance appliance (SQLite) lists itself;
// cluster mode refuses SQLite with the reason.
func TestInstancesSingle(t *testing.T) {
	e := newEnv(t, Config{MaxJobs: 3})
	var ins []InstanceBody
	e.must("socket", "GET", "/api/v1/instances", nil, &ins)
	if len(ins) != 1 || !ins[0].Self || ins[0].State != "up" || ins[0].Capacity != 3 || ins[0].Version != "dev" {
		t.Fatalf("instances: %+v", ins)
	}
	_, err := New(context.Background(), Config{DataDir: t.TempDir(), Cluster: ClusterConfig{Enabled: true}})
	if err == nil || !strings.Contains(err.Error(), "cluster mode needs the catalog on PostgreSQL") {
		t.Fatalf("cluster mode on SQLite: %v", err)
	}
	_, err = New(context.Background(), Config{DataDir: t.TempDir(), Cluster: ClusterConfig{Heartbeat: time.Second, LeaseTimeout: 2 * time.Second}})
	if err == nil || !strings.Contains(err.Error(), "at least 3 heartbeats") {
		t.Fatalf("lease shorter than 3 heartbeats: %v", err)
	}
}

// TestClusterLeaseLost: two instances in cluster mode on one PostgreSQL
// catalog and one pool. Instance a claims a backup and then stops
// renewing (its heartbeat ends, the job still runs, as in a network
// partition); b expires the lease, re-queues the job and runs it; a's late
// end is ignored and a stops the job it no longer holds.
func TestClusterLeaseLost(t *testing.T) {
	pg := testenv.Postgres(t)
	dsn := pg.CreateDB(t, "cluster")
	resetFake(t)
	poolDir := filepath.Join(t.TempDir(), "pool")
	key := filepath.Join(t.TempDir(), "secret.key")
	cc := func(id string, jobs int) Config {
		return Config{DB: dsn, Pool: poolDir, SecretKeyFile: key, MaxJobs: 1, GCSchedule: "-", CheckSchedule: "-",
			Cluster: ClusterConfig{Enabled: true, InstanceID: id, InstanceJobs: jobs, Heartbeat: 100 * time.Millisecond,
				LeaseTimeout: 600 * time.Millisecond, Poll: 50 * time.Millisecond}}
	}
	a := newEnv(t, cc("a", 1))
	a.addHost("h", map[string]string{"block": "1"})
	j := a.backup("h")
	<-fake.started
	cat := a.s.Catalog()
	if got, _ := cat.Job(context.Background(), j.ID); got.Instance != "a" || got.State != catalog.JobRunning {
		t.Fatalf("job %+v, want running on a", got)
	}
	a.s.jobs.cl.cancel() // a stops beating; its job goes on
	a.s.jobs.cl.wg.Wait()
	b := newEnv(t, cc("b", 1))
	var retry *catalog.Job
	waitFor(t, "the re-queued job done on b", func() bool {
		js, _ := cat.Jobs(context.Background(), catalog.JobFilter{Kind: "backup"})
		for i := range js {
			if js[i].RetryOf == j.ID && js[i].State == catalog.JobDone {
				retry = &js[i]
				return true
			}
		}
		// b's pull of the retry blocks too: let it through.
		select {
		case h := <-fake.started:
			if h == "h" {
				releaseFake()
			}
		default:
		}
		return false
	})
	orig, _ := cat.Job(context.Background(), j.ID)
	if orig.State != catalog.JobInterrupted || !strings.Contains(orig.Error, "instance a stopped renewing") ||
		!strings.Contains(orig.Error, fmt.Sprintf("job %d re-runs it", retry.ID)) || retry.Instance != "b" {
		t.Fatalf("original %+v, retry %+v", orig, retry)
	}
	// a's pull was released too; its end must not overwrite the record.
	waitFor(t, "a's job to end", func() bool { return a.s.jobs.runningCount() == 0 })
	if again, _ := cat.Job(context.Background(), j.ID); again.State != catalog.JobInterrupted || again.Error != orig.Error {
		t.Fatalf("a's late end changed the record: %+v", again)
	}
	var jb JobBody
	b.must("socket", "GET", fmt.Sprintf("/api/v1/jobs/%d", retry.ID), nil, &jb)
	if jb.Instance != "b" || jb.RetryOf != j.ID {
		t.Fatalf("job API of the retry: %+v", jb)
	}
	var ins []InstanceBody
	b.must("socket", "GET", "/api/v1/instances", nil, &ins)
	states := map[string]string{}
	for _, in := range ins {
		states[in.ID] = in.State
	}
	if states["a"] != "lost" || states["b"] != "up" {
		t.Fatalf("instance states %v", states)
	}
	snaps, _ := cat.Snapshots(context.Background(), "h")
	if len(snaps) == 0 {
		t.Fatal("no snapshot of h after the re-run")
	}
}

// TestClusterRestartSameID: an instance killed while it ran a job and
// started again under the same --instance-id does not renew the dead
// process's lease forever: it re-queues the job at start and runs it.
func TestClusterRestartSameID(t *testing.T) {
	pg := testenv.Postgres(t)
	dsn := pg.CreateDB(t, "restart")
	resetFake(t)
	poolDir := filepath.Join(t.TempDir(), "pool")
	key := filepath.Join(t.TempDir(), "secret.key")
	cfg := Config{DB: dsn, Pool: poolDir, SecretKeyFile: key, MaxJobs: 1, GCSchedule: "-", CheckSchedule: "-",
		Cluster: ClusterConfig{Enabled: true, InstanceID: "a", Heartbeat: 100 * time.Millisecond,
			LeaseTimeout: time.Minute, Poll: 50 * time.Millisecond}}
	old := newEnv(t, cfg)
	old.addHost("h", map[string]string{"block": "1"})
	j := old.backup("h")
	<-fake.started
	old.s.jobs.cl.cancel() // the old process "dies": no heartbeat, no cleanup
	old.s.jobs.cl.wg.Wait()
	neu := newEnv(t, cfg) // same ID, lease (1 min) not run out
	cat := neu.s.Catalog()
	orig, _ := cat.Job(context.Background(), j.ID)
	if orig.State != catalog.JobInterrupted || !strings.Contains(orig.Error, "instance a restarted while it ran") {
		t.Fatalf("job of the dead process: %+v", orig)
	}
	releaseFake() // the old pull and the re-run go on; the old one's end is ignored
	waitFor(t, "the re-run done", func() bool {
		js, _ := cat.Jobs(context.Background(), catalog.JobFilter{Kind: "backup"})
		for _, x := range js {
			if x.RetryOf == j.ID && x.State == catalog.JobDone && x.Instance == "a" {
				return true
			}
		}
		return false
	})
	waitFor(t, "the old pull to end", func() bool { return old.s.jobs.runningCount() == 0 })
	if again, _ := cat.Job(context.Background(), j.ID); again.State != catalog.JobInterrupted {
		t.Fatalf("the dead process's late end changed its job: %+v", again)
	}
}
