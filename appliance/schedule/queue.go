package schedule

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Errors of the queue.
var (
	// ErrPermanent marks a job failure that retrying cannot fix (bad
	// credentials, host key mismatch). Runners wrap it; such jobs are not
	// retried. QueueOptions.IsPermanent recognises other errors too.
	ErrPermanent = errors.New("permanent failure")
	// ErrUnknownJob: no queued, waiting or running job has that ID.
	// Finished jobs are forgotten by the queue.
	ErrUnknownJob = errors.New("no such queued or running job")
	// ErrDuplicate: a job with the same ID, or the same Key still waiting
	// to start, is already in the queue.
	ErrDuplicate = errors.New("job already queued")
	// ErrShutdown: the queue no longer accepts jobs.
	ErrShutdown = errors.New("job queue shut down")
)

// Priority orders queued jobs: higher first, FIFO within a priority.
type Priority int

// Priorities used by the appliance.
const (
	PriorityScheduled Priority = 0
	PriorityManual    Priority = 100
)

// State is where a job is in its life.
type State string

// Job states. Succeeded, Failed, Canceled and Interrupted are final.
const (
	StateQueued      State = "queued"      // waiting for a free slot
	StateRunning     State = "running"     // its runner is running
	StateRetryWait   State = "retry-wait"  // failed transiently; waiting out its backoff
	StateSucceeded   State = "succeeded"   // the runner returned nil
	StateFailed      State = "failed"      // permanent error, or out of attempts
	StateCanceled    State = "canceled"    // Cancel was called
	StateInterrupted State = "interrupted" // the queue shut down while it ran
)

// Final reports whether no more changes follow s.
func (s State) Final() bool {
	switch s {
	case StateSucceeded, StateFailed, StateCanceled, StateInterrupted:
		return true
	}
	return false
}

// JobSpec is what a caller asks the queue to run.
type JobSpec struct {
	ID       string // empty: the queue makes one (QueueOptions.NewID)
	Key      string // e.g. "web1/etc"; at most one job per Key waits to start
	Host     string // never two running jobs for the same Host
	Priority Priority
	Payload  any // handed to the runner untouched
}

// Job is a snapshot of a job's state. The queue hands out copies; changing
// one changes nothing in the queue.
type Job struct {
	JobSpec
	State    State
	Attempt  int   // attempts started so far
	Err      error // the error of the last attempt, nil if none failed
	Enqueued time.Time
	Started  time.Time // start of the last attempt
	Finished time.Time // set in final states
	RetryAt  time.Time // set in StateRetryWait
}

// RunFunc runs one attempt of a job. It MUST return when ctx is canceled
// (Cancel or shutdown); an error wrapping ErrPermanent is not retried.
// j is the runner's own copy.
type RunFunc func(ctx context.Context, j *Job) error

// QueueOptions configure a Queue; zero values take the defaults.
type QueueOptions struct {
	Limit       int           // jobs running at once; default 1
	Clock       Clock         // default RealClock()
	MaxAttempts int           // attempts per job including the first; default 4
	BackoffBase time.Duration // wait before the first retry, doubled each time; default 1m
	BackoffMax  time.Duration // cap on the wait; default 1h
	// IsPermanent recognises permanent errors besides those wrapping
	// ErrPermanent, e.g. func(err error) bool { return errors.Is(err, pullers.ErrPermanent) }.
	IsPermanent func(error) bool
	// OnStateChange receives a copy of a job after every change (enqueued,
	// priority raised, started, retry-wait, requeued, final), in the order the
	// changes happened, never concurrently and without queue locks held, so it
	// may call Queue methods. It is called after the method that caused the
	// change may have returned. Use it to persist jobs.
	OnStateChange func(Job)
	NewID         func() string // default: 16 random hex digits
	Logger        *slog.Logger  // default slog.Default()
}

type entry struct {
	job      Job
	seq      uint64             // enqueue order, for FIFO
	cancel   context.CancelFunc // set while running
	canceled bool               // Cancel was called while running
	timer    Timer              // set in StateRetryWait
	wake     chan struct{}      // closed to end a retry wait early
}

// Queue runs jobs with bounded concurrency. See the package documentation
// for its guarantees. Create it with NewQueue.
type Queue struct {
	run  RunFunc
	opts QueueOptions
	log  *slog.Logger

	baseCtx    context.Context // parent of every job's context
	baseCancel context.CancelFunc
	wg         sync.WaitGroup // running attempts and retry waits

	mu      sync.Mutex
	jobs    map[string]*entry // non-final jobs only
	busy    map[string]bool   // hosts with a running job
	running int
	seq     uint64
	paused  bool
	closed  bool
	done    chan struct{} // closed by Shutdown
	events  []Job         // not yet delivered to OnStateChange

	notifyMu sync.Mutex // held while delivering events
}

// NewQueue returns a queue that runs jobs with run.
func NewQueue(run RunFunc, opts QueueOptions) *Queue {
	if opts.Limit < 1 {
		opts.Limit = 1
	}
	if opts.Clock == nil {
		opts.Clock = RealClock()
	}
	if opts.MaxAttempts < 1 {
		opts.MaxAttempts = 4
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = time.Minute
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = time.Hour
	}
	if opts.NewID == nil {
		opts.NewID = randomID
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	q := &Queue{
		run: run, opts: opts, log: log.With("component", "queue"),
		jobs: make(map[string]*entry), busy: make(map[string]bool), done: make(chan struct{}),
	}
	q.baseCtx, q.baseCancel = context.WithCancel(context.Background())
	return q
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Enqueue adds a job. If a job with the same Key is still waiting to start
// (queued or in retry-wait), Enqueue returns that job and ErrDuplicate,
// after raising its priority to spec.Priority if that is higher: a manual run
// requested while a scheduled one waits takes the scheduled one's place.
func (q *Queue) Enqueue(spec JobSpec) (Job, error) {
	defer q.flush()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return Job{}, ErrShutdown
	}
	if spec.ID == "" {
		spec.ID = q.opts.NewID()
	}
	if e, ok := q.jobs[spec.ID]; ok {
		return e.job, fmt.Errorf("job %s: %w", spec.ID, ErrDuplicate)
	}
	if spec.Key != "" {
		for _, e := range q.jobs {
			if e.job.Key != spec.Key || (e.job.State != StateQueued && e.job.State != StateRetryWait) {
				continue
			}
			if spec.Priority > e.job.Priority {
				e.job.Priority = spec.Priority
				q.emit(e)
				q.dispatch()
			}
			return e.job, fmt.Errorf("job for %s: %w", spec.Key, ErrDuplicate)
		}
	}
	q.seq++
	e := &entry{seq: q.seq, job: Job{JobSpec: spec, State: StateQueued, Enqueued: q.opts.Clock.Now()}}
	q.jobs[spec.ID] = e
	q.emit(e)
	q.dispatch()
	return e.job, nil
}

// Cancel cancels a job. A queued or retry-waiting job ends canceled at once;
// a running job has its context canceled and ends canceled when its runner
// returns (succeeded, if the runner returns nil regardless).
func (q *Queue) Cancel(id string) error {
	defer q.flush()
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.jobs[id]
	if !ok {
		return fmt.Errorf("cancel job %s: %w", id, ErrUnknownJob)
	}
	switch e.job.State {
	case StateRunning:
		e.canceled = true
		e.cancel()
	case StateRetryWait:
		e.timer.Stop()
		close(e.wake)
		fallthrough
	default:
		q.finalize(e, StateCanceled, context.Canceled)
	}
	return nil
}

// Get returns the job with that ID if it is queued, waiting or running.
func (q *Queue) Get(id string) (Job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.jobs[id]
	if !ok {
		return Job{}, false
	}
	return e.job, true
}

// Jobs returns every queued, waiting and running job: running ones first
// (oldest start first), then queued ones in the order they will start if
// hosts allow, then retry-waiting ones by retry time.
func (q *Queue) Jobs() []Job {
	q.mu.Lock()
	defer q.mu.Unlock()
	es := make([]*entry, 0, len(q.jobs))
	for _, e := range q.jobs {
		es = append(es, e)
	}
	rank := map[State]int{StateRunning: 0, StateQueued: 1, StateRetryWait: 2}
	slices.SortFunc(es, func(a, b *entry) int {
		if ra, rb := rank[a.job.State], rank[b.job.State]; ra != rb {
			return ra - rb
		}
		switch a.job.State {
		case StateRunning:
			if c := a.job.Started.Compare(b.job.Started); c != 0 {
				return c
			}
		case StateRetryWait:
			if c := a.job.RetryAt.Compare(b.job.RetryAt); c != 0 {
				return c
			}
		}
		return before(a, b)
	})
	out := make([]Job, len(es))
	for i, e := range es {
		out[i] = e.job
	}
	return out
}

// Active reports whether a job with that Key is queued, waiting or running.
func (q *Queue) Active(key string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range q.jobs {
		if e.job.Key == key {
			return true
		}
	}
	return false
}

// Stats counts jobs by state.
type Stats struct {
	Queued, Running, RetryWait int
	Limit                      int
	Paused                     bool
}

// Stats returns the current counts, for metrics.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := Stats{Running: q.running, Limit: q.opts.Limit, Paused: q.paused}
	for _, e := range q.jobs {
		switch e.job.State {
		case StateQueued:
			s.Queued++
		case StateRetryWait:
			s.RetryWait++
		}
	}
	return s
}

// SetLimit changes how many jobs may run at once (at least 1). Lowering it
// does not stop running jobs; it only delays new starts.
func (q *Queue) SetLimit(n int) {
	defer q.flush()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.opts.Limit = max(n, 1)
	q.dispatch()
}

// Pause stops new jobs from starting (maintenance mode, storage check
// failure). Running jobs go on; queued jobs wait; Enqueue still accepts.
func (q *Queue) Pause() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.paused = true
}

// Resume lets jobs start again after Pause.
func (q *Queue) Resume() {
	defer q.flush()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.paused = false
	q.dispatch()
}

// Shutdown stops the queue: no job starts any more and Enqueue fails.
// Running jobs may finish until ctx is done; then their contexts are
// canceled and they end interrupted. Queued and retry-waiting jobs are left
// as they are (their last OnStateChange said so) for the owner to re-enqueue
// after a restart. Shutdown returns once every runner has returned; the error
// is ctx's if jobs had to be interrupted.
func (q *Queue) Shutdown(ctx context.Context) error {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.done)
	}
	q.mu.Unlock()
	idle := make(chan struct{})
	go func() { q.wg.Wait(); close(idle) }()
	var err error
	select {
	case <-idle:
	case <-ctx.Done():
		err = context.Cause(ctx)
		q.baseCancel()
		<-idle
	}
	q.baseCancel()
	q.flush()
	return err
}

// before orders queued jobs: higher priority first, then FIFO.
func before(a, b *entry) int {
	if a.job.Priority != b.job.Priority {
		if a.job.Priority > b.job.Priority {
			return -1
		}
		return 1
	}
	switch {
	case a.seq < b.seq:
		return -1
	case a.seq > b.seq:
		return 1
	}
	return 0
}

// dispatch starts as many queued jobs as the limit and host exclusion allow.
// A job whose host is busy does not hold up jobs for other hosts.
// q.mu must be held.
func (q *Queue) dispatch() {
	for !q.paused && !q.closed && q.running < q.opts.Limit {
		var next *entry
		for _, e := range q.jobs {
			if e.job.State == StateQueued && !q.busy[e.job.Host] && (next == nil || before(e, next) < 0) {
				next = e
			}
		}
		if next == nil {
			return
		}
		q.start(next)
	}
}

func (q *Queue) start(e *entry) {
	ctx, cancel := context.WithCancel(q.baseCtx)
	e.cancel = cancel
	e.job.State = StateRunning
	e.job.Attempt++
	e.job.Started = q.opts.Clock.Now()
	e.job.RetryAt = time.Time{}
	q.running++
	q.busy[e.job.Host] = true
	q.emit(e)
	j := e.job
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		err := q.attempt(ctx, &j)
		q.finish(e, err)
	}()
}

// attempt runs the runner, turning a panic into a permanent error so one bad
// job cannot take the appliance down or retry forever.
func (q *Queue) attempt(ctx context.Context, j *Job) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("job %s panicked: %v: %w", j.ID, r, ErrPermanent)
		}
	}()
	return q.run(ctx, j)
}

func (q *Queue) permanent(err error) bool {
	return errors.Is(err, ErrPermanent) || (q.opts.IsPermanent != nil && q.opts.IsPermanent(err))
}

// finish records the end of an attempt and decides what follows.
func (q *Queue) finish(e *entry, err error) {
	defer q.flush()
	q.mu.Lock()
	defer q.mu.Unlock()
	e.cancel()
	q.running--
	delete(q.busy, e.job.Host)
	defer q.dispatch()

	j := &e.job
	switch {
	case err == nil:
		q.finalize(e, StateSucceeded, nil)
	case e.canceled:
		q.finalize(e, StateCanceled, err)
	case q.permanent(err):
		q.log.Warn("job failed permanently", "job", j.ID, "host", j.Host, "attempt", j.Attempt, "err", err)
		q.finalize(e, StateFailed, err)
	case q.closed:
		q.finalize(e, StateInterrupted, err)
	case j.Attempt >= q.opts.MaxAttempts:
		q.log.Warn("job failed, no attempts left", "job", j.ID, "host", j.Host, "attempt", j.Attempt, "err", err)
		q.finalize(e, StateFailed, err)
	default:
		wait := q.backoff(j.Attempt)
		j.State = StateRetryWait
		j.Err = err
		j.RetryAt = q.opts.Clock.Now().Add(wait)
		e.timer = q.opts.Clock.NewTimer(wait)
		e.wake = make(chan struct{})
		q.log.Info("job failed, will retry", "job", j.ID, "host", j.Host, "attempt", j.Attempt, "retry_in", wait, "err", err)
		q.emit(e)
		q.wg.Add(1)
		go q.waitRetry(e, e.timer, e.wake)
	}
}

// backoff returns the wait after the given failed attempt: base, 2×base, 4×base… capped.
func (q *Queue) backoff(attempt int) time.Duration {
	d := q.opts.BackoffBase
	for i := 1; i < attempt && d < q.opts.BackoffMax; i++ {
		d *= 2
	}
	return min(d, q.opts.BackoffMax)
}

func (q *Queue) waitRetry(e *entry, t Timer, wake chan struct{}) {
	defer q.wg.Done()
	select {
	case <-t.C():
	case <-wake:
		return
	case <-q.done:
		t.Stop()
		return
	}
	defer q.flush()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.jobs[e.job.ID] != e || e.job.State != StateRetryWait {
		return
	}
	e.job.State = StateQueued
	e.job.RetryAt = time.Time{}
	e.timer, e.wake = nil, nil
	q.emit(e)
	q.dispatch()
}

// finalize puts e in a final state and forgets it. q.mu must be held.
func (q *Queue) finalize(e *entry, s State, err error) {
	e.job.State = s
	if err != nil {
		e.job.Err = err
	}
	e.job.Finished = q.opts.Clock.Now()
	e.job.RetryAt = time.Time{}
	delete(q.jobs, e.job.ID)
	q.emit(e)
}

// emit records a copy of e's job for OnStateChange. q.mu must be held.
func (q *Queue) emit(e *entry) {
	if q.opts.OnStateChange != nil {
		q.events = append(q.events, e.job)
	}
}

// flush delivers recorded events in order. Whoever holds notifyMu delivers;
// others leave their events to it. The re-check after unlocking closes the
// gap where an event is recorded just as the deliverer finishes. A callback
// calling back into the queue lands here with notifyMu held by its own
// goroutine, so it returns and the outer loop delivers the new events.
func (q *Queue) flush() {
	if q.opts.OnStateChange == nil {
		return
	}
	for {
		if !q.notifyMu.TryLock() {
			return
		}
		for {
			q.mu.Lock()
			evs := q.events
			q.events = nil
			q.mu.Unlock()
			if len(evs) == 0 {
				break
			}
			for _, ev := range evs {
				q.opts.OnStateChange(ev)
			}
		}
		q.notifyMu.Unlock()
		q.mu.Lock()
		more := len(q.events) > 0
		q.mu.Unlock()
		if !more {
			return
		}
	}
}
