package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Job states. queued → running → done | failed | cancelled | interrupted;
// queued → cancelled. An interrupted job (the process stopped under it) is
// re-queued as a new job whose RetryOf names it.
const (
	JobQueued      = "queued"
	JobRunning     = "running"
	JobDone        = "done"
	JobFailed      = "failed"
	JobCancelled   = "cancelled"
	JobInterrupted = "interrupted"
)

// JobFinal reports whether state is terminal.
func JobFinal(state string) bool {
	switch state {
	case JobDone, JobFailed, JobCancelled, JobInterrupted:
		return true
	}
	return false
}

// A Job is one unit of work: a backup of a host, a restore, a pool check…
type Job struct {
	ID       int64
	Kind     string // "backup", "restore", "check", "gc"
	Host     string
	State    string
	Manual   bool            // started by a person: goes ahead of scheduled jobs
	Params   json.RawMessage // kind-specific parameters
	Progress json.RawMessage // last progress report
	Error    string
	RetryOf  int64
	Created  time.Time
	Started  time.Time
	Finished time.Time
	Instance string // the instance that runs or last ran it ("" before a claim in single-instance mode)
	Attempt  int    // attempts started (cluster mode)
}

const jobCols = "id, kind, host, state, manual, params, progress, error, retry_of, created, started, finished, instance, attempt"

// CreateJob inserts j (state queued unless set) and sets j.ID.
func (c *DB) CreateJob(ctx context.Context, j *Job) error {
	return c.createJob(ctx, c.db, j)
}

func (c *DB) createJob(ctx context.Context, q querier, j *Job) error {
	if j.State == "" {
		j.State = JobQueued
	}
	if j.Created.IsZero() {
		j.Created = time.Now().UTC()
	}
	if len(j.Params) == 0 {
		j.Params = json.RawMessage("{}")
	}
	if len(j.Progress) == 0 {
		j.Progress = json.RawMessage("{}")
	}
	id, err := c.insertID(ctx, q, `INSERT INTO jobs (kind, host, state, manual, params, progress, error, retry_of, created, started, finished)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		j.Kind, j.Host, j.State, b2i(j.Manual), string(j.Params), string(j.Progress), j.Error, j.RetryOf,
		nanos(j.Created), nanos(j.Started), nanos(j.Finished))
	if err != nil {
		return fmt.Errorf("create %s job: %w", j.Kind, err)
	}
	j.ID = id
	return nil
}

// Job returns one job, or ErrNotFound.
func (c *DB) Job(ctx context.Context, id int64) (*Job, error) {
	js, err := c.jobs(ctx, "WHERE id = ?", "id", id)
	if err != nil {
		return nil, err
	}
	if len(js) == 0 {
		return nil, fmt.Errorf("job %d: %w", id, ErrNotFound)
	}
	return &js[0], nil
}

// JobFilter selects jobs for Jobs. Zero fields match everything.
type JobFilter struct {
	Host   string
	Kind   string
	States []string
	Limit  int // newest Limit jobs; 0 = all
}

// Jobs lists jobs matching f, newest first.
func (c *DB) Jobs(ctx context.Context, f JobFilter) ([]Job, error) {
	var conds []string
	var args []any
	if f.Host != "" {
		conds, args = append(conds, "host = ?"), append(args, f.Host)
	}
	if f.Kind != "" {
		conds, args = append(conds, "kind = ?"), append(args, f.Kind)
	}
	if len(f.States) > 0 {
		conds = append(conds, "state IN (?"+strings.Repeat(", ?", len(f.States)-1)+")")
		for _, s := range f.States {
			args = append(args, s)
		}
	}
	where := ""
	if len(conds) > 0 {
		where = "WHERE " + strings.Join(conds, " AND ")
	}
	order := "id DESC"
	if f.Limit > 0 {
		order += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return c.jobs(ctx, where, order, args...)
}

// QueuedJobs lists queued jobs in run order: manual first, then by age.
func (c *DB) QueuedJobs(ctx context.Context) ([]Job, error) {
	return c.jobs(ctx, "WHERE state = ?", "manual DESC, id", JobQueued)
}

func (c *DB) jobs(ctx context.Context, where, order string, args ...any) ([]Job, error) {
	rows, err := c.query(ctx, "SELECT "+jobCols+" FROM jobs "+where+" ORDER BY "+order, args...)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var out []Job
	for rows.Next() {
		var j Job
		var manual, created, started, finished int64
		var params, progress string
		if err := rows.Scan(&j.ID, &j.Kind, &j.Host, &j.State, &manual, &params, &progress, &j.Error, &j.RetryOf,
			&created, &started, &finished, &j.Instance, &j.Attempt); err != nil {
			return nil, err
		}
		j.Manual = manual != 0
		j.Params, j.Progress = json.RawMessage(params), json.RawMessage(progress)
		j.Created, j.Started, j.Finished = fromNanos(created), fromNanos(started), fromNanos(finished)
		out = append(out, j)
	}
	return out, rows.Err()
}

// ErrJobState: the job is not in a state that allows the transition.
var ErrJobState = errors.New("job is not in the required state")

// StartJob moves a queued job to running.
func (c *DB) StartJob(ctx context.Context, id int64, now time.Time) error {
	return c.transition(ctx, id, JobQueued, JobRunning, "started = ?", nanos(now))
}

// FinishJob moves a running job to a final state with an error message.
func (c *DB) FinishJob(ctx context.Context, id int64, state, errMsg string, now time.Time) error {
	if !JobFinal(state) {
		return fmt.Errorf("finish job %d: %q is not a final state", id, state)
	}
	return c.transition(ctx, id, JobRunning, state, "finished = ?, error = ?", nanos(now), errMsg)
}

// CancelQueuedJob cancels a job that has not started.
func (c *DB) CancelQueuedJob(ctx context.Context, id int64, now time.Time) error {
	return c.transition(ctx, id, JobQueued, JobCancelled, "finished = ?, error = ?", nanos(now), "cancelled before it started")
}

func (c *DB) transition(ctx context.Context, id int64, from, to, set string, args ...any) error {
	args = append([]any{to}, args...)
	args = append(args, id, from)
	res, err := c.exec(ctx, "UPDATE jobs SET state = ?, "+set+" WHERE id = ? AND state = ?", args...)
	if err != nil {
		return fmt.Errorf("job %d %s → %s: %w", id, from, to, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := c.Job(ctx, id); err != nil {
			return err
		}
		return fmt.Errorf("job %d %s → %s: %w", id, from, to, ErrJobState)
	}
	return nil
}

// SetJobProgress stores the latest progress report of a job.
func (c *DB) SetJobProgress(ctx context.Context, id int64, progress json.RawMessage) error {
	_, err := c.exec(ctx, "UPDATE jobs SET progress = ? WHERE id = ?", string(progress), id)
	if err != nil {
		return fmt.Errorf("job %d progress: %w", id, err)
	}
	return nil
}

// RecoverJobs runs at startup: jobs still marked running belong to a
// process that died, so they become interrupted; every interrupted job
// that was not re-queued yet gets a new queued job (RetryOf = its id).
// It returns the new jobs.
func (c *DB) RecoverJobs(ctx context.Context, now time.Time) ([]Job, error) {
	var out []Job
	err := c.tx(ctx, func(tx *sql.Tx) error {
		out = nil
		if _, err := tx.ExecContext(ctx, c.rebind("UPDATE jobs SET state = ?, finished = ?, error = ? WHERE state = ?"),
			JobInterrupted, nanos(now), "interrupted: the appliance stopped while it ran", JobRunning); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, c.rebind(`SELECT id, kind, host, manual, params FROM jobs j WHERE state = ?
			AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.retry_of = j.id) ORDER BY id`), JobInterrupted)
		if err != nil {
			return err
		}
		var todo []Job
		for rows.Next() {
			var j Job
			var manual int64
			var params string
			if err := rows.Scan(&j.RetryOf, &j.Kind, &j.Host, &manual, &params); err != nil {
				rows.Close()
				return err
			}
			j.Manual, j.Params, j.Created = manual != 0, json.RawMessage(params), now
			todo = append(todo, j)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for i := range todo {
			if err := c.createJob(ctx, tx, &todo[i]); err != nil {
				return err
			}
		}
		out = todo
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recover jobs: %w", err)
	}
	return out, nil
}

// A JobEvent is one log line of a job.
type JobEvent struct {
	ID      int64
	JobID   int64
	Time    time.Time
	Level   string // "info", "warn", "error"
	Message string
}

// AddJobEvent appends a log line to a job.
func (c *DB) AddJobEvent(ctx context.Context, e *JobEvent) error {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	id, err := c.insertID(ctx, c.db, "INSERT INTO job_events (job_id, time, level, message) VALUES (?, ?, ?, ?)",
		e.JobID, nanos(e.Time), e.Level, e.Message)
	if err != nil {
		return fmt.Errorf("job %d event: %w", e.JobID, err)
	}
	e.ID = id
	return nil
}

// JobEvents lists a job's log lines in order.
func (c *DB) JobEvents(ctx context.Context, jobID int64) ([]JobEvent, error) {
	rows, err := c.query(ctx, "SELECT id, job_id, time, level, message FROM job_events WHERE job_id = ? ORDER BY id", jobID)
	if err != nil {
		return nil, fmt.Errorf("job %d events: %w", jobID, err)
	}
	defer rows.Close()
	var out []JobEvent
	for rows.Next() {
		var e JobEvent
		var t int64
		if err := rows.Scan(&e.ID, &e.JobID, &t, &e.Level, &e.Message); err != nil {
			return nil, err
		}
		e.Time = fromNanos(t)
		out = append(out, e)
	}
	return out, rows.Err()
}

// SetJobState moves a job that has not ended to state: to running (sets
// started), back to queued (a retry; errMsg says why), or to a final state
// (sets finished). A job that already ended is ErrJobState.
func (c *DB) SetJobState(ctx context.Context, id int64, state, errMsg string, now time.Time) error {
	var res sql.Result
	var err error
	switch {
	case state == JobRunning:
		res, err = c.exec(ctx, "UPDATE jobs SET state = ?, started = ?, error = ? WHERE id = ? AND state IN (?, ?)",
			state, nanos(now), errMsg, id, JobQueued, JobRunning)
	case state == JobQueued:
		res, err = c.exec(ctx, "UPDATE jobs SET state = ?, error = ? WHERE id = ? AND state IN (?, ?)",
			state, errMsg, id, JobQueued, JobRunning)
	case JobFinal(state):
		res, err = c.exec(ctx, "UPDATE jobs SET state = ?, finished = ?, error = ? WHERE id = ? AND state IN (?, ?)",
			state, nanos(now), errMsg, id, JobQueued, JobRunning)
	default:
		return fmt.Errorf("job %d: unknown state %q", id, state)
	}
	if err != nil {
		return fmt.Errorf("job %d → %s: %w", id, state, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := c.Job(ctx, id); err != nil {
			return err
		}
		return fmt.Errorf("job %d → %s: %w", id, state, ErrJobState)
	}
	return nil
}

// InterruptRunning marks every running job interrupted (at shutdown; the
// next start re-queues them with RecoverJobs).
func (c *DB) InterruptRunning(ctx context.Context, now time.Time) error {
	_, err := c.exec(ctx, "UPDATE jobs SET state = ?, finished = ?, error = ? WHERE state = ?",
		JobInterrupted, nanos(now), "interrupted: the appliance shut down while it ran", JobRunning)
	if err != nil {
		return fmt.Errorf("interrupt running jobs: %w", err)
	}
	return nil
}

// SetJobManual raises a job to manual priority (a person asked for it
// while it waited as a scheduled job).
func (c *DB) SetJobManual(ctx context.Context, id int64) error {
	_, err := c.exec(ctx, "UPDATE jobs SET manual = 1 WHERE id = ?", id)
	return err
}
