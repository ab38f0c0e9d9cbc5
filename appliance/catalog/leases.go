package catalog

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

// Job leasing: with several instances on one PostgreSQL catalog the jobs
// table is the shared queue. An instance claims a queued job (ClaimJob),
// which makes it running, owned by that instance and leased until a time
// the owner keeps pushing forward (RenewLeases). An owner that dies stops
// renewing; any instance then expires the lease (ExpireLeases): the job
// ends interrupted and a new queued job re-runs it elsewhere. Every
// transition of a leased job names its owner, so an instance that lost a
// lease can never overwrite what another did since.
//
// The same SQL runs on SQLite (one instance; the tests use it); on
// PostgreSQL claims take a transaction-scoped advisory lock, so the count
// behind the global limit and the per-host exclusion cannot race, and the
// row is picked with FOR UPDATE SKIP LOCKED.

// claimLockKey is the advisory lock key serialising claims.
var claimLockKey = lockKey("claim")

// ClaimSpec says what an instance may claim.
type ClaimSpec struct {
	Instance string
	Kinds    []string // kinds of the shared queue (non-empty)
	// Global caps running jobs of Kinds across all instances (0: no cap).
	Global int
	Lease  time.Duration
	Now    time.Time
	// Fair makes an instance that runs jobs yield to a live instance
	// (heartbeat within Lease) that runs fewer and has room, so work
	// spreads over the fleet; that instance claims on the next
	// notification or poll. An instance running nothing never yields.
	Fair bool
	// Clock, when set, is read once the claim holds the claim lock, so a
	// job's start is never before the end of a job it waited for.
	Clock func() time.Time
}

// ClaimJob leases the next queued job of sp.Kinds to sp.Instance: manual
// jobs first, then oldest first, skipping jobs whose not_before is still
// ahead and hosts with a running job of those kinds, and nothing at all
// when sp.Global jobs already run. It returns nil, nil when there is
// nothing to claim.
func (c *DB) ClaimJob(ctx context.Context, sp ClaimSpec) (*Job, error) {
	if sp.Instance == "" || len(sp.Kinds) == 0 || sp.Lease <= 0 {
		return nil, fmt.Errorf("claim job: instance, kinds and lease are required")
	}
	in := "(?" + strings.Repeat(", ?", len(sp.Kinds)-1) + ")"
	kinds := make([]any, len(sp.Kinds))
	for i, k := range sp.Kinds {
		kinds[i] = k
	}
	var got *Job
	err := c.tx(ctx, func(tx *sql.Tx) error {
		got = nil
		if c.dialect == postgres {
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", claimLockKey); err != nil {
				return err
			}
		}
		if sp.Clock != nil {
			sp.Now = sp.Clock()
		}
		if sp.Global > 0 {
			var n int
			args := append([]any{JobRunning}, kinds...)
			if err := tx.QueryRowContext(ctx, c.rebind("SELECT COUNT(*) FROM jobs WHERE state = ? AND kind IN "+in), args...).Scan(&n); err != nil {
				return err
			}
			if n >= sp.Global {
				return nil
			}
		}
		if sp.Fair {
			yield, err := c.shouldYield(ctx, tx, sp, in, kinds)
			if err != nil || yield {
				return err
			}
		}
		q := `SELECT id FROM jobs j WHERE j.state = ? AND j.kind IN ` + in + ` AND j.not_before <= ?
			AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.state = ? AND r.host = j.host AND r.host <> '' AND r.kind IN ` + in + `)
			ORDER BY j.manual DESC, j.id LIMIT 1`
		if c.dialect == postgres {
			q += " FOR UPDATE SKIP LOCKED"
		}
		args := append([]any{JobQueued}, kinds...)
		args = append(args, nanos(sp.Now), JobRunning)
		args = append(args, kinds...)
		var id int64
		switch err := tx.QueryRowContext(ctx, c.rebind(q), args...).Scan(&id); {
		case err == sql.ErrNoRows:
			return nil
		case err != nil:
			return err
		}
		started := sp.Now
		if c.dialect == postgres {
			// The fleet's one clock, read after the limit was checked:
			// a start never precedes the end of a job it waited for.
			var us int64
			if err := tx.QueryRowContext(ctx, "SELECT "+dbMicros).Scan(&us); err != nil {
				return err
			}
			started = time.UnixMicro(us)
		}
		if _, err := tx.ExecContext(ctx, c.rebind(`UPDATE jobs SET state = ?, instance = ?, lease_until = ?, started = ?,
			attempt = attempt + 1, cancel_req = 0 WHERE id = ?`),
			JobRunning, sp.Instance, nanos(sp.Now.Add(sp.Lease)), nanos(started), id); err != nil {
			return err
		}
		got = &Job{ID: id}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim job for instance %s: %w", sp.Instance, err)
	}
	if got == nil {
		return nil, nil
	}
	return c.Job(ctx, got.ID)
}

// shouldYield reports whether another live instance runs fewer jobs of
// the kinds than sp.Instance and has room for one more.
func (c *DB) shouldYield(ctx context.Context, tx *sql.Tx, sp ClaimSpec, in string, kinds []any) (bool, error) {
	count := "(SELECT COUNT(*) FROM jobs r WHERE r.state = ? AND r.kind IN " + in + " AND r.instance = %s)"
	args := append([]any{JobRunning}, kinds...)
	args = append(args, sp.Instance)
	var mine int
	if err := tx.QueryRowContext(ctx, c.rebind("SELECT "+fmt.Sprintf(count, "?")), args...).Scan(&mine); err != nil {
		return false, err
	}
	if mine == 0 {
		return false, nil
	}
	q := "SELECT COUNT(*) FROM instances i WHERE i.stopped = 0 AND i.last_heartbeat > ? AND i.id <> ? AND i.capacity > " +
		fmt.Sprintf(count, "i.id") + " AND " + fmt.Sprintf(count, "i.id") + " < ?"
	args = []any{nanos(sp.Now.Add(-sp.Lease)), sp.Instance, JobRunning}
	args = append(args, kinds...)
	args = append(args, JobRunning)
	args = append(args, kinds...)
	args = append(args, mine)
	var n int
	if err := tx.QueryRowContext(ctx, c.rebind(q), args...).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

// Notify wakes every instance listening on the job queue (Listen): a job
// was queued or a slot freed. On SQLite it does nothing.
func (c *DB) Notify(ctx context.Context) error {
	if c.dialect != postgres {
		return nil
	}
	if _, err := c.db.ExecContext(ctx, "SELECT pg_notify($1, '')", notifyChannel); err != nil {
		return fmt.Errorf("notify job queue: %w", err)
	}
	return nil
}

// notifyChannel is the LISTEN/NOTIFY channel of the job queue.
const notifyChannel = "cairn_jobs"

// Listen calls wake for every Notify until ctx is done, on a connection
// of its own that it re-opens after errors. On SQLite it returns at once.
func (c *DB) Listen(ctx context.Context, wake func()) {
	if c.dialect != postgres {
		return
	}
	for ctx.Err() == nil {
		c.listenOnce(ctx, wake)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (c *DB) listenOnce(ctx context.Context, wake func()) error {
	conn, err := c.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		if _, err := pc.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
			return err
		}
		wake() // anything notified while not listening
		for {
			if _, err := pc.WaitForNotification(ctx); err != nil {
				return err
			}
			wake()
		}
	})
}

// LeaseJob puts a job that runs outside the shared queue (a restore, a
// pool job started by a request) under instance's lease, so it is
// expired like a claimed one if the instance dies.
func (c *DB) LeaseJob(ctx context.Context, id int64, instance string, until time.Time) error {
	if _, err := c.exec(ctx, "UPDATE jobs SET instance = ?, lease_until = ?, attempt = attempt + 1 WHERE id = ? AND state = ?",
		instance, nanos(until), id, JobRunning); err != nil {
		return fmt.Errorf("lease job %d: %w", id, err)
	}
	return nil
}

// A Lease is a running job an instance holds.
type Lease struct {
	JobID           int64
	CancelRequested bool
}

// RenewLeases extends every lease instance holds to until and returns
// the leases it still holds. A job missing from the answer was taken from
// it (expired) or ended: its runner must stop.
func (c *DB) RenewLeases(ctx context.Context, instance string, until time.Time) ([]Lease, error) {
	rows, err := c.query(ctx, "UPDATE jobs SET lease_until = ? WHERE instance = ? AND state = ? AND lease_until > 0 RETURNING id, cancel_req",
		nanos(until), instance, JobRunning)
	if err != nil {
		return nil, fmt.Errorf("renew leases of instance %s: %w", instance, err)
	}
	defer rows.Close()
	var out []Lease
	for rows.Next() {
		var l Lease
		var cr int64
		if err := rows.Scan(&l.JobID, &cr); err != nil {
			return nil, err
		}
		l.CancelRequested = cr != 0
		out = append(out, l)
	}
	return out, rows.Err()
}

// RequestCancel asks the instance that runs job id to cancel it (it
// sees the request when it next renews its leases).
func (c *DB) RequestCancel(ctx context.Context, id int64) error {
	res, err := c.exec(ctx, "UPDATE jobs SET cancel_req = 1 WHERE id = ? AND state = ?", id, JobRunning)
	if err != nil {
		return fmt.Errorf("cancel job %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := c.Job(ctx, id); err != nil {
			return err
		}
		return fmt.Errorf("cancel job %d: %w", id, ErrJobState)
	}
	return nil
}

// EndLeased moves a job instance holds to a final state. ErrJobState:
// the instance no longer holds it.
func (c *DB) EndLeased(ctx context.Context, id int64, instance, state, errMsg string, now time.Time) error {
	if !JobFinal(state) {
		return fmt.Errorf("end job %d: %q is not a final state", id, state)
	}
	if c.dialect == postgres {
		return c.leased(ctx, id, instance, "state = ?, finished = "+dbMicros+" * 1000, error = ?, lease_until = 0", state, errMsg)
	}
	return c.leased(ctx, id, instance, "state = ?, finished = ?, error = ?, lease_until = 0", state, nanos(now), errMsg)
}

// dbMicros is PostgreSQL's clock in microseconds since the epoch. Claims
// and ends of leased jobs stamp started and finished with it, so the
// records of one fleet share one clock (leases use each instance's).
const dbMicros = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)"

// RetryLeased puts a job instance holds back in the queue, to be claimed
// again (by any instance) from notBefore on; errMsg says why.
func (c *DB) RetryLeased(ctx context.Context, id int64, instance, errMsg string, notBefore time.Time) error {
	return c.leased(ctx, id, instance, "state = ?, error = ?, lease_until = 0, not_before = ?", JobQueued, errMsg, nanos(notBefore))
}

func (c *DB) leased(ctx context.Context, id int64, instance, set string, args ...any) error {
	args = append(args, id, instance, JobRunning)
	res, err := c.exec(ctx, "UPDATE jobs SET "+set+" WHERE id = ? AND instance = ? AND state = ?", args...)
	if err != nil {
		return fmt.Errorf("job %d of instance %s: %w", id, instance, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("job %d is no longer held by instance %s: %w", id, instance, ErrJobState)
	}
	return nil
}

// RequeueLeased ends a job instance holds as interrupted (its instance is
// shutting down) and queues a new job that re-runs it (RetryOf = id), for
// any instance to claim. It returns the new job.
func (c *DB) RequeueLeased(ctx context.Context, id int64, instance, errMsg string, now time.Time) (*Job, error) {
	var nj *Job
	err := c.tx(ctx, func(tx *sql.Tx) error {
		nj = nil
		res, err := tx.ExecContext(ctx, c.rebind(`UPDATE jobs SET state = ?, finished = ?, error = ?, lease_until = 0
			WHERE id = ? AND instance = ? AND state = ?`), JobInterrupted, nanos(now), errMsg, id, instance, JobRunning)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("job %d is no longer held by instance %s: %w", id, instance, ErrJobState)
		}
		nj, err = c.retryOf(ctx, tx, id, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("requeue job %d: %w", id, err)
	}
	return nj, nil
}

// retryOf queues a copy of job id (RetryOf = id).
func (c *DB) retryOf(ctx context.Context, tx *sql.Tx, id int64, now time.Time) (*Job, error) {
	j := &Job{RetryOf: id, Created: now}
	var manual int64
	var params string
	if err := tx.QueryRowContext(ctx, c.rebind("SELECT kind, host, manual, params FROM jobs WHERE id = ?"), id).
		Scan(&j.Kind, &j.Host, &manual, &params); err != nil {
		return nil, err
	}
	j.Manual, j.Params = manual != 0, []byte(params)
	if err := c.createJob(ctx, tx, j); err != nil {
		return nil, err
	}
	return j, nil
}

// An ExpiredLease is a job whose instance stopped renewing its lease.
type ExpiredLease struct {
	Job      Job  // as it was (running, on Job.Instance)
	Retry    *Job // the queued job that re-runs it; nil for kinds not re-queued
	LeaseEnd time.Time
}

// ExpireLeases ends every running job whose lease ran out before now as
// interrupted, labelling it with its instance and the job that re-runs
// it, and re-queues those of the kinds in requeue. Several instances may
// call it at once: each expired job is handled exactly once.
func (c *DB) ExpireLeases(ctx context.Context, now time.Time, requeue []string) ([]ExpiredLease, error) {
	return c.expire(ctx, now, requeue, "lease_until > 0 AND lease_until < ?", []any{nanos(now)},
		func(e *ExpiredLease) string {
			return fmt.Sprintf("interrupted: instance %s stopped renewing its lease (expired %s)", e.Job.Instance,
				e.LeaseEnd.UTC().Format(time.RFC3339))
		})
}

// ReleaseInstance ends the leased jobs that instance holds as interrupted
// and re-queues those of the kinds in requeue, as ExpireLeases does, but
// without waiting for the leases to run out: the instance says itself it
// does not run them (a restart under the same ID after a crash, or jobs
// it holds but does not run). Only jobs among ids when ids is not nil.
func (c *DB) ReleaseInstance(ctx context.Context, instance string, ids []int64, now time.Time, requeue []string, why string) ([]ExpiredLease, error) {
	where := "lease_until > 0 AND instance = ?"
	args := []any{instance}
	if ids != nil {
		if len(ids) == 0 {
			return nil, nil
		}
		where += " AND id IN (?" + strings.Repeat(", ?", len(ids)-1) + ")"
		for _, id := range ids {
			args = append(args, id)
		}
	}
	return c.expire(ctx, now, requeue, where, args, func(*ExpiredLease) string {
		return "interrupted: " + why
	})
}

func (c *DB) expire(ctx context.Context, now time.Time, requeue []string, where string, whereArgs []any, label func(*ExpiredLease) string) ([]ExpiredLease, error) {
	var out []ExpiredLease
	err := c.tx(ctx, func(tx *sql.Tx) error {
		out = nil
		q := "SELECT " + jobCols + ", lease_until FROM jobs WHERE state = ? AND " + where + " ORDER BY id"
		if c.dialect == postgres {
			q += " FOR UPDATE SKIP LOCKED"
		}
		rows, err := tx.QueryContext(ctx, c.rebind(q), append([]any{JobRunning}, whereArgs...)...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var e ExpiredLease
			var manual, created, started, finished, until int64
			var params, progress string
			j := &e.Job
			if err := rows.Scan(&j.ID, &j.Kind, &j.Host, &j.State, &manual, &params, &progress, &j.Error, &j.RetryOf,
				&created, &started, &finished, &j.Instance, &j.Attempt, &until); err != nil {
				rows.Close()
				return err
			}
			j.Manual, j.Params, j.Progress = manual != 0, []byte(params), []byte(progress)
			j.Created, j.Started, e.LeaseEnd = fromNanos(created), fromNanos(started), fromNanos(until)
			out = append(out, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for i := range out {
			e := &out[i]
			msg := label(e)
			for _, k := range requeue {
				if k == e.Job.Kind {
					if e.Retry, err = c.retryOf(ctx, tx, e.Job.ID, now); err != nil {
						return err
					}
					msg += fmt.Sprintf("; job %d re-runs it (checkpoints it wrote stay as a partial snapshot)", e.Retry.ID)
				}
			}
			if _, err := tx.ExecContext(ctx, c.rebind("UPDATE jobs SET state = ?, finished = ?, error = ?, lease_until = 0 WHERE id = ?"),
				JobInterrupted, nanos(now), msg, e.Job.ID); err != nil {
				return err
			}
			e.Job.Error = msg
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("expire leases: %w", err)
	}
	return out, nil
}

// InterruptInstance marks the running jobs of one instance interrupted
// (its clean shutdown, when it could not re-queue them itself).
func (c *DB) InterruptInstance(ctx context.Context, instance string, now time.Time) error {
	_, err := c.exec(ctx, "UPDATE jobs SET state = ?, finished = ?, error = ?, lease_until = 0 WHERE state = ? AND instance = ?",
		JobInterrupted, nanos(now), "interrupted: instance "+instance+" shut down while it ran", JobRunning, instance)
	if err != nil {
		return fmt.Errorf("interrupt jobs of instance %s: %w", instance, err)
	}
	return nil
}

// RunningCount counts running jobs of the given kinds on all instances.
func (c *DB) RunningCount(ctx context.Context, kinds ...string) (int, error) {
	q := "SELECT COUNT(*) FROM jobs WHERE state = ?"
	args := []any{JobRunning}
	if len(kinds) > 0 {
		q += " AND kind IN (?" + strings.Repeat(", ?", len(kinds)-1) + ")"
		for _, k := range kinds {
			args = append(args, k)
		}
	}
	var n int
	if err := c.queryRow(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count running jobs: %w", err)
	}
	return n, nil
}

// A Singleton is a cluster-wide lock held by one instance: a PostgreSQL
// session advisory lock on a connection of its own. PostgreSQL releases it
// when that session ends, so a killed holder frees it without a timeout.
// On SQLite (one instance) it is a no-op lock that is always granted.
type Singleton struct {
	name string
	conn *sql.Conn
}

// TryLock takes the singleton lock name if no other session holds it;
// ok is false when another does.
func (c *DB) TryLock(ctx context.Context, name string) (_ *Singleton, ok bool, _ error) {
	if c.dialect != postgres {
		return &Singleton{name: name}, true, nil
	}
	conn, err := c.db.Conn(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", name, err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", lockKey(name)).Scan(&ok); err != nil {
		conn.Close()
		return nil, false, fmt.Errorf("lock %s: %w", name, err)
	}
	if !ok {
		conn.Close()
		return nil, false, nil
	}
	return &Singleton{name: name, conn: conn}, true, nil
}

// Held checks the lock is still held (its session is alive).
func (l *Singleton) Held(ctx context.Context) error {
	if l.conn == nil {
		return nil
	}
	if err := l.conn.PingContext(ctx); err != nil {
		return fmt.Errorf("lock %s: session lost: %w", l.name, err)
	}
	return nil
}

// Unlock releases the lock.
func (l *Singleton) Unlock() {
	if l == nil || l.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var unlocked bool
	err := l.conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1)", lockKey(l.name)).Scan(&unlocked)
	if err != nil || !unlocked {
		// The session may still hold the lock: never hand it back to the
		// pool, end it (PostgreSQL then releases the lock).
		l.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	l.conn.Close()
	l.conn = nil
}

// lockKey maps a lock name to an advisory lock key in cairn's space.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("cairn:" + name))
	return int64(h.Sum64())
}
