// Package schedule decides when backups run: cron expressions with per-host
// jitter, blackout windows, a scheduler that turns due schedules into jobs,
// and the job queue that runs them within a global limit. Time comes from
// an injected Clock; FakeClock drives everything in tests without sleeping.
// The package imports nothing of the module; the appliance wires it up.
//
// # Cron
//
// ParseCron takes standard five-field expressions and @hourly-style
// descriptors, with Vixie cron's rule that a day matches if either day field
// does when both are restricted. Invalid expressions fail with a
// *SyntaxError naming the expression and the fault. Next works on wall-clock
// time in the expression's location: every matching wall-clock minute fires
// exactly once; minutes skipped by a DST spring-forward fire at the end of
// the gap; minutes repeated by a fall-back fire at their first occurrence.
//
// Jitter(host, max) is a stable offset in [0, max) from a hash of the host
// name: hosts sharing a schedule start spread out, each at the same offset
// every time.
//
// # Blackout windows
//
// A Window ("Mon-Fri 08:00-18:00", "Fri 22:00-06:00") is weekly and
// wall-clock based, start inclusive, end exclusive; days name the day a
// window starts. Windows.NextOpen finds the first instant outside all of them.
//
// # Scheduler
//
// A source is due at its first cron slot after its last run, plus its
// host's jitter. Tick(now) enqueues every due source once and records now
// as its last run, so after downtime a source with many missed slots runs
// once. A due source inside a blackout window is not enqueued until the
// window ends. A source whose previous job is still queued, waiting or
// running skips the slot. While paused, nothing is enqueued; what came due
// runs once after Resume. Run calls Tick on the clock.
//
// # Queue
//
// Queue guarantees:
//   - at most Limit jobs run at once (default 1);
//   - never two running jobs with the same Host; a job whose host is busy
//     does not hold up jobs for other hosts;
//   - jobs start by Priority (PriorityManual before PriorityScheduled), FIFO
//     within a priority (a retried job keeps its place);
//   - at most one job per Key waits to start; enqueueing another returns
//     ErrDuplicate and raises the waiting job's priority if asked (it keeps
//     its place in line among jobs of its new priority);
//   - a failed attempt is retried after BackoffBase, doubling up to
//     BackoffMax, for MaxAttempts attempts in all, unless the error is
//     permanent (wraps ErrPermanent, or IsPermanent says so); a panicking
//     runner counts as permanent;
//   - Cancel ends a queued or waiting job at once and cancels a running
//     job's context;
//   - OnStateChange sees every change of every job, in order, one call at a
//     time, and may call back into the queue;
//   - Pause holds new starts; Shutdown lets running jobs finish until its
//     context ends, then interrupts them. Queued jobs are not persisted here:
//     the owner keeps them through OnStateChange and re-enqueues on restart.
//
// Final jobs (succeeded, failed, canceled, interrupted) are forgotten by the
// queue after their last OnStateChange.
package schedule
