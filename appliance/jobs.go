package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/appliance/schedule"
	"github.com/cairn-backup/cairn/pullers"
)

// Causes of a job's cancellation: they decide its final state.
var (
	errCancelled = errors.New("cancelled by request")
	errShutdown  = errors.New("interrupted: the appliance is shutting down")
)

// Progress is the live state of a running job, kept in memory, stored in
// the jobs row (throttled) and streamed as "progress" events.
type Progress struct {
	Phase       string    `json:"phase,omitempty"`  // "pulling", "restoring", …
	Source      string    `json:"source,omitempty"` // current source
	SourcesDone int       `json:"sources_done"`
	Sources     int       `json:"sources"`
	Files       int64     `json:"files"`
	Bytes       int64     `json:"bytes"`
	Skipped     int64     `json:"skipped"`
	Errors      int64     `json:"errors"`
	Path        string    `json:"path,omitempty"`
	BytesTotal  int64     `json:"bytes_total,omitempty"` // estimate from the previous snapshot; 0 = unknown
	Rate        float64   `json:"rate"`                  // bytes/s since start
	ETA         float64   `json:"eta_seconds,omitempty"`
	Result      any       `json:"result,omitempty"` // kind-specific outcome (check, gc)
	Started     time.Time `json:"started"`
	Updated     time.Time `json:"updated"`
}

// jobCtx is what an executor gets: the job row and a way to report.
type jobCtx struct {
	s   *Server
	job catalog.Job

	mu          sync.Mutex
	progress    Progress
	lastStore   time.Time
	lastPublish time.Time
	lastPhase   string
}

// executor runs one kind of job. A returned error fails the job unless
// the context was cancelled (then the cause decides).
type executor func(ctx context.Context, jc *jobCtx) error

// executors maps a job kind to its executor; the file of each kind
// registers it in init (job_backup.go, job_restore.go, …).
var executors = map[string]executor{}

// update changes the progress under the lock and publishes it; it stores
// the row at most once a second.
func (jc *jobCtx) update(fn func(p *Progress)) {
	jc.mu.Lock()
	fn(&jc.progress)
	now := jc.s.now()
	p := &jc.progress
	p.Updated = now
	if el := now.Sub(p.Started).Seconds(); el > 0 {
		p.Rate = float64(p.Bytes) / el
		if p.BytesTotal > p.Bytes && p.Rate > 0 {
			p.ETA = float64(p.BytesTotal-p.Bytes) / p.Rate
		} else {
			p.ETA = 0
		}
	}
	snap := jc.progress
	store := now.Sub(jc.lastStore) >= time.Second
	if store {
		jc.lastStore = now
	}
	// Live events at most 10 a second, but always on a phase change.
	publish := now.Sub(jc.lastPublish) >= 100*time.Millisecond || snap.Phase != jc.lastPhase
	if publish {
		jc.lastPublish, jc.lastPhase = now, snap.Phase
	}
	jc.mu.Unlock()
	if publish {
		jc.s.events.publish(Event{Type: "progress", JobID: jc.job.ID, Host: jc.job.Host, Data: snap})
	}
	if store {
		jc.storeProgress(snap)
	}
}

func (jc *jobCtx) snapshot() Progress {
	jc.mu.Lock()
	defer jc.mu.Unlock()
	return jc.progress
}

func (jc *jobCtx) storeProgress(p Progress) {
	b, _ := json.Marshal(p)
	if err := jc.s.cat.SetJobProgress(context.Background(), jc.job.ID, b); err != nil {
		jc.s.log.Warn("store job progress", "job", jc.job.ID, "err", err)
	}
}

// logf records a job event (catalog + live stream).
func (jc *jobCtx) logf(level, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e := &catalog.JobEvent{JobID: jc.job.ID, Time: jc.s.now(), Level: level, Message: msg}
	if err := jc.s.cat.AddJobEvent(context.Background(), e); err != nil {
		jc.s.log.Warn("store job event", "job", jc.job.ID, "err", err)
	}
	jc.s.events.publish(Event{Type: "log", JobID: jc.job.ID, Host: jc.job.Host, Data: map[string]string{"level": level, "message": msg}})
}

type runningJob struct {
	jc     *jobCtx
	cancel context.CancelCauseFunc // immediate and claimed jobs; queued ones cancel through the queue
	done   chan struct{}
	leased bool   // claimed from the shared queue (cluster mode)
	unlock func() // releases a cluster-wide singleton lock, if held
}

// jobRunner runs jobs. Backups go through the schedule.Queue: within the
// global limit, never two for one host, manual ones first, transient
// failures of scheduled runs retried with backoff. Other kinds (restore,
// check, gc) start at once. The catalog is the record: queued jobs are
// re-submitted on start, so they survive a restart. The schedule.Scheduler
// feeds the queue from the hosts' cron schedules.
type jobRunner struct {
	s         *Server
	executors map[string]executor
	queued    map[string]bool // kinds that go through the queue
	q         *schedule.Queue
	sched     *schedule.Scheduler
	cl        *cluster // set by recover

	mu       sync.Mutex
	running  map[int64]*runningJob
	stopped  bool
	wg       sync.WaitGroup // immediate jobs
	schedCtx context.Context
	schedEnd context.CancelFunc
	schedWG  sync.WaitGroup
}

func newJobRunner(s *Server) *jobRunner {
	r := &jobRunner{
		s:         s,
		executors: map[string]executor{},
		queued:    map[string]bool{"backup": true},
		running:   map[int64]*runningJob{},
	}
	for k, e := range executors {
		r.executors[k] = e
	}
	r.q = schedule.NewQueue(r.runQueued, schedule.QueueOptions{
		Limit:         s.cfg.MaxJobs,
		Clock:         s.clock,
		BackoffBase:   s.cfg.RetryBackoff,
		IsPermanent:   func(err error) bool { return errors.Is(err, pullers.ErrPermanent) },
		OnStateChange: r.onState,
		Logger:        s.log,
	})
	r.sched = schedule.NewScheduler(schedEnqueuer{r}, schedule.SchedulerOptions{Clock: s.clock, Logger: s.log})
	r.schedCtx, r.schedEnd = context.WithCancel(context.Background())
	return r
}

func qid(id int64) string { return strconv.FormatInt(id, 10) }

// recover marks jobs of a dead process interrupted and re-queues them.
// In cluster mode other instances' running jobs are theirs: only expired
// leases are re-queued (by the heartbeat).
func (r *jobRunner) recover(ctx context.Context) error {
	cl, err := newCluster(r)
	if err != nil {
		return err
	}
	r.cl = cl
	if cl.on {
		return nil
	}
	again, err := r.s.cat.RecoverJobs(ctx, r.s.now())
	if err != nil {
		return err
	}
	for _, j := range again {
		r.s.log.Info("re-queued an interrupted job", "job", j.ID, "retry_of", j.RetryOf, "kind", j.Kind, "host", j.Host)
	}
	return nil
}

// start submits the catalog's queued jobs, loads the schedules and starts
// the scheduler.
func (r *jobRunner) start(ctx context.Context) error {
	if r.cl.on {
		// The shared queue is the catalog; the scheduler runs on the
		// instance that holds the scheduler lock (cluster.lead).
		return r.cl.start(ctx)
	}
	if err := r.cl.start(ctx); err != nil {
		return err
	}
	queued, err := r.s.cat.QueuedJobs(ctx)
	if err != nil {
		return err
	}
	for _, j := range queued {
		if err := r.submit(j); err != nil {
			r.s.log.Error("re-submit queued job", "job", j.ID, "err", err)
		}
	}
	if err := r.loadSchedules(ctx); err != nil {
		return err
	}
	if err := r.loadMaintenance(ctx); err != nil {
		return err
	}
	r.schedWG.Add(1)
	go func() {
		defer r.schedWG.Done()
		r.sched.Run(r.schedCtx)
	}()
	return nil
}

// submit hands a queued catalog job to the queue or starts it.
func (r *jobRunner) submit(j catalog.Job) error {
	if !r.queued[j.Kind] {
		return r.startImmediate(j)
	}
	prio := schedule.PriorityScheduled
	if j.Manual {
		prio = schedule.PriorityManual
	}
	_, err := r.q.Enqueue(schedule.JobSpec{ID: qid(j.ID), Key: jobKey(&j), Host: j.Host, Priority: prio})
	return err
}

// jobKey identifies what a backup job backs up: at most one such job
// waits in the queue.
func jobKey(j *catalog.Job) string {
	var p BackupParams
	json.Unmarshal(j.Params, &p)
	return j.Host + "|" + strings.Join(p.Sources, ",")
}

// enqueue records a new job and submits it. A backup that duplicates one
// already waiting is dropped (recorded as cancelled) and *j becomes the
// waiting job, raised to manual priority when j was manual.
func (r *jobRunner) enqueue(ctx context.Context, j *catalog.Job) error {
	_, err := r.enqueueDup(ctx, j)
	return err
}

// enqueueDup is enqueue that also reports whether j was merged into a job
// already waiting.
func (r *jobRunner) enqueueDup(ctx context.Context, j *catalog.Job) (dup bool, _ error) {
	r.mu.Lock()
	stopped := r.stopped
	r.mu.Unlock()
	if stopped {
		return false, errShutdown
	}
	j.State = catalog.JobQueued
	j.Created = r.s.now()
	if err := r.s.cat.CreateJob(ctx, j); err != nil {
		return false, err
	}
	if !r.queued[j.Kind] {
		r.s.events.publish(Event{Type: "job", JobID: j.ID, Host: j.Host, Data: map[string]string{"state": catalog.JobQueued, "kind": j.Kind}})
		return false, r.startImmediate(*j)
	}
	if r.cl.on {
		return r.enqueueShared(ctx, j)
	}
	prio := schedule.PriorityScheduled
	if j.Manual {
		prio = schedule.PriorityManual
	}
	got, err := r.q.Enqueue(schedule.JobSpec{ID: qid(j.ID), Key: jobKey(j), Host: j.Host, Priority: prio})
	if errors.Is(err, schedule.ErrDuplicate) {
		other, _ := strconv.ParseInt(got.ID, 10, 64)
		r.s.cat.SetJobState(ctx, j.ID, catalog.JobCancelled, fmt.Sprintf("duplicate of job %d, which was already waiting", other), r.s.now())
		if j.Manual {
			r.s.cat.SetJobManual(ctx, other)
		}
		existing, err := r.s.cat.Job(ctx, other)
		if err != nil {
			return true, err
		}
		*j = *existing
		return true, nil
	}
	if err != nil {
		r.s.cat.SetJobState(ctx, j.ID, catalog.JobCancelled, err.Error(), r.s.now())
		if errors.Is(err, schedule.ErrShutdown) {
			return false, errShutdown
		}
		return false, err
	}
	r.s.events.publish(Event{Type: "job", JobID: j.ID, Host: j.Host, Data: map[string]string{"state": catalog.JobQueued, "kind": j.Kind}})
	return false, nil
}

// enqueueShared is enqueueDup in cluster mode: the catalog row is the
// queue entry; a duplicate of a waiting job is merged into it.
func (r *jobRunner) enqueueShared(ctx context.Context, j *catalog.Job) (dup bool, _ error) {
	if other := r.waitingDuplicate(ctx, j); other != nil && other.ID < j.ID {
		r.s.cat.SetJobState(ctx, j.ID, catalog.JobCancelled, fmt.Sprintf("duplicate of job %d, which was already waiting", other.ID), r.s.now())
		if j.Manual {
			r.s.cat.SetJobManual(ctx, other.ID)
		}
		existing, err := r.s.cat.Job(ctx, other.ID)
		if err != nil {
			return true, err
		}
		*j = *existing
		return true, nil
	}
	r.s.events.publish(Event{Type: "job", JobID: j.ID, Host: j.Host, Data: map[string]string{"state": catalog.JobQueued, "kind": j.Kind}})
	r.cl.poke()
	r.s.cat.Notify(ctx)
	return false, nil
}

// maxAttempts, backoff and permanent are the retry policy of claimed
// jobs, the same as the in-process queue's.
func (r *jobRunner) maxAttempts() int { return 4 }

func (r *jobRunner) backoff(attempt int) time.Duration {
	d, top := r.s.cfg.RetryBackoff, time.Hour
	if d <= 0 {
		d = time.Minute
	}
	for i := 1; i < attempt && d < top; i++ {
		d *= 2
	}
	return min(d, top)
}

func (r *jobRunner) permanent(err error) bool {
	return errors.Is(err, schedule.ErrPermanent) || errors.Is(err, pullers.ErrPermanent)
}

// noRetry marks a failure the queue must not retry: a person who ran a
// backup by hand wants the answer now, not after backoffs.
type noRetry struct{ error }

func (e noRetry) Unwrap() error        { return e.error }
func (e noRetry) Is(target error) bool { return target == schedule.ErrPermanent }

// runQueued runs one attempt of a queued job (the queue's RunFunc).
func (r *jobRunner) runQueued(ctx context.Context, qj *schedule.Job) error {
	id, err := strconv.ParseInt(qj.ID, 10, 64)
	if err != nil {
		return noRetry{fmt.Errorf("bad job id %q", qj.ID)}
	}
	j, err := r.s.cat.Job(context.WithoutCancel(ctx), id)
	if err != nil {
		return noRetry{err}
	}
	exec, ok := r.executors[j.Kind]
	if !ok {
		return noRetry{fmt.Errorf("unknown job kind %q", j.Kind)}
	}
	now := r.s.now()
	if err := r.s.cat.SetJobState(ctx, id, catalog.JobRunning, "", now); err != nil {
		return noRetry{err}
	}
	j.State, j.Started = catalog.JobRunning, now
	jc := &jobCtx{s: r.s, job: *j, progress: Progress{Started: now, Updated: now}}
	rj := &runningJob{jc: jc, done: make(chan struct{})}
	r.mu.Lock()
	r.running[id] = rj
	r.mu.Unlock()
	r.s.events.publish(Event{Type: "job", JobID: id, Host: j.Host, Data: map[string]string{"state": catalog.JobRunning, "kind": j.Kind}})
	if qj.Attempt > 1 {
		jc.logf("info", "attempt %d", qj.Attempt)
	}
	err = runSafely(ctx, exec, jc)
	jc.storeProgress(jc.snapshot())
	r.mu.Lock()
	delete(r.running, id)
	r.mu.Unlock()
	close(rj.done)
	if err != nil && j.Manual && ctx.Err() == nil {
		return noRetry{err}
	}
	return err
}

// onState records the queue's decisions in the catalog.
func (r *jobRunner) onState(qj schedule.Job) {
	id, err := strconv.ParseInt(qj.ID, 10, 64)
	if err != nil {
		return
	}
	ctx := context.Background()
	msg := ""
	if qj.Err != nil {
		msg = qj.Err.Error()
	}
	var state, level string
	switch qj.State {
	case schedule.StateRetryWait:
		msg = fmt.Sprintf("attempt %d failed: %s; retrying at %s", qj.Attempt, msg, qj.RetryAt.Local().Format("15:04:05"))
		state, level = catalog.JobQueued, "warn"
	case schedule.StateSucceeded:
		state, level, msg = catalog.JobDone, "info", ""
	case schedule.StateFailed:
		state, level = catalog.JobFailed, "error"
	case schedule.StateCanceled:
		state, level, msg = catalog.JobCancelled, "warn", "cancelled by request"
	case schedule.StateInterrupted:
		state, level, msg = catalog.JobInterrupted, "warn", "interrupted: the appliance shut down while it ran"
	default:
		return // queued and running are recorded by enqueue and runQueued
	}
	if err := r.s.cat.SetJobState(ctx, id, state, msg, r.s.now()); err != nil {
		if !errors.Is(err, catalog.ErrJobState) {
			r.s.log.Warn("record job state", "job", id, "state", state, "err", err)
		}
		return
	}
	text := state
	if msg != "" {
		text += ": " + msg
	}
	r.s.jobLog(id, qj.Host, level, text)
	if state == catalog.JobFailed {
		r.s.notify.backupFailed(id, qj.Host, msg)
	}
	r.s.log.Info("job "+state, "job", id, "host", qj.Host, "error", msg)
	r.s.events.publish(Event{Type: "job", JobID: id, Host: qj.Host, Data: map[string]string{"state": state, "kind": "backup", "error": msg}})
}

// startImmediate runs a job that does not wait in the queue.
func (r *jobRunner) startImmediate(j catalog.Job) error {
	exec, ok := r.executors[j.Kind]
	now := r.s.now()
	if !ok {
		return r.s.cat.SetJobState(context.Background(), j.ID, catalog.JobFailed, "unknown job kind "+j.Kind, now)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return errShutdown
	}
	var unlock func()
	if r.cl.on && singletonKinds[j.Kind] {
		// GC and the pool check run on one instance at a time.
		l, ok, err := r.s.cat.TryLock(context.Background(), lockJobPrefix+j.Kind)
		if err != nil {
			return err
		}
		if !ok {
			msg := "another instance is running " + j.Kind + " (it runs on one instance at a time)"
			r.s.jobLog(j.ID, j.Host, "warn", msg)
			return r.s.cat.SetJobState(context.Background(), j.ID, catalog.JobCancelled, msg, now)
		}
		unlock = l.Unlock
	}
	if err := r.s.cat.SetJobState(context.Background(), j.ID, catalog.JobRunning, "", now); err != nil {
		if unlock != nil {
			unlock()
		}
		return err
	}
	if r.cl.on {
		r.s.cat.LeaseJob(context.Background(), j.ID, r.cl.id, now.Add(r.cl.cfg.LeaseTimeout))
	}
	j.State, j.Started = catalog.JobRunning, now
	ctx, cancel := context.WithCancelCause(context.Background())
	jc := &jobCtx{s: r.s, job: j, progress: Progress{Started: now, Updated: now}}
	rj := &runningJob{jc: jc, cancel: cancel, done: make(chan struct{}), unlock: unlock}
	r.running[j.ID] = rj
	r.wg.Add(1)
	r.s.events.publish(Event{Type: "job", JobID: j.ID, Host: j.Host, Data: map[string]string{"state": catalog.JobRunning, "kind": j.Kind}})
	go func() {
		defer r.wg.Done()
		err := runSafely(ctx, exec, jc)
		state, msg := catalog.JobDone, ""
		switch cause := context.Cause(ctx); {
		case errors.Is(cause, errShutdown):
			state, msg = catalog.JobInterrupted, cause.Error()
		case errors.Is(cause, errCancelled):
			state, msg = catalog.JobCancelled, cause.Error()
		case errors.Is(cause, errLeaseLost):
			state, msg = catalog.JobInterrupted, cause.Error()
		case err != nil:
			state, msg = catalog.JobFailed, err.Error()
		}
		cancel(nil)
		if rj.unlock != nil {
			rj.unlock()
		}
		jc.storeProgress(jc.snapshot())
		if msg != "" {
			jc.logf(levelFor(state), "%s: %s", state, msg)
		} else {
			jc.logf("info", "done")
		}
		if ferr := r.s.cat.SetJobState(context.Background(), j.ID, state, msg, r.s.now()); ferr != nil {
			r.s.log.Error("finish job", "job", j.ID, "err", ferr)
		}
		r.s.log.Info("job finished", "job", j.ID, "kind", j.Kind, "host", j.Host, "state", state, "error", msg)
		r.s.events.publish(Event{Type: "job", JobID: j.ID, Host: j.Host, Data: map[string]string{"state": state, "kind": j.Kind, "error": msg}})
		r.mu.Lock()
		delete(r.running, j.ID)
		r.mu.Unlock()
		close(rj.done)
	}()
	return nil
}

func levelFor(state string) string {
	if state == catalog.JobFailed {
		return "error"
	}
	return "warn"
}

func runSafely(ctx context.Context, exec executor, jc *jobCtx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error: %v", p)
		}
	}()
	return exec(ctx, jc)
}

// cancel stops a running job or cancels a queued one and waits until the
// catalog records it.
func (r *jobRunner) cancel(ctx context.Context, id int64) error {
	r.mu.Lock()
	rj := r.running[id]
	r.mu.Unlock()
	switch {
	case rj != nil && rj.cancel != nil:
		rj.cancel(errCancelled)
	case r.cl.on:
		// Queued: cancel it here; running on another instance: ask it.
		err := r.s.cat.CancelQueuedJob(ctx, id, r.s.now())
		if errors.Is(err, catalog.ErrJobState) {
			err = r.s.cat.RequestCancel(ctx, id)
		}
		if err != nil && !errors.Is(err, catalog.ErrJobState) {
			return err
		}
	case r.q.Cancel(qid(id)) == nil:
	default:
		return r.s.cat.SetJobState(ctx, id, catalog.JobCancelled, "cancelled before it started", r.s.now())
	}
	for {
		j, err := r.s.cat.Job(ctx, id)
		if err != nil {
			return err
		}
		if catalog.JobFinal(j.State) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// live returns the in-memory progress of a running job.
func (r *jobRunner) live(id int64) (Progress, bool) {
	r.mu.Lock()
	rj := r.running[id]
	r.mu.Unlock()
	if rj == nil {
		return Progress{}, false
	}
	return rj.jc.snapshot(), true
}

// runningCount returns the number of running jobs.
func (r *jobRunner) runningCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running)
}

// stop ends the scheduler, interrupts running jobs (they end interrupted
// and are re-queued on the next start) and waits for them.
func (r *jobRunner) stop() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	r.mu.Unlock()
	if r.cl != nil {
		r.cl.stop() // no more claims, heartbeats or scheduling
	}
	r.mu.Lock()
	for _, rj := range r.running {
		if rj.cancel != nil {
			rj.cancel(errShutdown)
		}
	}
	r.mu.Unlock()
	r.schedEnd()
	r.schedWG.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // interrupt at once: a backup resumes from its partial snapshot
	r.q.Shutdown(ctx)
	r.wg.Wait()
	if r.cl != nil && r.cl.on {
		r.cl.deregister() // only this instance's jobs: the others' go on
		return
	}
	r.s.cat.InterruptRunning(context.Background(), r.s.now())
	if r.cl != nil {
		r.cl.deregister()
	}
}

// schedEnqueuer is what the Scheduler enqueues on: it records a
// scheduled job in the catalog before handing it to the queue.
type schedEnqueuer struct{ r *jobRunner }

// schedPayload travels from a schedule to its jobs.
type schedPayload struct {
	scheduleID int64
	host       string
	sources    []string
	kind       string // "" = backup; "gc" or "check" for pool maintenance
	params     any    // of a maintenance job
}

// Pool maintenance schedule keys (the settings keys of their last runs
// are "schedule.last." + key).
const (
	gcKey    = "pool|gc"
	checkKey = "pool|check"
)

func (e schedEnqueuer) Enqueue(spec schedule.JobSpec) (schedule.Job, error) {
	p, _ := spec.Payload.(schedPayload)
	if p.kind != "" {
		return e.enqueueMaintenance(spec, p)
	}
	params, _ := json.Marshal(BackupParams{Sources: p.sources})
	j := &catalog.Job{Kind: "backup", Host: p.host, Params: params}
	dup, err := e.r.enqueueDup(context.Background(), j)
	if err != nil {
		return schedule.Job{}, err
	}
	if dup {
		return schedule.Job{}, schedule.ErrDuplicate
	}
	if p.scheduleID != 0 {
		e.r.s.cat.SetScheduleRun(context.Background(), p.scheduleID, e.r.s.now())
	} else {
		e.r.s.cat.SetSetting(context.Background(), "schedule.last."+spec.Key, e.r.s.now().UTC().Format(time.RFC3339Nano))
	}
	e.r.s.log.Info("scheduled backup queued", "job", j.ID, "host", p.host, "sources", p.sources)
	if e.r.cl.on {
		return schedule.Job{JobSpec: schedule.JobSpec{ID: qid(j.ID), Key: spec.Key, Host: p.host}, State: schedule.StateQueued, Enqueued: j.Created}, nil
	}
	qj, _ := e.r.q.Get(qid(j.ID))
	return qj, nil
}

func (e schedEnqueuer) enqueueMaintenance(spec schedule.JobSpec, p schedPayload) (schedule.Job, error) {
	params, _ := json.Marshal(p.params)
	j := &catalog.Job{Kind: p.kind, Params: params}
	if err := e.r.enqueue(context.Background(), j); err != nil {
		return schedule.Job{}, err
	}
	now := e.r.s.now()
	e.r.s.cat.SetSetting(context.Background(), "schedule.last."+spec.Key, now.UTC().Format(time.RFC3339Nano))
	e.r.s.log.Info("scheduled pool job started", "job", j.ID, "kind", p.kind)
	return schedule.Job{JobSpec: spec, State: schedule.StateRunning, Enqueued: now}, nil
}

func (e schedEnqueuer) Active(key string) bool {
	kind, ok := strings.CutPrefix(key, "pool|")
	if !ok {
		if e.r.cl.on {
			return e.r.activeInCatalog(context.Background(), key)
		}
		return e.r.q.Active(key)
	}
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	for _, rj := range e.r.running {
		if rj.jc.job.Kind == kind {
			return true
		}
	}
	return false
}

// loadMaintenance schedules GC and the pool check (cfg.GCSchedule,
// cfg.CheckSchedule; "-" disables one).
func (r *jobRunner) loadMaintenance(ctx context.Context) error {
	for _, m := range []struct {
		key, cron, kind string
		params          any
	}{
		{gcKey, r.s.cfg.GCSchedule, "gc", GCParams{}},
		{checkKey, r.s.cfg.CheckSchedule, "check", CheckParams{ReadData: true, Percent: r.s.cfg.CheckPercent, Rotate: true}},
	} {
		if m.cron == "-" {
			continue
		}
		cron, err := schedule.ParseCron(m.cron, time.Local)
		if err != nil {
			return fmt.Errorf("%s schedule: %w", m.kind, err)
		}
		var last time.Time
		if v, ok, err := r.s.cat.Setting(ctx, "schedule.last."+m.key); err == nil && ok {
			last, _ = time.Parse(time.RFC3339Nano, v)
		}
		if last.IsZero() {
			last = r.s.now()
		}
		if err := r.sched.Set(schedule.Source{Key: m.key, Cron: cron, LastRun: last,
			Payload: schedPayload{kind: m.kind, params: m.params}}); err != nil {
			return err
		}
	}
	return nil
}

// loadSchedules (re)loads every schedule of every enabled host into the
// scheduler; disabled hosts and removed schedules are dropped.
func (r *jobRunner) loadSchedules(ctx context.Context) error {
	hosts, err := r.s.cat.Hosts(ctx)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, h := range hosts {
		if !h.Enabled {
			continue
		}
		scheds, err := r.s.cat.Schedules(ctx, h.ID)
		if err != nil {
			return err
		}
		if len(scheds) == 0 {
			// No schedule of its own: the group's or the global one.
			eff, err := r.s.effective(ctx, &h)
			if err != nil {
				return err
			}
			if c := eff[tplSchedule].Value; c != "" {
				jit, _ := time.ParseDuration(eff[tplJitter].Value)
				sc := catalog.Schedule{Cron: c, Jitter: jit, Blackout: splitBlackout(eff[tplBlackout].Value)}
				key := h.Name + "|"
				if v, ok, err := r.s.cat.Setting(ctx, "schedule.last."+key); err == nil && ok {
					sc.LastRun, _ = time.Parse(time.RFC3339Nano, v)
				}
				scheds = []catalog.Schedule{sc} // ID 0: its last run is kept in settings
			}
		}
		for _, sc := range scheds {
			cron, err := schedule.ParseCron(sc.Cron, time.Local)
			if err != nil {
				r.s.log.Error("bad stored schedule", "host", h.Name, "cron", sc.Cron, "err", err)
				continue
			}
			bo, err := schedule.ParseWindows(sc.Blackout, time.Local)
			if err != nil {
				r.s.log.Error("bad stored blackout", "host", h.Name, "err", err)
				continue
			}
			var srcs []string
			if sc.Source != "" {
				srcs = []string{sc.Source}
			}
			key := h.Name + "|" + strings.Join(srcs, ",")
			want[key] = true
			last := sc.LastRun
			if last.IsZero() {
				last = h.Created // never ran: the first slot after the host was added
			}
			if err := r.sched.Set(schedule.Source{Key: key, Host: h.Name, Cron: cron, Jitter: sc.Jitter, Blackout: bo,
				LastRun: last, Payload: schedPayload{scheduleID: sc.ID, host: h.Name, sources: srcs}}); err != nil {
				return err
			}
		}
	}
	for _, st := range r.sched.Status() {
		if !want[st.Key] && !strings.HasPrefix(st.Key, "pool|") {
			r.sched.Remove(st.Key)
		}
	}
	return nil
}
