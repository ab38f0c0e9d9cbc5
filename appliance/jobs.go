package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
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

	mu        sync.Mutex
	progress  Progress
	lastStore time.Time
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
	jc.mu.Unlock()
	jc.s.events.publish(Event{Type: "progress", JobID: jc.job.ID, Host: jc.job.Host, Data: snap})
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
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// jobRunner runs queued jobs: backups within the global limit and never
// two for one host; other kinds (restore, check, gc) start at once. Queue
// order: manual jobs first, then oldest. The queue lives in the catalog,
// so queued jobs survive a restart.
type jobRunner struct {
	s         *Server
	executors map[string]executor
	queued    map[string]bool // kinds that wait for a slot in the queue

	mu      sync.Mutex
	running map[int64]*runningJob
	stopped bool
	kick    chan struct{}
	quit    chan struct{}
	wg      sync.WaitGroup
	loopWG  sync.WaitGroup
}

func newJobRunner(s *Server) *jobRunner {
	r := &jobRunner{
		s:         s,
		executors: map[string]executor{},
		queued:    map[string]bool{"backup": true},
		running:   map[int64]*runningJob{},
		kick:      make(chan struct{}, 1),
		quit:      make(chan struct{}),
	}
	for k, e := range executors {
		r.executors[k] = e
	}
	return r
}

// recover marks jobs of a dead process interrupted and re-queues them.
func (r *jobRunner) recover(ctx context.Context) error {
	again, err := r.s.cat.RecoverJobs(ctx, r.s.now())
	if err != nil {
		return err
	}
	for _, j := range again {
		r.s.log.Info("re-queued an interrupted job", "job", j.ID, "retry_of", j.RetryOf, "kind", j.Kind, "host", j.Host)
	}
	return nil
}

func (r *jobRunner) start() {
	r.loopWG.Add(1)
	go r.loop()
	r.poke()
}

func (r *jobRunner) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *jobRunner) loop() {
	defer r.loopWG.Done()
	for {
		select {
		case <-r.quit:
			return
		case <-r.kick:
		}
		if err := r.dispatch(); err != nil {
			r.s.log.Error("job queue", "err", err)
		}
	}
}

// dispatch starts every queued job that may run now.
func (r *jobRunner) dispatch() error {
	queued, err := r.s.cat.QueuedJobs(context.Background())
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return nil
	}
	busyHosts := map[string]bool{}
	slots := r.s.cfg.MaxJobs
	for _, rj := range r.running {
		if r.queued[rj.jc.job.Kind] {
			slots--
			busyHosts[rj.jc.job.Host] = true
		}
	}
	for _, j := range queued {
		if r.queued[j.Kind] {
			if slots <= 0 || busyHosts[j.Host] {
				continue
			}
			slots--
			busyHosts[j.Host] = true
		}
		if err := r.startLocked(j); err != nil {
			r.s.log.Error("start job", "job", j.ID, "err", err)
		}
	}
	return nil
}

func (r *jobRunner) startLocked(j catalog.Job) error {
	exec, ok := r.executors[j.Kind]
	if !ok {
		now := r.s.now()
		r.s.cat.StartJob(context.Background(), j.ID, now)
		return r.s.cat.FinishJob(context.Background(), j.ID, catalog.JobFailed, "unknown job kind "+j.Kind, now)
	}
	now := r.s.now()
	if err := r.s.cat.StartJob(context.Background(), j.ID, now); err != nil {
		return err
	}
	j.State, j.Started = catalog.JobRunning, now
	ctx, cancel := context.WithCancelCause(context.Background())
	jc := &jobCtx{s: r.s, job: j, progress: Progress{Started: now, Updated: now}}
	rj := &runningJob{jc: jc, cancel: cancel, done: make(chan struct{})}
	r.running[j.ID] = rj
	r.wg.Add(1)
	r.s.events.publish(Event{Type: "job", JobID: j.ID, Host: j.Host, Data: map[string]string{"state": catalog.JobRunning, "kind": j.Kind}})
	go func() {
		defer r.wg.Done()
		defer close(rj.done)
		err := runSafely(ctx, exec, jc)
		state, msg := catalog.JobDone, ""
		switch cause := context.Cause(ctx); {
		case errors.Is(cause, errShutdown):
			state, msg = catalog.JobInterrupted, cause.Error()
		case errors.Is(cause, errCancelled):
			state, msg = catalog.JobCancelled, cause.Error()
		case err != nil:
			state, msg = catalog.JobFailed, err.Error()
		}
		cancel(nil)
		jc.storeProgress(jc.snapshot())
		if msg != "" {
			jc.logf(levelFor(state), "%s: %s", state, msg)
		} else {
			jc.logf("info", "done")
		}
		if ferr := r.s.cat.FinishJob(context.Background(), j.ID, state, msg, r.s.now()); ferr != nil {
			r.s.log.Error("finish job", "job", j.ID, "err", ferr)
		}
		r.s.log.Info("job finished", "job", j.ID, "kind", j.Kind, "host", j.Host, "state", state, "error", msg)
		r.s.events.publish(Event{Type: "job", JobID: j.ID, Host: j.Host, Data: map[string]string{"state": state, "kind": j.Kind, "error": msg}})
		r.mu.Lock()
		delete(r.running, j.ID)
		r.mu.Unlock()
		r.poke()
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

// enqueue stores a new queued job and wakes the dispatcher.
func (r *jobRunner) enqueue(ctx context.Context, j *catalog.Job) error {
	r.mu.Lock()
	stopped := r.stopped
	r.mu.Unlock()
	if stopped {
		return errShutdown
	}
	j.State = catalog.JobQueued
	j.Created = r.s.now()
	if err := r.s.cat.CreateJob(ctx, j); err != nil {
		return err
	}
	r.s.events.publish(Event{Type: "job", JobID: j.ID, Host: j.Host, Data: map[string]string{"state": catalog.JobQueued, "kind": j.Kind}})
	r.poke()
	return nil
}

// cancel stops a running job or cancels a queued one.
func (r *jobRunner) cancel(ctx context.Context, id int64) error {
	r.mu.Lock()
	rj := r.running[id]
	r.mu.Unlock()
	if rj != nil {
		rj.cancel(errCancelled)
		select {
		case <-rj.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	err := r.s.cat.CancelQueuedJob(ctx, id, r.s.now())
	if err == nil {
		r.s.events.publish(Event{Type: "job", JobID: id, Data: map[string]string{"state": catalog.JobCancelled}})
	}
	return err
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

// counts returns the number of running and queued jobs.
func (r *jobRunner) runningCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running)
}

// stop cancels running jobs (they end as interrupted) and waits for them.
func (r *jobRunner) stop() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	for _, rj := range r.running {
		rj.cancel(errShutdown)
	}
	r.mu.Unlock()
	close(r.quit)
	r.loopWG.Wait()
	r.wg.Wait()
}
