package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/internal/testenv"
	_ "github.com/jackc/pgx/v5/stdlib"
)

// fleet is several `cairn serve --cluster` processes of the real binary on
// one PostgreSQL catalog and one S3 pool, configured by one shared file.
type fleet struct {
	t       *testing.T
	tmp     string
	dsn     string
	poolLoc string
	s3env   []string
	conf    string
	cat     *catalog.DB
	lease   time.Duration
	procs   map[string]*serveProc
	data    map[string]string
}

func newFleet(t *testing.T) *fleet {
	testenv.NeedRoot(t, "the unix socket grants admin to root; run as root")
	pg := testenv.Postgres(t)
	s3 := testenv.S3(t)
	f := &fleet{t: t, tmp: t.TempDir(), dsn: pg.CreateDB(t, "fleet"), lease: 2 * time.Second,
		procs: map[string]*serveProc{}, data: map[string]string{}}
	f.poolLoc = fmt.Sprintf("s3://%s/%s/pool?insecure=1&region=%s", s3.Endpoint, s3.Bucket, s3.Region)
	f.s3env = []string{"CAIRN_S3_ACCESS_KEY=" + s3.AccessKey, "CAIRN_S3_SECRET_KEY=" + s3.SecretKey}
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i * 7)
	}
	keyFile := filepath.Join(f.tmp, "secret.key")
	if err := os.WriteFile(keyFile, []byte(fmt.Sprintf("%x\n", key)), 0o600); err != nil {
		t.Fatal(err)
	}
	f.conf = filepath.Join(f.tmp, "cairn.env")
	conf := strings.Join([]string{
		"# shared by every instance of the fleet",
		"CAIRN_DB=" + f.dsn,
		"CAIRN_POOL=" + f.poolLoc,
		"CAIRN_S3_ACCESS_KEY=" + s3.AccessKey,
		"CAIRN_S3_SECRET_KEY='" + s3.SecretKey + "'",
		"CAIRN_SECRET_KEY_FILE=" + keyFile,
		"CAIRN_CLUSTER=true",
		"CAIRN_MAX_JOBS=4",
		"CAIRN_INSTANCE_JOBS=2",
		"CAIRN_HEARTBEAT=250ms",
		"CAIRN_LEASE_TIMEOUT=" + f.lease.String(),
		"CAIRN_POLL=200ms",
		"CAIRN_GC_SCHEDULE=-",
		"CAIRN_CHECK_SCHEDULE=-",
	}, "\n") + "\n"
	if err := os.WriteFile(f.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// A config file with secrets readable by others is refused.
	p := startServeNoWait(t, filepath.Join(f.tmp, "refused"), "--config", f.conf)
	<-p.done
	if p.cmd.ProcessState.ExitCode() == 0 || !strings.Contains(p.stderr.String(), "chmod 600") {
		t.Fatalf("world-readable config with secrets: exit %d, %s", p.cmd.ProcessState.ExitCode(), p.stderr)
	}
	if strings.Contains(p.stderr.String(), s3.SecretKey) {
		t.Fatal("the S3 secret appears in the error output")
	}
	os.Chmod(f.conf, 0o600)
	var err error
	if f.cat, err = catalog.Open(context.Background(), f.dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.cat.Close() })
	return f
}

// start starts (or restarts) instance name with its own data dir.
func (f *fleet) start(name string, extra ...string) *serveProc {
	f.t.Helper()
	if f.data[name] == "" {
		f.data[name] = filepath.Join(f.tmp, "data-"+name)
	}
	args := append([]string{"--config", f.conf, "--instance-id", name}, extra...)
	p := startServe(f.t, f.data[name], args...)
	f.procs[name] = p
	return p
}

// api calls instance name's API over its unix socket (root is admin).
func (f *fleet) api(name, method, path string, in, out any) {
	f.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, "http://cairn"+path, body)
	req.Header.Set("Content-Type", "application/json")
	resp, err := unixClient(filepath.Join(f.data[name], "cairn.sock")).Do(req)
	if err != nil {
		f.t.Fatalf("%s %s on %s: %v", method, path, name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		f.t.Fatalf("%s %s on %s: %s: %s", method, path, name, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			f.t.Fatalf("%s %s on %s: %v in %s", method, path, name, err, b)
		}
	}
}

func (f *fleet) cli(name string, args ...string) string {
	f.t.Helper()
	return mustCLI(f.t, f.data[name], args...)
}

// poolCLI runs a direct pool verb on the shared S3 pool.
func (f *fleet) poolCLI(args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cairnBin, append(args, "--pool", f.poolLoc)...)
	cmd.Env = append(os.Environ(), append(f.s3env, "CAIRN_PROGRESS=none", "CAIRN_POOL=")...)
	var out, errb lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Run()
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// waitJobs waits until pred holds for the backup jobs in the catalog.
func (f *fleet) waitJobs(what string, timeout time.Duration, pred func([]catalog.Job) bool) []catalog.Job {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		js, err := f.cat.Jobs(context.Background(), catalog.JobFilter{Kind: "backup"})
		if err != nil {
			f.t.Fatal(err)
		}
		if pred(js) {
			return js
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, j := range js {
				fmt.Fprintf(&b, "  job %d %s %s on %q: %s\n", j.ID, j.Host, j.State, j.Instance, j.Error)
			}
			for name, p := range f.procs {
				log := p.stderr.String()
				if len(log) > 3000 {
					log = log[len(log)-3000:]
				}
				f.t.Logf("instance %s log tail:\n%s", name, log)
			}
			f.t.Fatalf("%s: not within %s; backup jobs:\n%s", what, timeout, &b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeSource fills dir with n unique random files of size bytes.
func writeSource(t *testing.T, dir string, seed uint64, n, size int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	buf := make([]byte, size)
	for i := range n {
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d.bin", i)), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestScaleOut is issue 13's fleet: three `cairn serve --cluster`
// processes on one PostgreSQL catalog and one S3 pool, configured by one
// file (b with a local staging cache in front of S3). 30 hosts scheduled at once under a global limit of 4; a restore
// served by an instance that did not take the backup; GC on one instance
// while the others back up; kill -9 of an instance mid-backup.
func TestScaleOut(t *testing.T) {
	f := newFleet(t)
	f.start("a")
	f.start("b", "--staging", filepath.Join(f.tmp, "stage-b")) // b writes through a local staging cache
	f.start("c")
	ctx := context.Background()

	// Instances register and list each other.
	var ins []struct {
		ID, State string
		Self      bool
		Capacity  int
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.api("b", "GET", "/api/v1/instances", nil, &ins)
		up := 0
		for _, in := range ins {
			if in.State == "up" && in.Capacity == 2 {
				up++
			}
		}
		if up == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(ins) != 3 || ins[0].ID != "a" || ins[1].ID != "b" || !ins[1].Self || ins[2].ID != "c" {
		t.Fatalf("instances: %+v", ins)
	}
	if out := f.cli("c", "instance", "ls"); !strings.Contains(out, "c *") || !strings.Contains(out, "a ") || !strings.Contains(out, "up") {
		t.Fatalf("instance ls:\n%s", out)
	}

	// Maintenance mode switched on one instance holds on all of them.
	f.api("a", "PUT", "/api/v1/maintenance", map[string]any{"on": true, "reason": "fleet test"}, nil)
	for _, n := range []string{"b", "c"} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			var m struct {
				On     bool
				Reason string
			}
			f.api(n, "GET", "/api/v1/maintenance", nil, &m)
			if m.On && m.Reason == "fleet test" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("maintenance mode on a not seen by %s: %+v", n, m)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	f.api("c", "PUT", "/api/v1/maintenance", map[string]any{"on": false}, nil)

	t.Log("30 hosts scheduled at once, global limit 4")
	srcs := map[string]string{}
	for i := range 30 {
		name := fmt.Sprintf("h%02d", i)
		srcs[name] = filepath.Join(f.tmp, "src", name)
		writeSource(t, srcs[name], uint64(i), 8, 96<<10)
		f.cli([]string{"a", "b", "c"}[i%3], "host", "add", name, "--method", "local", "--path", srcs[name],
			"--source", "files", "--schedule", "0 3 1 1 *")
	}
	// One statement makes every schedule overdue at once: the scheduler
	// (on whichever instance leads) catches them all up together.
	raw, err := sql.Open("pgx", f.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec("UPDATE schedules SET last_run = $1", time.Now().AddDate(-2, 0, 0).UnixNano()); err != nil {
		t.Fatal(err)
	}
	var maxRunning int
	stopSample := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if n, err := f.cat.RunningCount(ctx, "backup"); err == nil {
				maxRunning = max(maxRunning, n)
			}
			select {
			case <-stopSample:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	js := f.waitJobs("30 scheduled backups done", 2*time.Minute, func(js []catalog.Job) bool {
		done := 0
		for _, j := range js {
			if j.State == catalog.JobDone {
				done++
			}
		}
		return done >= 30
	})
	close(stopSample)
	<-sampled
	perInst := map[string]int{}
	hosts := map[string]bool{}
	type ev struct {
		t     time.Time
		delta int
	}
	var evs []ev
	for _, j := range js {
		if j.State != catalog.JobDone || j.Manual {
			t.Fatalf("job %d (%s) %s manual=%v: %s", j.ID, j.Host, j.State, j.Manual, j.Error)
		}
		perInst[j.Instance]++
		hosts[j.Host] = true
		evs = append(evs, ev{j.Started, 1}, ev{j.Finished, -1})
	}
	slices.SortFunc(evs, func(a, b ev) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return a.delta - b.delta // an end before a start at the same instant
	})
	overlap, maxOverlap := 0, 0
	for _, e := range evs {
		overlap += e.delta
		maxOverlap = max(maxOverlap, overlap)
	}
	if maxOverlap > 4 {
		for _, j := range js {
			t.Logf("job %d %s on %s: %s – %s", j.ID, j.Host, j.Instance, j.Started.Format("15:04:05.000000"), j.Finished.Format("15:04:05.000000"))
		}
	}
	t.Logf("30 backups: max running sampled %d, max overlap of recorded intervals %d, per instance %v", maxRunning, maxOverlap, perInst)
	if len(js) != 30 || len(hosts) != 30 {
		t.Fatalf("%d jobs for %d hosts, want 30 each (one per schedule)", len(js), len(hosts))
	}
	if maxRunning > 4 || maxOverlap > 4 || maxOverlap < 2 {
		t.Fatalf("global limit 4: sampled %d running, intervals overlap %d", maxRunning, maxOverlap)
	}
	if len(perInst) != 3 || perInst["a"] == 0 || perInst["b"] == 0 || perInst["c"] == 0 {
		t.Fatalf("jobs per instance %v: want all three used", perInst)
	}

	// In cluster mode a staged snapshot is committed once uploaded.
	staged := 0
	filepath.WalkDir(filepath.Join(f.tmp, "stage-b"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			staged++
		}
		return nil
	})
	if staged != 0 {
		t.Fatalf("%d files still in b's staging cache after its backups were committed", staged)
	}

	t.Log("a restore served by an instance that did not take the backup")
	var took catalog.Job
	for _, j := range js {
		if j.Instance == "b" { // through b's staging cache
			took = j
			break
		}
	}
	var snaps []e2eSnapshot
	if err := json.Unmarshal([]byte(f.cli("a", "backup", "ls", took.Host, "--json")), &snaps); err != nil || len(snaps) != 1 {
		t.Fatalf("backup ls %s on a: %v %+v", took.Host, err, snaps)
	}
	restored := filepath.Join(f.tmp, "restored-"+took.Host)
	f.cli("a", "restore", took.Host+"/"+snaps[0].ID, "--to", restored)
	compareTrees(t, treeDigest(t, srcs[took.Host]), treeDigest(t, restored))
	want, _ := os.ReadFile(filepath.Join(srcs[took.Host], "f0003.bin"))
	resp, err := unixClient(filepath.Join(f.data["c"], "cairn.sock")).Get("http://cairn/api/v1/snapshots/" + snaps[0].ID + "/file/f0003.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != string(want) {
		t.Fatalf("download from c of %s's file: %s, %d bytes (want %d)", took.Host, resp.Status, len(got), len(want))
	}

	// WebDAV on c shows b's snapshot (the restore tree re-reads the
	// snapshot list on requests, so commits of other instances appear).
	req, _ := http.NewRequest("GET", "http://cairn/dav/"+took.Host+"/latest/files/f0003.bin", nil)
	resp, err = unixClient(filepath.Join(f.data["c"], "cairn.sock")).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != string(want) {
		t.Fatalf("WebDAV GET on c of %s/latest/files/f0003.bin: %s, %d bytes (want %d)", took.Host, resp.Status, len(got), len(want))
	}

	t.Log("GC on a while b and c back up")
	if code := f.procs["a"].stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("a: exit %d after SIGTERM:\n%s", code, f.procs["a"].stderr)
	}
	aRestart := time.Now()
	f.start("a", "--instance-jobs", "-1") // a claims no backups: it runs GC
	loop := []string{"h00", "h01", "h02", "h03", "h04", "h05"}
	var gcMu sync.Mutex
	gcRuns, gcOK, gcSwept := 0, 0, 0
	gcStop := make(chan struct{})
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		for {
			select {
			case <-gcStop:
				return
			default:
			}
			// The appliance's GC job (default grace) on a, and a
			// zero-grace GC process on a's machine: both must leave
			// every object a snapshot or a running backup needs.
			var job struct{ ID int64 }
			f.api("a", "POST", "/api/v1/pool/gc", nil, &job)
			out, _, code := f.poolCLI("pool", "gc", "--grace", "0")
			gcMu.Lock()
			gcRuns++
			if code == 0 {
				gcOK++
				if i := strings.Index(out, "deleted "); i >= 0 {
					var n int
					fmt.Sscanf(out[i+len("deleted "):], "%d", &n)
					gcSwept += n
				}
			}
			gcMu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	for round := range 4 {
		for i, h := range loop {
			// New content, one file gone: the next backup writes new
			// objects and leaves old ones to GC.
			writeSource(t, filepath.Join(srcs[h], "r"), uint64(1000+round*10+i), 2, 64<<10)
			os.Remove(filepath.Join(srcs[h], fmt.Sprintf("f%04d.bin", round)))
			f.api([]string{"b", "c"}[i%2], "POST", "/api/v1/hosts/"+h+"/backup", map[string]any{}, nil)
		}
		f.waitJobs(fmt.Sprintf("round %d backups", round), 3*time.Minute, func(js []catalog.Job) bool {
			for _, j := range js {
				if !catalog.JobFinal(j.State) {
					return false
				}
			}
			return true
		})
		// Drop the oldest snapshot of each host so GC has garbage.
		for _, h := range loop {
			var ss []e2eSnapshot
			json.Unmarshal([]byte(f.cli("c", "backup", "ls", h, "--json")), &ss)
			if len(ss) > 2 {
				slices.SortFunc(ss, func(a, b e2eSnapshot) int { return strings.Compare(a.Finished, b.Finished) })
				f.api("b", "DELETE", "/api/v1/snapshots/"+ss[0].ID, nil, nil)
			}
		}
	}
	close(gcStop)
	<-gcDone
	t.Logf("gc: %d runs, %d swept (zero grace), %d objects removed", gcRuns, gcOK, gcSwept)
	if gcOK == 0 {
		t.Fatalf("no GC run succeeded in %d tries", gcRuns)
	}
	all := f.waitJobs("loop backups", time.Second, func([]catalog.Job) bool { return true })
	for _, j := range all {
		if j.State != catalog.JobDone {
			t.Fatalf("backup job %d of %s: %s: %s", j.ID, j.Host, j.State, j.Error)
		}
		if j.Instance == "a" && j.Started.After(aRestart) {
			t.Fatalf("job %d ran on a, which claims no backups", j.ID)
		}
	}
	if out, errOut, code := f.poolCLI("pool", "check", "--read-data"); code != 0 {
		t.Fatalf("pool check after GC loop: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, h := range loop {
		var ss []e2eSnapshot
		json.Unmarshal([]byte(f.cli("a", "backup", "ls", h, "--json")), &ss)
		slices.SortFunc(ss, func(a, b e2eSnapshot) int { return strings.Compare(a.Finished, b.Finished) })
		dir := filepath.Join(f.tmp, "after-gc-"+h)
		f.cli("a", "restore", h+"/"+ss[len(ss)-1].ID, "--to", dir)
		compareTrees(t, treeDigest(t, srcs[h]), treeDigest(t, dir))
	}

	t.Log("kill -9 an instance mid-backup")
	writeSource(t, filepath.Join(f.tmp, "src", "big"), 4242, 400, 128<<10)
	f.cli("a", "host", "add", "big", "--method", "local", "--path", filepath.Join(f.tmp, "src", "big"), "--source", "files")
	snapsBefore, err := f.cat.Snapshots(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var bj struct{ ID int64 }
	f.api("a", "POST", "/api/v1/hosts/big/backup", map[string]any{}, &bj)
	var victim catalog.Job
	f.waitJobs("big backup running", time.Minute, func([]catalog.Job) bool {
		j, err := f.cat.Job(ctx, bj.ID)
		if err != nil || j.State == catalog.JobQueued {
			return false
		}
		victim = *j
		return true
	})
	if victim.State != catalog.JobRunning {
		t.Fatalf("big backup ended before the kill: %+v", victim)
	}
	time.Sleep(300 * time.Millisecond)
	if j, _ := f.cat.Job(ctx, bj.ID); j.State != catalog.JobRunning {
		t.Fatalf("big backup ended before the kill (make it bigger): %+v", j)
	}
	killed := f.procs[victim.Instance]
	killed.cmd.Process.Signal(syscall.SIGKILL)
	<-killed.done
	killedAt := time.Now()
	var retry catalog.Job
	f.waitJobs("big backup re-run elsewhere", f.lease+10*time.Second, func(js []catalog.Job) bool {
		for _, j := range js {
			if j.RetryOf == bj.ID && j.State == catalog.JobDone {
				retry = j
				return true
			}
		}
		return false
	})
	t.Logf("killed %s; job %d re-ran as %d on %s, done %s after the kill", victim.Instance, bj.ID, retry.ID, retry.Instance,
		retry.Finished.Sub(killedAt).Round(time.Millisecond))
	orig, _ := f.cat.Job(ctx, bj.ID)
	if orig.State != catalog.JobInterrupted || !strings.Contains(orig.Error, "instance "+victim.Instance) ||
		!strings.Contains(orig.Error, "job "+strconv.FormatInt(retry.ID, 10)+" re-runs it") || retry.Instance == victim.Instance {
		t.Fatalf("killed job %+v, retry %+v", orig, retry)
	}
	alive := "b"
	if victim.Instance == "b" {
		alive = "c"
	}
	var ins2 []struct{ ID, State string }
	f.api(alive, "GET", "/api/v1/instances", nil, &ins2)
	for _, in := range ins2 {
		if in.ID == victim.Instance && in.State != "lost" {
			t.Fatalf("killed instance listed as %q", in.State)
		}
	}
	snapsAfter, _ := f.cat.Snapshots(ctx, "")
	have := map[string]bool{}
	for _, s := range snapsAfter {
		have[s.ID] = true
	}
	for _, s := range snapsBefore {
		if !have[s.ID] {
			t.Fatalf("snapshot %s of %s lost", s.ID, s.Host)
		}
	}
	if len(snapsAfter) != len(snapsBefore)+1 {
		t.Fatalf("%d snapshots after the kill, want %d", len(snapsAfter), len(snapsBefore)+1)
	}
	restored = filepath.Join(f.tmp, "restored-big")
	f.cli(alive, "restore", "big/"+snapsAfter[len(snapsAfter)-1].ID, "--to", restored)
	compareTrees(t, treeDigest(t, filepath.Join(f.tmp, "src", "big")), treeDigest(t, restored))
	out, errOut, code := f.poolCLI("pool", "check")
	if code != 0 {
		t.Fatalf("pool check after the kill: exit %d\n%s\n%s", code, out, errOut)
	}
	var poolSnaps []json.RawMessage
	lsOut, _, _ := f.poolCLI("snapshot", "ls", "--json")
	json.Unmarshal([]byte(lsOut), &poolSnaps)
	if len(poolSnaps) != len(snapsAfter) {
		t.Fatalf("pool lists %d snapshots, catalog %d", len(poolSnaps), len(snapsAfter))
	}
}

// TestServeConfigFile: the fleet config file and CAIRN_* variables set
// serve's flags (command line > environment > file); mistakes are named.
func TestServeConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.env", "# fleet\nCAIRN_MAX_JOBS=8   # across the fleet\nexport CAIRN_POOL='s3://h/b/p?region=x'\nCAIRN_LISTEN=\"0.0.0.0:9\"\nCAIRN_HEARTBEAT=2s\n\nCAIRN_LEASE_TIMEOUT=9s\n", 0o600)
	parse := func(args ...string) (*flag.FlagSet, error) {
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.String("config", "", "")
		fs.Int("max-jobs", 1, "")
		fs.String("pool", "", "")
		fs.String("listen", "", "")
		fs.Duration("heartbeat", time.Second, "")
		fs.Duration("lease-timeout", time.Second, "")
		if err := serveEnv(fs, args); err != nil {
			return nil, err
		}
		return fs, fs.Parse(args)
	}
	t.Setenv("CAIRN_LEASE_TIMEOUT", "") // unset: the file's value counts
	t.Setenv("CAIRN_HEARTBEAT", "3s")   // the environment beats the file
	fs, err := parse("--config", good, "--max-jobs", "5")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"max-jobs": "5", "pool": "s3://h/b/p?region=x", "listen": "0.0.0.0:9",
		"heartbeat": "3s", "lease-timeout": "9s"} {
		if got := fs.Lookup(name).Value.String(); got != want {
			t.Errorf("--%s = %q, want %q", name, got, want)
		}
	}
	for _, c := range []struct{ name, text, want string }{
		{"unknown", "CAIRN_MAX_JOB=3\n", "line 1: CAIRN_MAX_JOB is not a setting of cairn serve"},
		{"noeq", "# x\nCAIRN_POOL\n", "line 2: want CAIRN_NAME=value"},
		{"badvalue", "CAIRN_MAX_JOBS=many\n", `CAIRN_MAX_JOBS="many" (--max-jobs)`},
	} {
		_, err := parse("--config=" + write(c.name, c.text, 0o600))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	open := write("open.env", "CAIRN_S3_SECRET_KEY=hush-123\n", 0o644)
	if _, err := parse("--config", open); err == nil || !strings.Contains(err.Error(), "chmod 600") || strings.Contains(err.Error(), "hush-123") {
		t.Errorf("world-readable file with a secret: %v", err)
	}
	if _, err := parse("--config", filepath.Join(dir, "missing.env")); err == nil || !strings.Contains(err.Error(), "missing.env") {
		t.Errorf("missing file: %v", err)
	}
}
