package main

// The scale-out benchmark (issue 13): 1, 2 and 3 `cairn serve --cluster`
// processes of the real binary on one PostgreSQL catalog and one S3 pool
// (both from testenv, on loopback) back up -scaleout-hosts local hosts of
// -scaleout-mib MiB each, all queued at once; the aggregate throughput is
// bytes backed up over the wall time from the first enqueue to the last
// job's end. The queue's own cost per job is measured apart: with three
// idle instances, jobs of a tiny host are queued one after another and the
// time from the API's enqueue to an instance's claim (the catalog's
// created → started) is the overhead (target < 50 ms). All instances share
// the machine's cores, so the throughput shows that nothing serialises,
// not that more instances are faster here.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/internal/testenv"
)

var (
	scaleOutHosts = flag.Int("scaleout-hosts", 12, "hosts of the scale-out benchmark")
	scaleOutMiB   = flag.Int("scaleout-mib", 32, "MiB of unique data per host in the scale-out benchmark")
	scaleOutJobs  = flag.Int("scaleout-latency-jobs", 20, "sequential tiny jobs timed for the queue overhead")
)

// scaleOutRecord is the scale-out part of the results JSON.
type scaleOutRecord struct {
	Hosts        int
	BytesPerHost int64
	Rows         []scaleOutRow
	// Queue overhead: enqueue → claim of tiny jobs on idle instances.
	LatencyJobs   int
	LatencyMedian time.Duration
	LatencyP95    time.Duration
	LatencyMax    time.Duration
	// First backup of one host to a slow S3 (pool URL rps limit) by one
	// instance, without and with the local staging cache.
	Staging []stagingRow
	Err     string `json:",omitempty"`
}

// stagingRow is one first backup to the slow S3.
type stagingRow struct {
	Mode  string        // "direct" or "staging"
	Job   time.Duration // `cairn backup run --wait`
	Drain time.Duration // until the last staged object was uploaded (staging)
	Bytes int64
	Err   string `json:",omitempty"`
}

// scaleOutRow is one fleet size.
type scaleOutRow struct {
	Instances   int
	GlobalLimit int
	Wall        time.Duration
	Bytes       int64
	MiBps       float64
	PerInstance map[string]int // jobs run by each instance
	Err         string         `json:",omitempty"`
}

// runScaleOut runs the benchmark into b.rec's ScaleOut. A failure is
// recorded, not fatal.
func (b *bench) runScaleOut(ctx context.Context) error {
	if !b.want("scaleout") {
		return nil
	}
	rec := &scaleOutRecord{Hosts: *scaleOutHosts, BytesPerHost: int64(*scaleOutMiB) << 20}
	b.rec.ScaleOut = rec
	if err := b.scaleOut(ctx, rec); err != nil {
		rec.Err = err.Error()
		b.log.Error("scale-out benchmark failed", "err", err)
	}
	return ctx.Err()
}

func (b *bench) scaleOut(ctx context.Context, rec *scaleOutRecord) error {
	bin, err := filepath.Abs(b.o.cairnBin)
	if err != nil {
		return err
	}
	for _, t := range b.tools {
		if c, ok := t.(cairn); ok {
			bin = c.bin
		}
	}
	dir := filepath.Join(b.o.work, "scaleout")
	os.RemoveAll(dir)
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Unique random data per host (incompressible, no dedup between hosts).
	var srcs []string
	for h := range rec.Hosts {
		src := filepath.Join(dir, "src", fmt.Sprintf("h%02d", h))
		if err := writeRandomTree(src, uint64(h), rec.BytesPerHost); err != nil {
			return err
		}
		srcs = append(srcs, src)
	}
	tiny := filepath.Join(dir, "src", "tiny")
	if err := writeRandomTree(tiny, 999, 4096); err != nil {
		return err
	}
	tb, err := newBenchTB(b.log, filepath.Join(b.o.work, "testenv-scaleout"))
	if err != nil {
		return err
	}
	defer tb.close()
	pg, err := startServer(tb, "postgres", testenv.Postgres)
	if err != nil {
		return err
	}
	s3, err := startServer(tb, "s3", testenv.S3)
	if err != nil {
		return err
	}
	for n := 1; n <= 3; n++ {
		row := scaleOutRow{Instances: n, GlobalLimit: 2 * n, PerInstance: map[string]int{}}
		err := func() error {
			f, err := startFleet(ctx, tb, bin, dir, pg, s3, fmt.Sprintf("fleet%d", n), n, row.GlobalLimit)
			if err != nil {
				return err
			}
			defer f.stop()
			for i := range srcs {
				if err := f.cli(ctx, i%n, "host", "add", filepath.Base(srcs[i]), "--method", "local", "--path", srcs[i], "--source", "files"); err != nil {
					return err
				}
			}
			start := time.Now()
			for i := range srcs {
				if err := f.post(ctx, i%n, "/api/v1/hosts/"+filepath.Base(srcs[i])+"/backup"); err != nil {
					return err
				}
			}
			js, err := f.waitDone(ctx, len(srcs))
			if err != nil {
				return err
			}
			row.Wall = time.Since(start)
			for _, j := range js {
				row.PerInstance[j.Instance]++
			}
			row.Bytes = int64(len(srcs)) * rec.BytesPerHost
			row.MiBps = float64(row.Bytes) / (1 << 20) / row.Wall.Seconds()
			b.log.Info("scale-out", "instances", n, "wall", row.Wall, "MiB/s", row.MiBps, "per_instance", row.PerInstance)
			if n < 3 {
				return nil
			}
			// Queue overhead on the idle three-instance fleet.
			if err := f.cli(ctx, 0, "host", "add", "tiny", "--method", "local", "--path", tiny, "--source", "files"); err != nil {
				return err
			}
			var lat []time.Duration
			for i := range *scaleOutJobs {
				if err := f.post(ctx, i%n, "/api/v1/hosts/tiny/backup"); err != nil {
					return err
				}
				js, err := f.waitDone(ctx, len(srcs)+i+1)
				if err != nil {
					return err
				}
				j := js[0] // newest first
				lat = append(lat, j.Started.Sub(j.Created))
			}
			slices.Sort(lat)
			rec.LatencyJobs = len(lat)
			rec.LatencyMedian, rec.LatencyMax = lat[len(lat)/2], lat[len(lat)-1]
			rec.LatencyP95 = lat[min(len(lat)-1, len(lat)*95/100)]
			return nil
		}()
		if err != nil {
			row.Err = err.Error()
			b.log.Error("scale-out fleet failed", "instances", n, "err", err)
		}
		rec.Rows = append(rec.Rows, row)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	for _, mode := range []string{"direct", "staging"} {
		r := stagingRow{Mode: mode, Bytes: int64(2*(*scaleOutMiB)) << 20}
		if err := b.stagingRun(ctx, &r, bin, dir, s3); err != nil {
			r.Err = err.Error()
			b.log.Error("staging benchmark failed", "mode", mode, "err", err)
		}
		b.log.Info("staging", "mode", mode, "job", r.Job, "drain", r.Drain)
		rec.Staging = append(rec.Staging, r)
	}
	return nil
}

// stagingRow's rps limit of the "slow" S3 (requests per second).
const slowS3RPS = 20

// stagingRun backs up one host of r.Bytes to a fresh pool on S3 limited
// to slowS3RPS requests a second, directly or through a staging cache.
func (b *bench) stagingRun(ctx context.Context, r *stagingRow, bin, dir string, s3 *testenv.S3Server) error {
	src := filepath.Join(dir, "src", "staging")
	if err := writeRandomTree(src, 4242, r.Bytes); err != nil {
		return err
	}
	data := filepath.Join(dir, "staging-"+r.Mode)
	stage := filepath.Join(dir, "stage-"+r.Mode)
	env := append(os.Environ(),
		fmt.Sprintf("CAIRN_POOL=s3://%s/%s/staging-%s?insecure=1&region=%s&rps=%d&burst=4", s3.Endpoint, s3.Bucket, r.Mode, s3.Region, slowS3RPS),
		"CAIRN_S3_ACCESS_KEY="+s3.AccessKey, "CAIRN_S3_SECRET_KEY="+s3.SecretKey, "CAIRN_DB=", "CAIRN_CLUSTER=",
		"CAIRN_GC_SCHEDULE=-", "CAIRN_CHECK_SCHEDULE=-", "CAIRN_LISTEN=-", "CAIRN_PROGRESS=none", "CAIRN_SERVER=", "CAIRN_TOKEN=",
		"CAIRN_DATA="+data)
	if r.Mode == "staging" {
		env = append(env, "CAIRN_STAGING="+stage)
	}
	f := &scaleFleet{bin: bin, env: env, data: []string{data}}
	cmd := exec.Command(bin, "serve", "--data", data)
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		return err
	}
	f.procs = append(f.procs, cmd)
	defer f.stop()
	if err := f.waitUp(ctx, 0); err != nil {
		return err
	}
	if err := f.cli(ctx, 0, "host", "add", "slow", "--method", "local", "--path", src, "--source", "files"); err != nil {
		return err
	}
	start := time.Now()
	if err := f.cli(ctx, 0, "backup", "run", "slow", "--wait"); err != nil {
		return err
	}
	r.Job = time.Since(start)
	if r.Mode != "staging" {
		return nil
	}
	for {
		n := 0
		filepath.WalkDir(filepath.Join(stage, "data"), func(_ string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		if n == 0 {
			r.Drain = time.Since(start)
			return nil
		}
		if time.Since(start) > 30*time.Minute {
			return fmt.Errorf("staging cache not drained after 30 minutes (%d files left)", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// writeRandomTree writes size bytes of random data as 1 MiB files.
func writeRandomTree(dir string, seed uint64, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(seed, 13))
	for i := 0; size > 0; i++ {
		n := min(size, 1<<20)
		buf := make([]byte, n)
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d", i)), buf, 0o644); err != nil {
			return err
		}
		size -= n
	}
	return nil
}

// scaleFleet is n running `cairn serve --cluster` processes.
type scaleFleet struct {
	bin   string
	env   []string
	data  []string
	procs []*exec.Cmd
	cat   *catalog.DB
}

func startFleet(ctx context.Context, tb *benchTB, bin, dir string, pg *testenv.PGServer, s3 *testenv.S3Server, name string, n, limit int) (*scaleFleet, error) {
	dsn, err := startServer(tb, "database "+name, func(t testing.TB) string { return pg.CreateDB(t, name) })
	if err != nil {
		return nil, err
	}
	f := &scaleFleet{bin: bin, env: append(os.Environ(),
		"CAIRN_DB="+dsn,
		fmt.Sprintf("CAIRN_POOL=s3://%s/%s/%s?insecure=1&region=%s", s3.Endpoint, s3.Bucket, name, s3.Region),
		"CAIRN_S3_ACCESS_KEY="+s3.AccessKey, "CAIRN_S3_SECRET_KEY="+s3.SecretKey,
		"CAIRN_SECRET_KEY_FILE="+filepath.Join(dir, name+".key"),
		"CAIRN_CLUSTER=1", fmt.Sprintf("CAIRN_MAX_JOBS=%d", limit), "CAIRN_INSTANCE_JOBS=2",
		"CAIRN_HEARTBEAT=1s", "CAIRN_LEASE_TIMEOUT=5s", "CAIRN_POLL=1s",
		"CAIRN_GC_SCHEDULE=-", "CAIRN_CHECK_SCHEDULE=-", "CAIRN_LISTEN=-", "CAIRN_PROGRESS=none", "CAIRN_SERVER=", "CAIRN_TOKEN=",
	)}
	for i := range n {
		data := filepath.Join(dir, fmt.Sprintf("%s-i%d", name, i))
		f.data = append(f.data, data)
		cmd := exec.Command(bin, "serve", "--data", data, "--instance-id", fmt.Sprintf("i%d", i))
		cmd.Env = f.env
		logf, err := os.Create(data + ".log")
		if err != nil {
			f.stop()
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			f.stop()
			return nil, err
		}
		logf.Close()
		f.procs = append(f.procs, cmd)
		// The first instance creates the pool; the others join it.
		if err := f.waitUp(ctx, i); err != nil {
			f.stop()
			return nil, err
		}
	}
	if f.cat, err = catalog.Open(ctx, dsn); err != nil {
		f.stop()
		return nil, err
	}
	return f, nil
}

func (f *scaleFleet) client(i int) *http.Client {
	sock := filepath.Join(f.data[i], "cairn.sock")
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}

func (f *scaleFleet) waitUp(ctx context.Context, i int) error {
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := f.client(i).Get("http://cairn/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			log, _ := os.ReadFile(f.data[i] + ".log")
			return fmt.Errorf("instance %d did not come up: %v\n%s", i, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (f *scaleFleet) cli(ctx context.Context, i int, args ...string) error {
	cmd := exec.CommandContext(ctx, f.bin, args...)
	cmd.Env = append(f.env, "CAIRN_DATA="+f.data[i])
	return runQuiet(ctx, cmd)
}

func (f *scaleFleet) post(ctx context.Context, i int, path string) error {
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://cairn"+path, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client(i).Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, e.Error)
	}
	return nil
}

// waitDone waits until n backup jobs ended and all ended done; it returns
// them newest first.
func (f *scaleFleet) waitDone(ctx context.Context, n int) ([]catalog.Job, error) {
	deadline := time.Now().Add(30 * time.Minute)
	for {
		js, err := f.cat.Jobs(ctx, catalog.JobFilter{Kind: "backup"})
		if err != nil {
			return nil, err
		}
		ended := 0
		for _, j := range js {
			if catalog.JobFinal(j.State) {
				if j.State != catalog.JobDone {
					return nil, fmt.Errorf("backup job %d of %s: %s: %s", j.ID, j.Host, j.State, j.Error)
				}
				ended++
			}
		}
		if ended >= n {
			return js, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d backups done after 30 minutes", ended, n)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (f *scaleFleet) stop() {
	for _, p := range f.procs {
		p.Process.Signal(os.Interrupt)
	}
	for _, p := range f.procs {
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			p.Process.Kill()
			<-done
		}
	}
	if f.cat != nil {
		f.cat.Close()
	}
}

// writeScaleOut renders the scale-out section of the report.
func (b *bench) writeScaleOut(p func(string, ...any)) {
	rec := b.rec.ScaleOut
	if rec == nil {
		return
	}
	p("## Scale-out (issue 13)\n\n")
	p("1, 2 and 3 `cairn serve --cluster` processes on one PostgreSQL catalog and one S3 pool (testenv's PostgreSQL and VersityGW on loopback), ")
	p("%d local hosts of %s unique random data each, all queued at once; global limit 2 × instances, 2 jobs per instance. ", rec.Hosts, mib(rec.BytesPerHost))
	p("**All instances share this machine's cores** (and the S3 server and PostgreSQL run on them too), so more instances cannot be faster here; the figures show that the shared queue does not serialise the work.\n\n")
	if rec.Err != "" {
		p("Failed: %s\n\n", oneLine(rec.Err))
	}
	p("| Instances | Global limit | Wall s | MiB backed up | Aggregate MiB/s | Jobs per instance |\n|---|---|---|---|---|---|\n")
	for _, r := range rec.Rows {
		if r.Err != "" {
			p("| %d | %d | failed: %s | | | |\n", r.Instances, r.GlobalLimit, oneLine(r.Err))
			continue
		}
		var per []string
		for k, v := range r.PerInstance {
			per = append(per, fmt.Sprintf("%s: %d", k, v))
		}
		slices.Sort(per)
		p("| %d | %d | %.2f | %.0f | %.1f | %s |\n", r.Instances, r.GlobalLimit, r.Wall.Seconds(), float64(r.Bytes)/(1<<20), r.MiBps, strings.Join(per, ", "))
	}
	if rec.LatencyJobs > 0 {
		verdict := "met"
		if rec.LatencyMedian >= 50*time.Millisecond {
			verdict = "not met"
		}
		p("\nQueue overhead per job (three idle instances, %d tiny jobs queued one after another through the API; enqueue → claim, from the catalog's created and started times): median %s, p95 %s, max %s. Target < 50 ms: **%s**.\n\n",
			rec.LatencyJobs, rec.LatencyMedian.Round(100*time.Microsecond), rec.LatencyP95.Round(100*time.Microsecond), rec.LatencyMax.Round(100*time.Microsecond), verdict)
	}
	if len(rec.Staging) > 0 {
		p("First backup of one host to a slow S3 (the same server limited to %d requests/s through the pool URL's `rps`), one instance, without and with `--staging` (the backup job ends when its objects are on local disk; the cache drains in the background, manifest last):\n\n", slowS3RPS)
		p("| Mode | MiB | Backup job s | Until on S3 s |\n|---|---|---|---|\n")
		for _, r := range rec.Staging {
			if r.Err != "" {
				p("| %s | %.0f | failed: %s | |\n", r.Mode, float64(r.Bytes)/(1<<20), oneLine(r.Err))
				continue
			}
			drain := r.Job
			if r.Drain > 0 {
				drain = r.Drain
			}
			p("| %s | %.0f | %.2f | %.2f |\n", r.Mode, float64(r.Bytes)/(1<<20), r.Job.Seconds(), drain.Seconds())
		}
		p("\n")
	}
}
