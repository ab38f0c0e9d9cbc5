package appliance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/pool"
)

// Scale-out. Every instance registers in the catalog's instances table
// and renews its row with a heartbeat (load, running jobs). In cluster
// mode (ClusterConfig.Enabled, PostgreSQL only) the catalog's jobs table is
// also the queue: an instance claims queued backups itself
// (catalog.ClaimJob: global limit and per-host exclusion across instances)
// and holds each under a lease it renews with its heartbeat. A dead
// instance's leases run out; any instance then expires them and the jobs
// are queued again for the others. One instance at a time — the holder of
// the "scheduler" advisory lock — runs the scheduler (backup schedules,
// GC, the pool check), and GC and the pool check run under cluster-wide
// locks of their own, wherever they are started.

// ClusterConfig configures scale-out; zero values take the defaults.
type ClusterConfig struct {
	// Enabled shares the job queue through the catalog with other
	// instances (needs a postgres:// DB; the pool should be on S3).
	Enabled bool
	// InstanceID names this instance (default: hostname plus random hex).
	InstanceID string
	// Advertise is the address other people reach this instance at, shown
	// in the instance list (default the TCP listen address).
	Advertise string
	// InstanceJobs caps the backups this instance runs at once (default
	// Config.MaxJobs, which in cluster mode is the global limit); negative:
	// none (an instance for the API, restores and pool jobs only).
	InstanceJobs int
	// Heartbeat is how often the instance renews its row and its leases
	// (default 5s); LeaseTimeout is how long a lease lasts without renewal
	// (default 30s, at least 3 heartbeats); Poll is how often an idle
	// instance looks for queued jobs (default 1s).
	Heartbeat    time.Duration
	LeaseTimeout time.Duration
	Poll         time.Duration
	// Staging puts a local staging cache in front of an s3:// pool.
	Staging StagingConfig
}

// errLeaseLost cancels a job whose lease another instance expired.
var errLeaseLost = errors.New("interrupted: this instance lost the job's lease (it stopped renewing in time)")

// Cluster-wide lock names.
const (
	lockScheduler = "scheduler"
	lockJobPrefix = "job:" // + kind: gc, check
)

// singletonKinds run on one instance at a time across the cluster.
var singletonKinds = map[string]bool{"gc": true, "check": true}

// cluster is the instance's membership: registration, heartbeat, and in
// cluster mode the claim loop, leases and scheduler leadership.
type cluster struct {
	r   *jobRunner
	id  string
	on  bool
	cfg ClusterConfig

	wake   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	leader      *catalog.Singleton
	schedCancel context.CancelFunc
	schedDone   chan struct{}
	beats       int
	lastRenew   time.Time
	orphans     map[int64]time.Time // leases held but not run here, since when
}

func newCluster(r *jobRunner) (*cluster, error) {
	cfg := r.s.cfg.Cluster
	if cfg.Enabled && r.s.cat.Driver() != "postgres" {
		return nil, fmt.Errorf("cluster mode needs the catalog on PostgreSQL (--db postgres://…), not %s", r.s.cat.Driver())
	}
	if cfg.InstanceID == "" {
		host, _ := os.Hostname()
		var b [4]byte
		rand.Read(b[:])
		cfg.InstanceID = host + "-" + hex.EncodeToString(b[:])
	}
	switch {
	case cfg.InstanceJobs == 0:
		cfg.InstanceJobs = r.s.cfg.MaxJobs
	case cfg.InstanceJobs < 0:
		cfg.InstanceJobs = 0 // serves the API, restores and pool jobs; claims no backups
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	if cfg.LeaseTimeout <= 0 {
		cfg.LeaseTimeout = 30 * time.Second
	}
	if cfg.LeaseTimeout < 3*cfg.Heartbeat {
		return nil, fmt.Errorf("lease timeout %s must be at least 3 heartbeats (%s)", cfg.LeaseTimeout, 3*cfg.Heartbeat)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	c := &cluster{r: r, id: cfg.InstanceID, on: cfg.Enabled, cfg: cfg, wake: make(chan struct{}, 1)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// queuedKinds are the job kinds of the shared queue.
func (c *cluster) queuedKinds() []string {
	var ks []string
	for k, q := range c.r.queued {
		if q {
			ks = append(ks, k)
		}
	}
	return ks
}

// poke makes the claim loop look for work now.
func (c *cluster) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// start registers the instance and starts its loops.
func (c *cluster) start(ctx context.Context) error {
	s := c.r.s
	host, _ := os.Hostname()
	now := s.now()
	in := &catalog.Instance{ID: c.id, Host: host, Addr: c.cfg.Advertise, Version: s.cfg.Version, Started: now,
		LastHeartbeat: now, Capacity: c.cfg.InstanceJobs, Load: loadAvg()}
	if err := s.cat.RegisterInstance(ctx, in); err != nil {
		return err
	}
	s.log.Info("instance registered", "instance", c.id, "cluster", c.on)
	if c.on {
		// A previous process under this ID may have died holding leases;
		// this one would renew them without running the jobs.
		ex, err := s.cat.ReleaseInstance(ctx, c.id, nil, now, c.queuedKinds(), "instance "+c.id+" restarted while it ran")
		if err != nil {
			return err
		}
		c.report(ex)
	}
	if c.on && s.pool != nil {
		// Locks in the shared pool carry this instance's ID; the pool
		// asks the instance table whether a foreign holder still lives.
		s.pool.SetLockRegistry(instanceLocks{c})
		s.imgs.setLockRegistry(instanceLocks{c}) // and the image pool's (now or when opened)
	}
	if c.on {
		c.lastRenew = now // before the heartbeat loop, which renews and sets it
	}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.heartbeatLoop() }()
	if c.on {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.claimLoop() }()
		c.wg.Add(1)
		go func() { defer c.wg.Done(); s.cat.Listen(c.ctx, c.poke) }()
	}
	return nil
}

// setAddr records the TCP address once listening (when not advertised).
func (c *cluster) setAddr(addr string) {
	c.mu.Lock()
	if c.cfg.Advertise != "" || addr == "" {
		c.mu.Unlock()
		return
	}
	c.cfg.Advertise = addr
	c.mu.Unlock()
	s := c.r.s
	host, _ := os.Hostname()
	s.cat.RegisterInstance(context.Background(), &catalog.Instance{ID: c.id, Host: host, Addr: addr, Version: s.cfg.Version,
		Started: s.started, LastHeartbeat: s.now(), Running: c.r.runningCount(), Capacity: c.cfg.InstanceJobs, Load: loadAvg()})
}

// stop ends the loops and gives up leadership. Jobs are stopped by the
// runner.
func (c *cluster) stop() {
	c.cancel()
	c.wg.Wait()
	c.mu.Lock()
	c.stopScheduler()
	c.mu.Unlock()
}

// deregister records the clean stop.
func (c *cluster) deregister() {
	s := c.r.s
	if c.on {
		s.cat.InterruptInstance(context.Background(), c.id, s.now())
	}
	s.cat.StopInstance(context.Background(), c.id, s.now())
}

func (c *cluster) heartbeatLoop() {
	t := time.NewTicker(c.cfg.Heartbeat)
	defer t.Stop()
	c.beat(c.ctx)
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			c.beat(c.ctx)
		}
	}
}

// beat renews the registration and, in cluster mode, the leases; expires
// other instances' dead leases; and competes for the scheduler.
func (c *cluster) beat(ctx context.Context) {
	s := c.r.s
	now := s.now()
	err := s.cat.InstanceHeartbeat(ctx, c.id, now, c.r.runningCount(), loadAvg())
	if errors.Is(err, catalog.ErrNotFound) {
		host, _ := os.Hostname()
		c.mu.Lock()
		addr := c.cfg.Advertise
		c.mu.Unlock()
		err = s.cat.RegisterInstance(ctx, &catalog.Instance{ID: c.id, Host: host, Addr: addr, Version: s.cfg.Version,
			Started: s.started, LastHeartbeat: now, Capacity: c.cfg.InstanceJobs, Load: loadAvg()})
	}
	if err != nil && ctx.Err() == nil {
		s.log.Warn("instance heartbeat", "instance", c.id, "err", err)
	}
	c.beats++
	if c.beats%100 == 1 {
		s.cat.PruneInstances(ctx, now.Add(-24*time.Hour))
	}
	if !c.on {
		return
	}
	c.renew(ctx, now)
	c.expire(ctx, now)
	c.syncMaintenance(ctx)
	c.lead(ctx)
}

// syncMaintenance follows maintenance mode switched on another instance
// (it lives in the catalog): pause or resume claims and the scheduler.
func (c *cluster) syncMaintenance(ctx context.Context) {
	s := c.r.s
	v, _, err := s.cat.Setting(ctx, settingMaintenance)
	if err != nil {
		return
	}
	var m MaintenanceBody
	if v != "" {
		json.Unmarshal([]byte(v), &m)
	}
	if cur := s.maintenanceNow(); cur.On == m.On && cur.Reason == m.Reason {
		return
	}
	s.maint.mu.Lock()
	s.maint.MaintenanceBody = m
	s.maint.mu.Unlock()
	s.applyPause()
	s.log.Warn("maintenance mode changed on another instance", "on", m.On, "reason", m.Reason)
}

// renew extends this instance's leases and stops jobs it no longer holds
// or whose cancellation was asked elsewhere.
func (c *cluster) renew(ctx context.Context, now time.Time) {
	s := c.r.s
	leases, err := s.cat.RenewLeases(ctx, c.id, now.Add(c.cfg.LeaseTimeout))
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("renew job leases", "instance", c.id, "err", err)
		// Past the lease timeout others may have re-queued our jobs.
		if now.Sub(c.lastRenew) < c.cfg.LeaseTimeout {
			return
		}
		leases = nil
	} else {
		c.lastRenew = now
	}
	held := map[int64]bool{}
	for _, l := range leases {
		held[l.JobID] = true
		if l.CancelRequested {
			c.r.cancelLocal(l.JobID, errCancelled)
		}
	}
	c.r.mu.Lock()
	var lost []*runningJob
	for id, rj := range c.r.running {
		if !held[id] && rj.cancel != nil && rj.leased {
			lost = append(lost, rj)
		}
	}
	// A lease held without a job running here for a whole lease timeout
	// is released to the queue. (A claim not yet started is no orphan:
	// on a loaded machine starting one can take several beats.)
	orphans, release := map[int64]time.Time{}, []int64{}
	for id := range held {
		if c.r.running[id] == nil {
			since, seen := c.orphans[id]
			if !seen {
				since = now
			}
			orphans[id] = since
			if now.Sub(since) >= c.cfg.LeaseTimeout {
				release = append(release, id)
			}
		}
	}
	c.orphans = orphans
	c.r.mu.Unlock()
	if len(release) > 0 {
		ex, err := s.cat.ReleaseInstance(ctx, c.id, release, now, c.queuedKinds(), "instance "+c.id+" held the lease but did not run the job")
		if err != nil {
			s.log.Warn("release orphaned leases", "err", err)
		}
		c.report(ex)
	}
	for _, rj := range lost {
		s.log.Warn("job lease lost; stopping the job", "job", rj.jc.job.ID, "instance", c.id)
		rj.cancel(errLeaseLost)
	}
}

// instanceLocks is the pools' LockRegistry in cluster mode (the file pool's
// and the image pool's): the instances table. A pool lock (a backup's
// writer lock, an image pull's, a GC's lock)
// taken by an instance is stale at once — GC need not wait 30 minutes
// for a writer killed on another machine — when that instance stopped
// cleanly (it ended its jobs first), registered again since the lock was
// taken (the process that took it is gone), or has not renewed its
// heartbeat for lockDeadLeases lease timeouts: by one lease timeout
// without renewal a live instance stops its jobs itself (renew), so the
// second is margin for clock skew and a slow stop.
type instanceLocks struct{ c *cluster }

const lockDeadLeases = 2

func (l instanceLocks) Self() string { return l.c.id }

func (l instanceLocks) Dead(ctx context.Context, owner string, created time.Time) bool {
	s := l.c.r.s
	ins, err := s.cat.Instances(ctx)
	if err != nil {
		return false // unsure: the lock ages out as usual
	}
	for _, in := range ins {
		if in.ID != owner {
			continue
		}
		dead := !in.Stopped.IsZero() || in.Started.After(created) ||
			s.now().Sub(in.LastHeartbeat) > lockDeadLeases*l.c.cfg.LeaseTimeout
		if dead {
			s.log.Info("pool lock of a dead instance is stale", "instance", owner, "last_heartbeat", in.LastHeartbeat,
				"stopped", !in.Stopped.IsZero(), "lock_created", created)
		}
		return dead
	}
	return false // unknown (pruned after a day: by then the lock is stale by age)
}

// setLockRegistry makes r the image pool's lock registry, now if it is
// open and when imageStore opens it otherwise.
func (st *imageState) setLockRegistry(r pool.LockRegistry) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.registry = r
	if st.store != nil {
		st.store.SetLockRegistry(r)
	}
}

// expire re-queues the jobs of instances that stopped renewing.
func (c *cluster) expire(ctx context.Context, now time.Time) {
	s := c.r.s
	ex, err := s.cat.ExpireLeases(ctx, now, c.queuedKinds())
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("expire job leases", "err", err)
		}
		return
	}
	c.report(ex)
}

// report logs and announces expired or released leases and wakes the
// claimers for the re-queued jobs.
func (c *cluster) report(ex []catalog.ExpiredLease) {
	s := c.r.s
	for _, e := range ex {
		s.log.Warn("job lease expired", "job", e.Job.ID, "kind", e.Job.Kind, "host", e.Job.Host, "instance", e.Job.Instance)
		s.jobLog(e.Job.ID, e.Job.Host, "warn", e.Job.Error)
		s.events.publish(Event{Type: "job", JobID: e.Job.ID, Host: e.Job.Host,
			Data: map[string]string{"state": catalog.JobInterrupted, "kind": e.Job.Kind, "error": e.Job.Error}})
		if e.Retry != nil {
			s.jobLog(e.Retry.ID, e.Retry.Host, "info", fmt.Sprintf("queued again: job %d lost its instance %s", e.Job.ID, e.Job.Instance))
			s.events.publish(Event{Type: "job", JobID: e.Retry.ID, Host: e.Retry.Host,
				Data: map[string]string{"state": catalog.JobQueued, "kind": e.Retry.Kind}})
		}
	}
	if len(ex) > 0 {
		s.cat.Notify(context.Background())
	}
}

// lead takes the scheduler lock when free and runs the scheduler while it
// holds it; the leader reloads the schedules now and then, since hosts may
// change through any instance.
func (c *cluster) lead(ctx context.Context) {
	s := c.r.s
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader != nil {
		if err := c.leader.Held(ctx); err != nil {
			s.log.Warn("lost the scheduler lock", "instance", c.id, "err", err)
			c.stopScheduler()
			return
		}
		if c.beats%6 == 0 {
			if err := c.r.loadSchedules(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("reload schedules", "err", err)
			}
		}
		return
	}
	l, ok, err := s.cat.TryLock(ctx, lockScheduler)
	if err != nil || !ok {
		return
	}
	if err := c.r.loadSchedules(ctx); err != nil {
		s.log.Warn("load schedules", "err", err)
	}
	if err := c.r.loadMaintenance(ctx); err != nil {
		s.log.Warn("load maintenance schedules", "err", err)
	}
	c.leader = l
	sctx, cancel := context.WithCancel(c.ctx)
	done := make(chan struct{})
	c.schedCancel, c.schedDone = cancel, done
	go func() { defer close(done); c.r.sched.Run(sctx) }()
	s.log.Info("this instance runs the scheduler", "instance", c.id)
}

// stopScheduler ends leadership. c.mu must be held.
func (c *cluster) stopScheduler() {
	if c.schedCancel != nil {
		c.schedCancel()
		<-c.schedDone
		c.schedCancel, c.schedDone = nil, nil
	}
	if c.leader != nil {
		c.leader.Unlock()
		c.leader = nil
	}
}

// claimLoop claims queued jobs while this instance has room.
func (c *cluster) claimLoop() {
	t := time.NewTicker(c.cfg.Poll)
	defer t.Stop()
	for {
		c.claim(c.ctx)
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		case <-c.wake:
		}
	}
}

func (c *cluster) claim(ctx context.Context) {
	s, r := c.r.s, c.r
	kinds := c.queuedKinds()
	for ctx.Err() == nil && !r.q.Stats().Paused && r.leasedCount() < c.cfg.InstanceJobs {
		j, err := s.cat.ClaimJob(ctx, catalog.ClaimSpec{Instance: c.id, Kinds: kinds, Global: s.cfg.MaxJobs,
			Lease: c.cfg.LeaseTimeout, Now: s.now(), Clock: s.now, Fair: true})
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("claim a job", "instance", c.id, "err", err)
			}
			return
		}
		if j == nil {
			return
		}
		if !r.runLeased(*j) {
			return
		}
	}
}

// runLeased starts a job this instance claimed. It reports false when
// the runner is stopping (the job is handed back to the queue).
func (r *jobRunner) runLeased(j catalog.Job) bool {
	s := r.s
	exec, ok := r.executors[j.Kind]
	if !ok {
		s.cat.EndLeased(context.Background(), j.ID, r.cl.id, catalog.JobFailed, "unknown job kind "+j.Kind, s.now())
		return true
	}
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		s.cat.RetryLeased(context.Background(), j.ID, r.cl.id, "handed back: the instance is shutting down", time.Time{})
		return false
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	now := s.now()
	jc := &jobCtx{s: s, job: j, progress: Progress{Started: now, Updated: now}}
	rj := &runningJob{jc: jc, cancel: cancel, done: make(chan struct{}), leased: true}
	r.running[j.ID] = rj
	r.wg.Add(1)
	r.mu.Unlock()
	s.events.publish(Event{Type: "job", JobID: j.ID, Host: j.Host, Data: map[string]string{"state": catalog.JobRunning, "kind": j.Kind, "instance": r.cl.id}})
	jc.logf("info", "running on instance %s (attempt %d)", r.cl.id, j.Attempt)
	go func() {
		defer r.wg.Done()
		err := runSafely(ctx, exec, jc)
		cause := context.Cause(ctx)
		cancel(nil)
		jc.storeProgress(jc.snapshot())
		r.mu.Lock()
		delete(r.running, j.ID)
		r.mu.Unlock()
		close(rj.done)
		r.endLeased(j, err, cause)
		r.s.cat.Notify(context.Background()) // a slot is free (and maybe a retry queued)
		r.cl.poke()
	}()
	return true
}

// endLeased records how an attempt of a claimed job ended, as onState
// does for the in-process queue.
func (r *jobRunner) endLeased(j catalog.Job, err, cause error) {
	s := r.s
	ctx := context.Background()
	now := s.now()
	inst := r.cl.id
	var state, level, msg string
	var ferr error
	switch {
	case errors.Is(cause, errLeaseLost):
		s.log.Warn("job ended after its lease was lost", "job", j.ID, "instance", inst)
		return
	case err == nil:
		state, level = catalog.JobDone, "info"
		ferr = s.cat.EndLeased(ctx, j.ID, inst, state, "", now)
	case errors.Is(cause, errCancelled):
		state, level, msg = catalog.JobCancelled, "warn", "cancelled by request"
		ferr = s.cat.EndLeased(ctx, j.ID, inst, state, msg, now)
	case errors.Is(cause, errShutdown):
		state, level = catalog.JobInterrupted, "warn"
		nj, e := s.cat.RequeueLeased(ctx, j.ID, inst, "interrupted: instance "+inst+" shut down while it ran", now)
		ferr = e
		if e == nil {
			msg = fmt.Sprintf("instance %s shut down while it ran; job %d re-runs it", inst, nj.ID)
		}
	case r.permanent(err) || j.Manual || j.Attempt >= r.maxAttempts():
		state, level, msg = catalog.JobFailed, "error", err.Error()
		ferr = s.cat.EndLeased(ctx, j.ID, inst, state, msg, now)
	default:
		wait := r.backoff(j.Attempt)
		at := now.Add(wait)
		state, level = catalog.JobQueued, "warn"
		msg = fmt.Sprintf("attempt %d failed: %s; retrying at %s", j.Attempt, err, at.Local().Format("15:04:05"))
		ferr = s.cat.RetryLeased(ctx, j.ID, inst, msg, at)
	}
	if ferr != nil {
		if !errors.Is(ferr, catalog.ErrJobState) {
			s.log.Warn("record job end", "job", j.ID, "state", state, "err", ferr)
		}
		return
	}
	text := state
	if msg != "" {
		text += ": " + msg
	}
	s.jobLog(j.ID, j.Host, level, text)
	if state == catalog.JobFailed {
		s.notify.backupFailed(j.ID, j.Host, msg)
	}
	s.log.Info("job "+state, "job", j.ID, "host", j.Host, "instance", inst, "error", msg)
	s.events.publish(Event{Type: "job", JobID: j.ID, Host: j.Host, Data: map[string]string{"state": state, "kind": j.Kind, "error": msg}})
}

// cancelLocal cancels a job running here with cause; false if none.
func (r *jobRunner) cancelLocal(id int64, cause error) bool {
	r.mu.Lock()
	rj := r.running[id]
	r.mu.Unlock()
	if rj == nil || rj.cancel == nil {
		return false
	}
	rj.cancel(cause)
	return true
}

// leasedCount counts the claimed jobs running here.
func (r *jobRunner) leasedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rj := range r.running {
		if rj.leased {
			n++
		}
	}
	return n
}

// activeInCatalog reports whether a job with that key is queued or
// running on any instance.
func (r *jobRunner) activeInCatalog(ctx context.Context, key string) bool {
	host, _, _ := strings.Cut(key, "|")
	js, err := r.s.cat.Jobs(ctx, catalog.JobFilter{Host: host, Kind: "backup", States: []string{catalog.JobQueued, catalog.JobRunning}})
	if err != nil {
		return false
	}
	for i := range js {
		if jobKey(&js[i]) == key {
			return true
		}
	}
	return false
}

// waitingDuplicate returns a queued backup of the same key as j, if any.
func (r *jobRunner) waitingDuplicate(ctx context.Context, j *catalog.Job) *catalog.Job {
	key := jobKey(j)
	js, err := r.s.cat.Jobs(ctx, catalog.JobFilter{Host: j.Host, Kind: j.Kind, States: []string{catalog.JobQueued}})
	if err != nil {
		return nil
	}
	for i := len(js) - 1; i >= 0; i-- {
		if js[i].ID != j.ID && jobKey(&js[i]) == key {
			return &js[i]
		}
	}
	return nil
}

// loadAvg is the 1-minute load average (0 when unknown).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(f, 64)
	return v
}

// openPoolBackend opens the pool location of Config.Pool: a directory
// (created when create is set), or a URL such as s3://… through
// pool.OpenBackend (credentials from CAIRN_S3_ACCESS_KEY and
// CAIRN_S3_SECRET_KEY, or the URL), behind the local staging cache when
// one is configured. Instances of a fleet share an S3 pool.
func (s *Server) openPoolBackend(ctx context.Context, loc string, create bool) (pool.Backend, error) {
	if !strings.Contains(loc, "://") {
		if create {
			return pool.CreateDirBackend(loc)
		}
		return pool.NewDirBackend(loc)
	}
	b, err := pool.OpenBackend(ctx, loc, pool.OpenBackendOptions{Create: create})
	if err != nil || s.cfg.Cluster.Staging.Dir == "" {
		return b, err
	}
	sc := s.cfg.Cluster.Staging
	st, err := pool.NewStaging(b, pool.StagingOptions{Dir: sc.Dir, MaxBytes: sc.MaxBytes, Uploaders: sc.Uploaders,
		Rate: sc.Rate, SyncUploads: s.cfg.Cluster.Enabled, Logger: s.log})
	if err != nil {
		return nil, fmt.Errorf("staging cache for %s: %w", pool.RedactLocation(loc), err)
	}
	return st, nil
}

// StagingConfig configures the local staging cache in front of an
// object-storage pool (pool.Staging): backups write at disk speed, the
// cache drains in the background. In cluster mode a snapshot is committed
// only once uploaded, so every instance can restore it.
type StagingConfig struct {
	Dir       string  // "" = no staging
	MaxBytes  int64   // cap (default 1 GiB): when full, backups slow to the upload rate
	Uploaders int     // concurrent uploads (default 4)
	Rate      float64 // upload bytes per second (0 = unlimited)
}

// InstanceBody is one entry of GET /api/v1/instances.
type InstanceBody struct {
	ID            string    `json:"id"`
	Host          string    `json:"host"`
	Addr          string    `json:"addr,omitempty"`
	Version       string    `json:"version"`
	State         string    `json:"state"` // "up", "stopped", or "lost" (no heartbeat within the lease timeout)
	Self          bool      `json:"self"`  // the instance answering
	Started       time.Time `json:"started"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	Running       int       `json:"running"`
	Capacity      int       `json:"capacity"`
	Load          float64   `json:"load"`
	Jobs          []int64   `json:"jobs"` // its running jobs
}

// instances lists the registered instances with their running jobs.
func (s *Server) instances(ctx context.Context) ([]InstanceBody, error) {
	ins, err := s.cat.Instances(ctx)
	if err != nil {
		return nil, err
	}
	running, err := s.cat.Jobs(ctx, catalog.JobFilter{States: []string{catalog.JobRunning}})
	if err != nil {
		return nil, err
	}
	byInst := map[string][]int64{}
	for _, j := range running {
		byInst[j.Instance] = append(byInst[j.Instance], j.ID)
	}
	now := s.now()
	out := make([]InstanceBody, 0, len(ins))
	for _, in := range ins {
		b := InstanceBody{ID: in.ID, Host: in.Host, Addr: in.Addr, Version: in.Version, Started: in.Started,
			LastHeartbeat: in.LastHeartbeat, Running: in.Running, Capacity: in.Capacity, Load: in.Load,
			Self: in.ID == s.jobs.cl.id, Jobs: byInst[in.ID], State: "up"}
		switch {
		case !in.Stopped.IsZero():
			b.State = "stopped"
		case now.Sub(in.LastHeartbeat) > s.jobs.cl.cfg.LeaseTimeout:
			b.State = "lost"
		}
		if b.Jobs == nil {
			b.Jobs = []int64{}
		}
		slices.Sort(b.Jobs)
		out = append(out, b)
	}
	return out, nil
}

func (s *Server) handleInstances(r *http.Request, _ *principal) (any, error) {
	return s.instances(r.Context())
}
