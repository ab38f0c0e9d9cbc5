package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitLimit bounds every wait in these tests; nothing sleeps.
const waitLimit = 20 * time.Second

var errTransient = errors.New("connection reset")

// harness runs a Queue whose runner blocks until the test releases each job
// with the error it should return. It records concurrency and every
// OnStateChange event.
type harness struct {
	t     *testing.T
	clock *FakeClock
	q     *Queue

	started chan Job // one per attempt, in start order

	mu       sync.Mutex
	release  map[string]chan error // by job ID, buffered
	events   []Job
	changed  chan struct{} // closed and replaced on each event
	perHost  map[string]int
	hostErrs []string

	running, maxRunning atomic.Int32
}

func newHarness(t *testing.T, opts QueueOptions) *harness {
	t.Helper()
	h := &harness{
		t:       t,
		clock:   NewFakeClock(mustTime(t, "2026-11-20T02:00:00Z")),
		started: make(chan Job, 1000),
		release: map[string]chan error{},
		changed: make(chan struct{}),
		perHost: map[string]int{},
	}
	opts.Clock = h.clock
	opts.OnStateChange = h.record
	opts.Logger = slog.New(slog.DiscardHandler)
	h.q = NewQueue(h.run, opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := h.q.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("shutdown: %v", err)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, e := range h.hostErrs {
			t.Error(e)
		}
	})
	return h
}

// recv receives from ch, failing the test if nothing comes.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatal("timed out waiting on a channel")
		panic("unreachable")
	}
}

func (h *harness) releaseChan(id string) chan error {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.release[id]
	if !ok {
		ch = make(chan error, 10)
		h.release[id] = ch
	}
	return ch
}

func (h *harness) run(ctx context.Context, j *Job) error {
	n := h.running.Add(1)
	defer h.running.Add(-1)
	for {
		m := h.maxRunning.Load()
		if n <= m || h.maxRunning.CompareAndSwap(m, n) {
			break
		}
	}
	h.mu.Lock()
	h.perHost[j.Host]++
	if h.perHost[j.Host] > 1 {
		h.hostErrs = append(h.hostErrs, fmt.Sprintf("two jobs for host %s running at once", j.Host))
	}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.perHost[j.Host]--
		h.mu.Unlock()
	}()

	ch := h.releaseChan(j.ID)
	h.started <- *j
	select {
	case err := <-ch:
		if err != nil && err.Error() == "panic" {
			panic("runner exploded")
		}
		return err
	case <-ctx.Done():
		return fmt.Errorf("job %s: %w", j.ID, ctx.Err())
	}
}

func (h *harness) record(j Job) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, j)
	close(h.changed)
	h.changed = make(chan struct{})
}

// finish lets job id's current attempt return err.
func (h *harness) finish(id string, err error) { h.releaseChan(id) <- err }

// nextStart returns the next attempt to start.
func (h *harness) nextStart() Job {
	h.t.Helper()
	select {
	case j := <-h.started:
		return j
	case <-time.After(waitLimit):
		h.t.Fatal("no job started")
		return Job{}
	}
}

// noStart asserts no attempt has started that the test has not taken yet.
func (h *harness) noStart() {
	h.t.Helper()
	select {
	case j := <-h.started:
		h.t.Fatalf("job %s (host %s) started unexpectedly", j.ID, j.Host)
	default:
	}
}

// waitEvent waits until some recorded event satisfies pred and returns it.
func (h *harness) waitEvent(what string, pred func(Job) bool) Job {
	h.t.Helper()
	deadline := time.After(waitLimit)
	for {
		h.mu.Lock()
		for _, e := range h.events {
			if pred(e) {
				h.mu.Unlock()
				return e
			}
		}
		ch := h.changed
		h.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			h.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (h *harness) waitState(id string, s State) Job {
	h.t.Helper()
	return h.waitEvent(fmt.Sprintf("job %s %s", id, s), func(j Job) bool { return j.ID == id && j.State == s })
}

// states returns the sequence of states job id went through.
func (h *harness) states(id string) []State {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []State
	for _, e := range h.events {
		if e.ID == id {
			out = append(out, e.State)
		}
	}
	return out
}

func (h *harness) enqueue(id, host string, p Priority) Job {
	h.t.Helper()
	j, err := h.q.Enqueue(JobSpec{ID: id, Key: id, Host: host, Priority: p})
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}

// Fifty hosts due at the same instant, limit 2: never more than two run,
// jobs start in FIFO order, and all fifty complete. The jobs come from the
// scheduler, as in the appliance.
func TestQueueFiftyHostsLimitTwo(t *testing.T) {
	h := newHarness(t, QueueOptions{Limit: 2})
	s := NewScheduler(h.q, SchedulerOptions{Clock: h.clock})
	var keys []string
	for i := range 50 {
		c, err := ParseCron("0 2 * * *", time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("host%02d/etc", i)
		keys = append(keys, key)
		if err := s.Set(Source{Key: key, Host: fmt.Sprintf("host%02d", i), Cron: c,
			LastRun: mustTime(t, "2026-11-19T02:00:00Z")}); err != nil {
			t.Fatal(err)
		}
	}
	jobs := s.Tick(h.clock.Now())
	if len(jobs) != 50 {
		t.Fatalf("Tick enqueued %d jobs, want 50", len(jobs))
	}
	var order []string
	inFlight := []Job{h.nextStart(), h.nextStart()}
	// The first two start together; after that, one start per finish.
	slices.SortFunc(inFlight, func(a, b Job) int { return strings.Compare(a.Key, b.Key) })
	for len(inFlight) > 0 {
		if st := h.q.Stats(); st.Running != len(inFlight) || st.Running > 2 {
			t.Fatalf("stats %+v with %d in flight", st, len(inFlight))
		}
		h.noStart() // both slots are taken
		j := inFlight[0]
		inFlight = inFlight[1:]
		order = append(order, j.Key)
		h.finish(j.ID, nil)
		h.waitState(j.ID, StateSucceeded)
		if len(order)+len(inFlight) < 50 {
			inFlight = append(inFlight, h.nextStart())
		}
	}
	if m := h.maxRunning.Load(); m != 2 {
		t.Fatalf("max concurrency %d, want exactly 2", m)
	}
	if !slices.Equal(order, keys) {
		t.Fatalf("start order %v, want FIFO %v", order, keys)
	}
	for _, j := range jobs {
		if got := h.states(j.ID); !slices.Equal(got, []State{StateQueued, StateRunning, StateSucceeded}) {
			t.Fatalf("job %s went through %v", j.ID, got)
		}
	}
	if st := h.q.Stats(); st.Queued+st.Running+st.RetryWait != 0 || len(h.q.Jobs()) != 0 {
		t.Fatalf("queue not empty: %+v", st)
	}
}

// Many hosts released in random order from several goroutines: the limit
// holds under real concurrency too.
func TestQueueLimitUnderConcurrentRelease(t *testing.T) {
	h := newHarness(t, QueueOptions{Limit: 3})
	const n = 60
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { h.enqueue(fmt.Sprintf("j%02d", i), fmt.Sprintf("h%d", i%7), PriorityScheduled) })
	}
	wg.Wait()
	for range n {
		j := h.nextStart()
		go h.finish(j.ID, nil)
	}
	for i := range n {
		h.waitState(fmt.Sprintf("j%02d", i), StateSucceeded)
	}
	if m := h.maxRunning.Load(); m > 3 || m < 1 {
		t.Fatalf("max concurrency %d, limit 3", m)
	}
}

func TestQueueManualBeforeScheduled(t *testing.T) {
	h := newHarness(t, QueueOptions{})
	h.enqueue("blocker", "b", PriorityScheduled)
	if j := h.nextStart(); j.ID != "blocker" {
		t.Fatalf("started %s", j.ID)
	}
	h.enqueue("s1", "h1", PriorityScheduled)
	h.enqueue("s2", "h2", PriorityScheduled)
	h.enqueue("m1", "h3", PriorityManual)
	h.enqueue("s3", "h4", PriorityScheduled)
	h.enqueue("m2", "h5", PriorityManual)

	// A manual run for a source whose scheduled job waits takes its place.
	j, err := h.q.Enqueue(JobSpec{Key: "s3", Host: "h4", Priority: PriorityManual})
	if !errors.Is(err, ErrDuplicate) || j.ID != "s3" || j.Priority != PriorityManual {
		t.Fatalf("duplicate enqueue: %+v, %v", j, err)
	}
	if _, err := h.q.Enqueue(JobSpec{ID: "s1", Host: "h1"}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("same ID twice: %v", err)
	}
	var want []string
	for _, j := range h.q.Jobs() {
		want = append(want, j.ID)
	}
	// s3 keeps its place in line (it was queued before m2), now among the
	// manual jobs.
	if !slices.Equal(want, []string{"blocker", "m1", "s3", "m2", "s1", "s2"}) {
		t.Fatalf("Jobs() order %v", want)
	}

	var order []string
	h.finish("blocker", nil)
	for range 5 {
		j := h.nextStart()
		order = append(order, j.ID)
		h.finish(j.ID, nil)
	}
	if want := []string{"m1", "s3", "m2", "s1", "s2"}; !slices.Equal(order, want) {
		t.Fatalf("start order %v, want %v", order, want)
	}
}

func TestQueueSameHostExclusion(t *testing.T) {
	h := newHarness(t, QueueOptions{Limit: 3})
	h.enqueue("a", "web1", PriorityScheduled)
	h.enqueue("b", "web1", PriorityManual) // higher priority, but its host is busy
	h.enqueue("c", "web2", PriorityScheduled)
	got := []string{h.nextStart().ID, h.nextStart().ID}
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("started %v, want a and c", got)
	}
	h.noStart()
	if j, _ := h.q.Get("b"); j.State != StateQueued {
		t.Fatalf("b is %s while web1 is busy", j.State)
	}
	h.finish("c", nil)
	h.waitState("c", StateSucceeded)
	h.noStart() // web1 still busy, a free slot is not enough
	h.finish("a", nil)
	if j := h.nextStart(); j.ID != "b" {
		t.Fatalf("started %s, want b", j.ID)
	}
	h.finish("b", nil)
	h.waitState("b", StateSucceeded)
	if m := h.maxRunning.Load(); m != 2 {
		t.Fatalf("max concurrency %d, want 2", m)
	}
}

func TestQueueRetryBackoff(t *testing.T) {
	h := newHarness(t, QueueOptions{MaxAttempts: 3, BackoffBase: time.Minute})
	t0 := h.clock.Now()
	h.enqueue("j", "web1", PriorityScheduled)

	if j := h.nextStart(); j.Attempt != 1 {
		t.Fatalf("attempt %d", j.Attempt)
	}
	h.finish("j", fmt.Errorf("sftp web1: %w", errTransient))
	w := h.waitState("j", StateRetryWait)
	if !w.RetryAt.Equal(t0.Add(time.Minute)) || !errors.Is(w.Err, errTransient) || w.Attempt != 1 {
		t.Fatalf("after attempt 1: %+v", w)
	}
	h.clock.Advance(59 * time.Second)
	if j, _ := h.q.Get("j"); j.State != StateRetryWait {
		t.Fatalf("retried before its backoff: %s", j.State)
	}
	h.noStart()
	h.clock.Advance(time.Second)
	if j := h.nextStart(); j.Attempt != 2 || !j.Started.Equal(t0.Add(time.Minute)) {
		t.Fatalf("second attempt %+v", j)
	}
	h.finish("j", errTransient)
	w = h.waitEvent("second retry-wait", func(j Job) bool { return j.State == StateRetryWait && j.Attempt == 2 })
	if want := t0.Add(3 * time.Minute); !w.RetryAt.Equal(want) {
		t.Fatalf("second backoff until %s, want %s (doubled)", w.RetryAt, want)
	}
	h.clock.Advance(2 * time.Minute)
	if j := h.nextStart(); j.Attempt != 3 {
		t.Fatalf("third attempt %+v", j)
	}
	h.finish("j", errTransient)
	f := h.waitState("j", StateFailed)
	if f.Attempt != 3 || !errors.Is(f.Err, errTransient) || !f.Finished.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("final %+v", f)
	}
	want := []State{StateQueued, StateRunning, StateRetryWait, StateQueued, StateRunning, StateRetryWait,
		StateQueued, StateRunning, StateFailed}
	if got := h.states("j"); !slices.Equal(got, want) {
		t.Fatalf("states %v\nwant %v", got, want)
	}
	if h.clock.Timers() != 0 {
		t.Fatal("a timer is left behind")
	}
}

func TestQueueRetrySucceeds(t *testing.T) {
	h := newHarness(t, QueueOptions{BackoffBase: time.Second})
	h.enqueue("j", "web1", PriorityScheduled)
	h.nextStart()
	h.finish("j", errTransient)
	h.waitState("j", StateRetryWait)
	h.clock.Advance(time.Second)
	h.nextStart()
	h.finish("j", nil)
	if s := h.waitState("j", StateSucceeded); s.Attempt != 2 {
		t.Fatalf("%+v", s)
	}
}

func TestQueueBackoffCap(t *testing.T) {
	q := NewQueue(nil, QueueOptions{BackoffBase: time.Minute, BackoffMax: 10 * time.Minute})
	var got []time.Duration
	for a := 1; a <= 6; a++ {
		got = append(got, q.backoff(a))
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute}
	if !slices.Equal(got, want) {
		t.Fatalf("backoffs %v, want %v", got, want)
	}
	if d := q.backoff(1000); d != 10*time.Minute {
		t.Fatalf("backoff(1000) = %v", d)
	}
}

var errAuth = errors.New("pullers: permanent: auth failed")

func TestQueuePermanentNotRetried(t *testing.T) {
	h := newHarness(t, QueueOptions{
		MaxAttempts: 5,
		IsPermanent: func(err error) bool { return errors.Is(err, errAuth) },
	})
	for _, c := range []struct {
		id  string
		err error
	}{
		{"wrapped-sentinel", fmt.Errorf("sftp web1: host key mismatch: %w", ErrPermanent)},
		{"caller-permanent", fmt.Errorf("smb web2: %w", errAuth)},
		{"panic", errors.New("panic")},
	} {
		h.enqueue(c.id, "web1", PriorityScheduled)
		h.nextStart()
		h.finish(c.id, c.err)
		f := h.waitState(c.id, StateFailed)
		if f.Attempt != 1 || !errors.Is(f.Err, ErrPermanent) && !errors.Is(f.Err, errAuth) {
			t.Fatalf("%s: %+v", c.id, f)
		}
		if got := h.states(c.id); !slices.Equal(got, []State{StateQueued, StateRunning, StateFailed}) {
			t.Fatalf("%s went through %v", c.id, got)
		}
		if h.clock.Timers() != 0 {
			t.Fatalf("%s: a retry timer was set", c.id)
		}
	}
}

func TestQueueCancel(t *testing.T) {
	h := newHarness(t, QueueOptions{})
	h.enqueue("run", "web1", PriorityScheduled)
	h.nextStart()
	h.enqueue("queued", "web2", PriorityManual)
	h.enqueue("next", "web3", PriorityScheduled)

	if err := h.q.Cancel("queued"); err != nil {
		t.Fatal(err)
	}
	if c := h.waitState("queued", StateCanceled); !errors.Is(c.Err, context.Canceled) {
		t.Fatalf("canceled queued job: %+v", c)
	}
	if err := h.q.Cancel("running-nope"); !errors.Is(err, ErrUnknownJob) {
		t.Fatalf("cancel unknown: %v", err)
	}

	// Cancel a running job: its context ends, the runner returns, it ends canceled.
	if err := h.q.Cancel("run"); err != nil {
		t.Fatal(err)
	}
	c := h.waitState("run", StateCanceled)
	if !errors.Is(c.Err, context.Canceled) || c.Attempt != 1 {
		t.Fatalf("canceled running job: %+v", c)
	}
	if err := h.q.Cancel("run"); !errors.Is(err, ErrUnknownJob) {
		t.Fatalf("cancel of a finished job: %v", err)
	}
	// The canceled queued job never ran; the next one did.
	if j := h.nextStart(); j.ID != "next" {
		t.Fatalf("started %s, want next", j.ID)
	}
	h.finish("next", nil)
	h.waitState("next", StateSucceeded)
	h.noStart()

	// Cancel during retry-wait: the timer goes, nothing reruns.
	h.enqueue("flaky", "web4", PriorityScheduled)
	h.nextStart()
	h.finish("flaky", errTransient)
	h.waitState("flaky", StateRetryWait)
	if err := h.q.Cancel("flaky"); err != nil {
		t.Fatal(err)
	}
	h.waitState("flaky", StateCanceled)
	if h.clock.Timers() != 0 {
		t.Fatal("retry timer left after cancel")
	}
	h.clock.Advance(time.Hour)
	h.noStart()
	if got := h.states("queued"); !slices.Equal(got, []State{StateQueued, StateCanceled}) {
		t.Fatalf("queued job went through %v", got)
	}
}

// A runner that ignores cancellation and succeeds is reported as succeeded.
func TestQueueCancelRunnerSucceeds(t *testing.T) {
	release := make(chan struct{})
	var events []Job
	var mu sync.Mutex
	done := make(chan struct{})
	q := NewQueue(func(ctx context.Context, j *Job) error {
		<-ctx.Done()
		<-release
		return nil
	}, QueueOptions{OnStateChange: func(j Job) {
		mu.Lock()
		events = append(events, j)
		mu.Unlock()
		if j.State.Final() {
			close(done)
		}
	}})
	if _, err := q.Enqueue(JobSpec{ID: "x", Host: "h"}); err != nil {
		t.Fatal(err)
	}
	if err := q.Cancel("x"); err != nil {
		t.Fatal(err)
	}
	close(release)
	recv(t, done)
	mu.Lock()
	defer mu.Unlock()
	if last := events[len(events)-1]; last.State != StateSucceeded {
		t.Fatalf("final state %s", last.State)
	}
}

func TestQueuePauseResume(t *testing.T) {
	h := newHarness(t, QueueOptions{Limit: 2})
	h.q.Pause()
	h.enqueue("a", "web1", PriorityScheduled)
	h.enqueue("b", "web2", PriorityScheduled)
	if st := h.q.Stats(); st.Queued != 2 || st.Running != 0 || !st.Paused {
		t.Fatalf("paused stats %+v", st)
	}
	h.noStart()
	h.q.Resume()
	h.nextStart()
	h.nextStart()
	// Pausing does not stop running jobs.
	h.q.Pause()
	h.finish("a", nil)
	h.finish("b", nil)
	h.waitState("a", StateSucceeded)
	h.waitState("b", StateSucceeded)
}

func TestQueueSetLimit(t *testing.T) {
	h := newHarness(t, QueueOptions{Limit: 1})
	for i := range 3 {
		h.enqueue(fmt.Sprint(i), fmt.Sprint("h", i), PriorityScheduled)
	}
	h.nextStart()
	h.noStart()
	h.q.SetLimit(3)
	h.nextStart()
	h.nextStart()
	if st := h.q.Stats(); st.Running != 3 || st.Limit != 3 {
		t.Fatalf("%+v", st)
	}
	for i := range 3 {
		h.finish(fmt.Sprint(i), nil)
	}
}

func TestQueueShutdown(t *testing.T) {
	h := newHarness(t, QueueOptions{Limit: 1})
	h.enqueue("run", "web1", PriorityScheduled)
	h.nextStart()
	h.enqueue("wait", "web2", PriorityScheduled)

	// Graceful: the running job finishes within the deadline.
	errc := make(chan error, 1)
	go func() { errc <- h.q.Shutdown(context.Background()) }()
	recv(t, h.q.done) // closed: nothing starts any more
	h.finish("run", nil)
	if err := recv(t, errc); err != nil {
		t.Fatal(err)
	}
	h.waitState("run", StateSucceeded)
	h.noStart() // the queued job stays queued for the owner to persist
	if j, ok := h.q.Get("wait"); !ok || j.State != StateQueued {
		t.Fatalf("queued job after shutdown: %+v %v", j, ok)
	}
	if _, err := h.q.Enqueue(JobSpec{Host: "x"}); !errors.Is(err, ErrShutdown) {
		t.Fatalf("enqueue after shutdown: %v", err)
	}
}

func TestQueueShutdownInterrupts(t *testing.T) {
	h := newHarness(t, QueueOptions{})
	h.enqueue("run", "web1", PriorityScheduled)
	h.nextStart()
	h.enqueue("flaky", "web2", PriorityScheduled) // waits for the slot
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.q.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("shutdown: %v", err)
	}
	i := h.waitState("run", StateInterrupted)
	if !errors.Is(i.Err, context.Canceled) {
		t.Fatalf("interrupted job: %+v", i)
	}
	h.noStart()
}

// OnStateChange may call back into the queue, e.g. to enqueue a follow-up
// job (GC after a backup) when one succeeds.
func TestQueueCallbackReentrant(t *testing.T) {
	var q *Queue
	var mu sync.Mutex
	var seen []string
	done := make(chan struct{})
	q = NewQueue(func(ctx context.Context, j *Job) error { return nil }, QueueOptions{
		Limit: 2,
		OnStateChange: func(j Job) {
			mu.Lock()
			seen = append(seen, j.ID+":"+string(j.State))
			mu.Unlock()
			if j.ID == "backup" && j.State == StateSucceeded {
				if _, err := q.Enqueue(JobSpec{ID: "gc", Host: "pool"}); err != nil {
					panic(err)
				}
				_ = q.Stats()
				_ = q.Jobs()
			}
			if j.ID == "gc" && j.State == StateSucceeded {
				close(done)
			}
		},
	})
	if _, err := q.Enqueue(JobSpec{ID: "backup", Host: "web1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("follow-up job did not complete")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"backup:queued", "backup:running", "backup:succeeded", "gc:queued", "gc:running", "gc:succeeded"}
	if !slices.Equal(seen, want) {
		t.Fatalf("events %v\nwant %v", seen, want)
	}
}

func TestQueueGeneratedIDsAndPayload(t *testing.T) {
	got := make(chan *Job, 2)
	q := NewQueue(func(ctx context.Context, j *Job) error { got <- j; return nil }, QueueOptions{})
	type req struct{ Path string }
	a, err := q.Enqueue(JobSpec{Host: "h1", Payload: req{"/etc"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := q.Enqueue(JobSpec{Host: "h2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.ID) != 16 || a.ID == b.ID {
		t.Fatalf("IDs %q %q", a.ID, b.ID)
	}
	j := recv(t, got)
	if j.ID != a.ID || j.Payload.(req).Path != "/etc" || j.State != StateRunning || j.Attempt != 1 {
		t.Fatalf("runner saw %+v", j)
	}
	recv(t, got)
	if err := q.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestQueueActive(t *testing.T) {
	h := newHarness(t, QueueOptions{})
	if h.q.Active("web1/etc") {
		t.Fatal("empty queue reports an active key")
	}
	h.enqueue("web1/etc", "web1", PriorityScheduled)
	h.nextStart()
	if !h.q.Active("web1/etc") {
		t.Fatal("running job's key not active")
	}
	// A scheduler tick while it runs skips the slot.
	s := NewScheduler(h.q, SchedulerOptions{Clock: h.clock, Logger: slog.New(slog.DiscardHandler)})
	if err := s.Set(Source{Key: "web1/etc", Host: "web1", Cron: mustCron(t, "* * * * *"),
		LastRun: h.clock.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if jobs := s.Tick(h.clock.Now()); len(jobs) != 0 {
		t.Fatalf("enqueued %v while the key is running", jobs)
	}
	h.finish("web1/etc", nil)
	h.waitState("web1/etc", StateSucceeded)
	if h.q.Active("web1/etc") {
		t.Fatal("finished job's key still active")
	}
	if jobs := s.Tick(h.clock.Now().Add(time.Minute)); len(jobs) != 1 {
		t.Fatalf("next slot enqueued %v", jobs)
	}
	h.nextStart()
	if st := h.q.Stats(); st.Running != 1 {
		t.Fatalf("%+v", st)
	}
	h.finish(h.q.Jobs()[0].ID, nil)
}
