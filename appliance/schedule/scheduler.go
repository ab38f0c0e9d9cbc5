package schedule

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Enqueuer is the part of a Queue the Scheduler uses.
type Enqueuer interface {
	Enqueue(JobSpec) (Job, error)
	// Active reports whether a job with that key is queued, waiting or running.
	Active(key string) bool
}

var _ Enqueuer = (*Queue)(nil)

// Source is one scheduled backup source as the scheduler sees it.
type Source struct {
	Key      string        // unique, e.g. "web1/etc"; becomes the job's Key
	Host     string        // the job's Host; also the jitter key
	Cron     *Cron         // when it is due
	Jitter   time.Duration // maximum jitter; the offset is Jitter(Host, Jitter)
	Blackout Windows       // scheduled runs do not start inside these
	// LastRun is when the source last ran (or was last enqueued by the
	// scheduler). Zero means never: the first run is the first slot after the
	// source was first Set. Set with a zero LastRun on a known key keeps the
	// scheduler's own record.
	LastRun time.Time
	Payload any // copied into each job
}

// SourceStatus is a source's scheduling state, for listings.
type SourceStatus struct {
	Key     string
	LastRun time.Time
	// Due is when the next run is due (slot plus jitter); zero if the cron
	// expression never fires again. A due run waits out blackouts and pauses.
	Due time.Time
}

// SchedulerOptions configure a Scheduler.
type SchedulerOptions struct {
	Clock  Clock        // default RealClock()
	Logger *slog.Logger // default slog.Default()
	// MaxSleep caps how long Run sleeps between ticks, so that changes of the
	// wall clock (NTP steps, suspend) are noticed; default 1 minute.
	MaxSleep time.Duration
}

type sourceState struct {
	src     Source
	anchor  time.Time // the next slot is the first after this: last run, skipped slot, or Set
	lastRun time.Time // for Status
}

// Scheduler turns schedules into jobs on a queue. Drive it step by step
// with Tick, or let Run do so on its clock. Safe for concurrent use.
type Scheduler struct {
	q     Enqueuer
	clock Clock
	log   *slog.Logger
	sleep time.Duration

	mu      sync.Mutex
	sources map[string]*sourceState
	paused  bool
	changed chan struct{} // wakes Run after Set, Remove, Resume
}

// NewScheduler returns a scheduler that enqueues on q.
func NewScheduler(q Enqueuer, opts SchedulerOptions) *Scheduler {
	if opts.Clock == nil {
		opts.Clock = RealClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxSleep <= 0 {
		opts.MaxSleep = time.Minute
	}
	return &Scheduler{
		q: q, clock: opts.Clock, log: opts.Logger.With("component", "scheduler"), sleep: opts.MaxSleep,
		sources: make(map[string]*sourceState), changed: make(chan struct{}, 1),
	}
}

// Set adds a source or replaces the one with the same Key.
func (s *Scheduler) Set(src Source) error {
	if src.Key == "" {
		return errors.New("schedule: source without a key")
	}
	if src.Cron == nil {
		return fmt.Errorf("schedule %s: no cron expression", src.Key)
	}
	s.mu.Lock()
	st := &sourceState{src: src, anchor: src.LastRun, lastRun: src.LastRun}
	if src.LastRun.IsZero() {
		if old, ok := s.sources[src.Key]; ok {
			st.anchor, st.lastRun = old.anchor, old.lastRun
		} else {
			st.anchor = s.clock.Now()
		}
	}
	s.sources[src.Key] = st
	s.mu.Unlock()
	s.poke()
	return nil
}

// Remove forgets a source. Jobs already enqueued stay queued.
func (s *Scheduler) Remove(key string) {
	s.mu.Lock()
	delete(s.sources, key)
	s.mu.Unlock()
	s.poke()
}

// Pause stops Tick from enqueuing (maintenance mode). Runs that come due
// meanwhile run once after Resume.
func (s *Scheduler) Pause() {
	s.mu.Lock()
	s.paused = true
	s.mu.Unlock()
}

// Resume undoes Pause.
func (s *Scheduler) Resume() {
	s.mu.Lock()
	s.paused = false
	s.mu.Unlock()
	s.poke()
}

func (s *Scheduler) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// due returns when st's next run is due: the first cron slot after the last
// run, shifted by the host's jitter. Subtracting the offset from the anchor
// first maps a jittered run back to its slot, so a run at slot+offset is
// followed by the next slot, not skipped past it.
func (st *sourceState) due() time.Time {
	off := Jitter(cmp.Or(st.src.Host, st.src.Key), st.src.Jitter)
	slot := st.src.Cron.Next(st.anchor.Add(-off))
	if slot.IsZero() {
		return slot
	}
	return slot.Add(off)
}

// Tick enqueues every source that is due at now and returns the jobs it
// enqueued, earliest due first. A source whose runs were missed (downtime,
// a long blackout, pause) is enqueued once, not once per missed slot. A due
// source inside a blackout window waits until the window ends. A due source
// that still has a job queued, waiting or running skips this slot.
func (s *Scheduler) Tick(now time.Time) []Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.paused {
		return nil
	}
	type dueSource struct {
		st  *sourceState
		due time.Time
	}
	var ready []dueSource
	for _, st := range s.sources {
		if d := st.due(); !d.IsZero() && !d.After(now) && !st.src.Blackout.Contains(now) {
			ready = append(ready, dueSource{st, d})
		}
	}
	slices.SortFunc(ready, func(a, b dueSource) int {
		return cmp.Or(a.due.Compare(b.due), cmp.Compare(a.st.src.Key, b.st.src.Key))
	})
	var out []Job
	for _, r := range ready {
		src := r.st.src
		if s.q.Active(src.Key) {
			s.log.Info("schedule slot skipped: previous job still active", "source", src.Key, "due", r.due)
			r.st.anchor = now
			continue
		}
		j, err := s.q.Enqueue(JobSpec{Key: src.Key, Host: src.Host, Priority: PriorityScheduled, Payload: src.Payload})
		switch {
		case err == nil:
			out = append(out, j)
			r.st.anchor, r.st.lastRun = now, now
		case errors.Is(err, ErrDuplicate):
			r.st.anchor = now
		default:
			s.log.Warn("cannot enqueue scheduled job", "source", src.Key, "err", err)
		}
	}
	return out
}

// NextWake returns when Tick should next run: the earliest due time in the
// future, or the end of a blackout holding back a due source. It is zero
// when nothing is scheduled (or while paused).
func (s *Scheduler) NextWake(now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.paused {
		return time.Time{}
	}
	var wake time.Time
	for _, st := range s.sources {
		d := st.due()
		if d.IsZero() {
			continue
		}
		if !d.After(now) {
			open, ok := st.src.Blackout.NextOpen(now)
			if !ok {
				continue
			}
			d = open
			if !d.After(now) { // due and open: Tick has not run yet
				d = now
			}
		}
		if wake.IsZero() || d.Before(wake) {
			wake = d
		}
	}
	return wake
}

// Status returns every source's last run and next due time, sorted by key.
func (s *Scheduler) Status() []SourceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SourceStatus, 0, len(s.sources))
	for k, st := range s.sources {
		out = append(out, SourceStatus{Key: k, LastRun: st.lastRun, Due: st.due()})
	}
	slices.SortFunc(out, func(a, b SourceStatus) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

// Run ticks on the scheduler's clock until ctx is done: at every due time,
// when a blackout ends, after Set, Remove and Resume, and at least every
// MaxSleep. It returns ctx's error.
func (s *Scheduler) Run(ctx context.Context) error {
	for {
		now := s.clock.Now()
		if jobs := s.Tick(now); len(jobs) > 0 {
			s.log.Debug("scheduled jobs enqueued", "count", len(jobs))
		}
		// Whatever was due at now has just been tried; an earlier wake
		// time means an enqueue failed, and retrying at once would spin.
		wait := s.sleep
		if w := s.NextWake(now); w.After(now) {
			wait = min(wait, w.Sub(now))
		}
		t := s.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		case <-s.changed:
			t.Stop()
		}
	}
}
