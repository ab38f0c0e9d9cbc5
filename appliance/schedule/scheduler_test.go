package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// recorder is an Enqueuer that remembers what it was asked to run.
type recorder struct {
	mu     sync.Mutex
	specs  []JobSpec
	active map[string]bool
	err    error
	enq    chan JobSpec
}

func newRecorder() *recorder {
	return &recorder{active: map[string]bool{}, enq: make(chan JobSpec, 100)}
}

func (r *recorder) Enqueue(s JobSpec) (Job, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return Job{}, r.err
	}
	s.ID = fmt.Sprint("job", len(r.specs))
	r.specs = append(r.specs, s)
	r.enq <- s
	return Job{JobSpec: s, State: StateQueued}, nil
}

func (r *recorder) Active(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active[key]
}

func (r *recorder) setActive(key string, v bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active[key] = v
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.specs)
}

func mustCron(t *testing.T, expr string) *Cron {
	t.Helper()
	c, err := ParseCron(expr, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newTestScheduler(t *testing.T, now string) (*Scheduler, *recorder, *FakeClock) {
	t.Helper()
	rec := newRecorder()
	clock := NewFakeClock(mustTime(t, now))
	return NewScheduler(rec, SchedulerOptions{Clock: clock, Logger: slog.New(slog.DiscardHandler)}), rec, clock
}

// tick runs Tick at the given time and returns the keys it enqueued.
func tick(t *testing.T, s *Scheduler, at string) []string {
	t.Helper()
	var keys []string
	for _, j := range s.Tick(mustTime(t, at)) {
		keys = append(keys, j.Key)
	}
	return keys
}

func status(t *testing.T, s *Scheduler, key string) SourceStatus {
	t.Helper()
	for _, st := range s.Status() {
		if st.Key == key {
			return st
		}
	}
	t.Fatalf("no status for %s", key)
	return SourceStatus{}
}

// 2026-11-23 is a Monday.

func TestSchedulerMissedRunsRunOnce(t *testing.T) {
	s, rec, _ := newTestScheduler(t, "2026-11-23T15:30:00Z")
	if err := s.Set(Source{Key: "web1/etc", Host: "web1", Cron: mustCron(t, "0 * * * *"),
		LastRun: mustTime(t, "2026-11-23T10:00:00Z"), Payload: 42}); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(Source{Key: "db1/pg", Host: "db1", Cron: mustCron(t, "0 2 * * *"),
		LastRun: mustTime(t, "2026-11-16T02:00:00Z")}); err != nil {
		t.Fatal(err)
	}
	// Down from 10:00 to 15:30 (five hourly slots) and for a week (seven
	// daily ones): each source runs once, the most overdue first.
	if got := tick(t, s, "2026-11-23T15:30:00Z"); !slices.Equal(got, []string{"db1/pg", "web1/etc"}) {
		t.Fatalf("enqueued %v", got)
	}
	if rec.specs[1].Payload != 42 || rec.specs[1].Host != "web1" || rec.specs[1].Priority != PriorityScheduled {
		t.Fatalf("job spec %+v", rec.specs[1])
	}
	if got := tick(t, s, "2026-11-23T15:30:00Z"); len(got) != 0 {
		t.Fatalf("second tick enqueued %v", got)
	}
	if got := tick(t, s, "2026-11-23T15:59:59Z"); len(got) != 0 {
		t.Fatalf("early tick enqueued %v", got)
	}
	st := status(t, s, "web1/etc")
	if !st.LastRun.Equal(mustTime(t, "2026-11-23T15:30:00Z")) || !st.Due.Equal(mustTime(t, "2026-11-23T16:00:00Z")) {
		t.Fatalf("status %+v", st)
	}
	if w := s.NextWake(mustTime(t, "2026-11-23T15:31:00Z")); !w.Equal(mustTime(t, "2026-11-23T16:00:00Z")) {
		t.Fatalf("NextWake %s", w)
	}
	if got := tick(t, s, "2026-11-23T16:00:00Z"); !slices.Equal(got, []string{"web1/etc"}) {
		t.Fatalf("16:00 tick enqueued %v", got)
	}
	// web1 has been due since 17:00, db1 since 02:00: web1 goes first.
	if got := tick(t, s, "2026-11-24T02:00:00Z"); !slices.Equal(got, []string{"web1/etc", "db1/pg"}) {
		t.Fatalf("next night enqueued %v", got)
	}
}

func TestSchedulerBlackout(t *testing.T) {
	s, _, _ := newTestScheduler(t, "2026-11-22T09:00:00Z")
	office, err := ParseWindows([]string{"Mon-Fri 08:00-18:00"}, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set(Source{Key: "web1/home", Host: "web1", Cron: mustCron(t, "0 9 * * *"), Blackout: office,
		LastRun: mustTime(t, "2026-11-22T09:00:00Z")}); err != nil {
		t.Fatal(err)
	}
	if got := tick(t, s, "2026-11-23T09:00:00Z"); len(got) != 0 {
		t.Fatalf("enqueued %v inside the blackout", got)
	}
	if w := s.NextWake(mustTime(t, "2026-11-23T09:00:00Z")); !w.Equal(mustTime(t, "2026-11-23T18:00:00Z")) {
		t.Fatalf("NextWake %s, want the end of the blackout", w)
	}
	if got := tick(t, s, "2026-11-23T17:59:59Z"); len(got) != 0 {
		t.Fatalf("enqueued %v inside the blackout", got)
	}
	if got := tick(t, s, "2026-11-23T18:00:00Z"); !slices.Equal(got, []string{"web1/home"}) {
		t.Fatalf("at the end of the blackout: %v", got)
	}
	// Tuesday's 09:00 slot waits too, then runs once at 18:00.
	if got := tick(t, s, "2026-11-24T09:00:00Z"); len(got) != 0 {
		t.Fatalf("Tuesday 09:00: %v", got)
	}
	if got := tick(t, s, "2026-11-24T18:00:00Z"); len(got) != 1 {
		t.Fatalf("Tuesday 18:00: %v", got)
	}
	// Saturday is outside the window: 09:00 runs on time.
	if got := tick(t, s, "2026-11-28T09:00:00Z"); len(got) != 1 {
		t.Fatalf("Saturday 09:00: %v", got)
	}
}

func TestSchedulerJitter(t *testing.T) {
	s, _, _ := newTestScheduler(t, "2026-11-22T00:00:00Z")
	off := Jitter("web1", time.Hour)
	if off != 42*time.Minute+29*time.Second {
		t.Fatalf("jitter for web1 is %v; the table below assumes 42m29s", off)
	}
	if err := s.Set(Source{Key: "web1/etc", Host: "web1", Cron: mustCron(t, "0 2 * * *"), Jitter: time.Hour,
		LastRun: mustTime(t, "2026-11-22T02:42:29Z")}); err != nil {
		t.Fatal(err)
	}
	if d := status(t, s, "web1/etc").Due; !d.Equal(mustTime(t, "2026-11-23T02:42:29Z")) {
		t.Fatalf("due %s", d)
	}
	if got := tick(t, s, "2026-11-23T02:42:28Z"); len(got) != 0 {
		t.Fatalf("ran before its jitter: %v", got)
	}
	if got := tick(t, s, "2026-11-23T02:42:29Z"); len(got) != 1 {
		t.Fatalf("did not run at slot+jitter: %v", got)
	}
	if d := status(t, s, "web1/etc").Due; !d.Equal(mustTime(t, "2026-11-24T02:42:29Z")) {
		t.Fatalf("next due %s", d)
	}
	// A run that started late (queue, blackout) still maps to the next slot.
	if err := s.Set(Source{Key: "web1/etc", Host: "web1", Cron: mustCron(t, "0 2 * * *"), Jitter: time.Hour,
		LastRun: mustTime(t, "2026-11-24T05:10:00Z")}); err != nil {
		t.Fatal(err)
	}
	if d := status(t, s, "web1/etc").Due; !d.Equal(mustTime(t, "2026-11-25T02:42:29Z")) {
		t.Fatalf("due after a late run %s", d)
	}

	// Fifty hosts on one schedule spread over the hour, each due within it.
	s2, _, _ := newTestScheduler(t, "2026-11-22T00:00:00Z")
	for i := range 50 {
		if err := s2.Set(Source{Key: fmt.Sprintf("h%02d/etc", i), Host: fmt.Sprintf("h%02d", i),
			Cron: mustCron(t, "0 2 * * *"), Jitter: time.Hour, LastRun: mustTime(t, "2026-11-22T03:00:00Z")}); err != nil {
			t.Fatal(err)
		}
	}
	minutes := map[int]bool{}
	for _, st := range s2.Status() {
		lo, hi := mustTime(t, "2026-11-23T02:00:00Z"), mustTime(t, "2026-11-23T03:00:00Z")
		if st.Due.Before(lo) || !st.Due.Before(hi) {
			t.Fatalf("%s due %s, outside the jitter hour", st.Key, st.Due)
		}
		minutes[st.Due.Minute()] = true
	}
	if len(minutes) < 25 {
		t.Fatalf("50 hosts due in only %d distinct minutes", len(minutes))
	}
	if got := tick(t, s2, "2026-11-23T02:00:00Z"); len(got) > 3 {
		t.Fatalf("%d of 50 hosts due at the slot itself", len(got))
	}
}

func TestSchedulerActiveJobSkipsSlot(t *testing.T) {
	s, rec, _ := newTestScheduler(t, "2026-11-23T09:30:00Z")
	if err := s.Set(Source{Key: "k", Host: "h", Cron: mustCron(t, "0 * * * *"),
		LastRun: mustTime(t, "2026-11-23T09:00:00Z")}); err != nil {
		t.Fatal(err)
	}
	rec.setActive("k", true)
	if got := tick(t, s, "2026-11-23T10:00:00Z"); len(got) != 0 || rec.count() != 0 {
		t.Fatalf("enqueued %v while the previous job is active", got)
	}
	rec.setActive("k", false)
	if got := tick(t, s, "2026-11-23T10:05:00Z"); len(got) != 0 {
		t.Fatalf("the skipped slot ran late: %v", got)
	}
	if got := tick(t, s, "2026-11-23T11:00:00Z"); len(got) != 1 {
		t.Fatalf("next slot: %v", got)
	}
}

func TestSchedulerPauseResume(t *testing.T) {
	s, _, _ := newTestScheduler(t, "2026-11-23T09:30:00Z")
	if err := s.Set(Source{Key: "k", Host: "h", Cron: mustCron(t, "0 * * * *"),
		LastRun: mustTime(t, "2026-11-23T09:00:00Z")}); err != nil {
		t.Fatal(err)
	}
	s.Pause()
	if got := tick(t, s, "2026-11-23T12:00:00Z"); len(got) != 0 {
		t.Fatalf("paused scheduler enqueued %v", got)
	}
	if w := s.NextWake(mustTime(t, "2026-11-23T12:00:00Z")); !w.IsZero() {
		t.Fatalf("paused NextWake %s", w)
	}
	s.Resume()
	if got := tick(t, s, "2026-11-23T12:30:00Z"); len(got) != 1 {
		t.Fatalf("after resume: %v", got)
	}
	if got := tick(t, s, "2026-11-23T12:45:00Z"); len(got) != 0 {
		t.Fatalf("missed slots ran more than once: %v", got)
	}
}

func TestSchedulerNewSourceAndReplace(t *testing.T) {
	s, _, clock := newTestScheduler(t, "2026-11-23T10:17:00Z")
	if err := s.Set(Source{Key: "k", Host: "h", Cron: mustCron(t, "0 * * * *")}); err != nil {
		t.Fatal(err)
	}
	if st := status(t, s, "k"); !st.Due.Equal(mustTime(t, "2026-11-23T11:00:00Z")) || !st.LastRun.IsZero() {
		t.Fatalf("new source %+v: want due at the first slot after Set", st)
	}
	clock.Set(mustTime(t, "2026-11-23T11:00:00Z"))
	if got := tick(t, s, "2026-11-23T11:00:00Z"); len(got) != 1 {
		t.Fatalf("first slot: %v", got)
	}
	// Replacing the schedule without a LastRun keeps the scheduler's record.
	clock.Set(mustTime(t, "2026-11-23T11:10:00Z"))
	if err := s.Set(Source{Key: "k", Host: "h", Cron: mustCron(t, "30 * * * *")}); err != nil {
		t.Fatal(err)
	}
	if st := status(t, s, "k"); !st.Due.Equal(mustTime(t, "2026-11-23T11:30:00Z")) ||
		!st.LastRun.Equal(mustTime(t, "2026-11-23T11:00:00Z")) {
		t.Fatalf("replaced source %+v", st)
	}
	s.Remove("k")
	if got := tick(t, s, "2026-11-23T12:30:00Z"); len(got) != 0 || len(s.Status()) != 0 {
		t.Fatalf("removed source enqueued %v", got)
	}
	if s.NextWake(mustTime(t, "2026-11-23T12:30:00Z")) != (time.Time{}) {
		t.Fatal("NextWake with no sources is not zero")
	}
	if err := s.Set(Source{Host: "h", Cron: mustCron(t, "* * * * *")}); err == nil {
		t.Fatal("Set accepted a source without a key")
	}
	if err := s.Set(Source{Key: "x", Host: "h"}); err == nil {
		t.Fatal("Set accepted a source without a cron expression")
	}
}

func TestSchedulerEnqueueFailureRetriesLater(t *testing.T) {
	s, rec, _ := newTestScheduler(t, "2026-11-23T09:30:00Z")
	if err := s.Set(Source{Key: "k", Host: "h", Cron: mustCron(t, "0 * * * *"),
		LastRun: mustTime(t, "2026-11-23T09:00:00Z")}); err != nil {
		t.Fatal(err)
	}
	rec.err = ErrShutdown
	if got := tick(t, s, "2026-11-23T10:00:00Z"); len(got) != 0 {
		t.Fatalf("%v", got)
	}
	rec.err = nil
	if got := tick(t, s, "2026-11-23T10:01:00Z"); len(got) != 1 {
		t.Fatalf("a failed enqueue was not retried: %v", got)
	}
}

func TestSchedulerRunOnFakeClock(t *testing.T) {
	s, rec, clock := newTestScheduler(t, "2026-11-23T09:30:00Z")
	if err := s.Set(Source{Key: "a", Host: "h1", Cron: mustCron(t, "0 10 * * *"),
		LastRun: mustTime(t, "2026-11-22T10:00:00Z")}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()

	// Run parks on a timer (at most MaxSleep, one minute); step the clock a
	// minute at a time until 10:00, as a real clock would.
	for !clock.Now().After(mustTime(t, "2026-11-23T10:00:00Z")) && rec.count() == 0 {
		if err := clock.WaitForTimers(ctx, 1); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute)
		if clock.Now().Equal(mustTime(t, "2026-11-23T10:00:00Z")) {
			break
		}
	}
	if spec := recv(t, rec.enq); spec.Key != "a" {
		t.Fatalf("enqueued %+v", spec)
	}
	if !clock.Now().Equal(mustTime(t, "2026-11-23T10:00:00Z")) {
		t.Fatalf("enqueued at %s", clock.Now())
	}

	// Set wakes Run at once: a source that is already due runs without
	// the clock moving.
	if err := s.Set(Source{Key: "b", Host: "h2", Cron: mustCron(t, "0 * * * *"),
		LastRun: mustTime(t, "2026-11-23T08:00:00Z")}); err != nil {
		t.Fatal(err)
	}
	if spec := recv(t, rec.enq); spec.Key != "b" {
		t.Fatalf("enqueued %+v", spec)
	}
	cancel()
	if err := recv(t, errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	if rec.count() != 2 {
		t.Fatalf("%d jobs enqueued, want 2", rec.count())
	}
}
