package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Snapshot statuses.
const (
	SnapshotComplete = "complete"
	SnapshotPartial  = "partial" // finished with per-file errors, or interrupted
)

// A Snapshot is the index row of one pool snapshot manifest.
type Snapshot struct {
	ID       string // the pool's snapshot id
	Host     string
	Source   string
	Started  time.Time
	Finished time.Time
	Root     string // root tree digest (hex)
	Status   string
	Files    int64
	Bytes    int64
	BytesNew int64
	Errors   int64
	JobID    int64
}

const snapCols = "id, host, source, started, finished, root, status, files, bytes, bytes_new, errors, job_id"

// PutSnapshot inserts or replaces a snapshot row.
func (c *DB) PutSnapshot(ctx context.Context, s *Snapshot) error {
	return c.putSnapshot(ctx, c.db, s)
}

func (c *DB) putSnapshot(ctx context.Context, q querier, s *Snapshot) error {
	_, err := q.ExecContext(ctx, c.rebind(`INSERT INTO snapshots (`+snapCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET host = excluded.host, source = excluded.source, started = excluded.started,
			finished = excluded.finished, root = excluded.root, status = excluded.status, files = excluded.files,
			bytes = excluded.bytes, bytes_new = excluded.bytes_new, errors = excluded.errors, job_id = excluded.job_id`),
		s.ID, s.Host, s.Source, nanos(s.Started), nanos(s.Finished), s.Root, s.Status, s.Files, s.Bytes, s.BytesNew, s.Errors, s.JobID)
	if err != nil {
		return fmt.Errorf("put snapshot %s: %w", s.ID, err)
	}
	return nil
}

// DeleteSnapshot removes a snapshot row.
func (c *DB) DeleteSnapshot(ctx context.Context, id string) error {
	res, err := c.exec(ctx, "DELETE FROM snapshots WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("delete snapshot %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
	return nil
}

// ReplaceSnapshots replaces the whole index with snaps in one transaction
// (catalog rebuild from the pool's manifests).
func (c *DB) ReplaceSnapshots(ctx context.Context, snaps []Snapshot) error {
	return c.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM snapshots"); err != nil {
			return err
		}
		for i := range snaps {
			if err := c.putSnapshot(ctx, tx, &snaps[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// Snapshot returns one snapshot row, or ErrNotFound.
func (c *DB) Snapshot(ctx context.Context, id string) (*Snapshot, error) {
	ss, err := c.snapshots(ctx, "WHERE id = ?", id)
	if err != nil {
		return nil, err
	}
	if len(ss) == 0 {
		return nil, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
	return &ss[0], nil
}

// Snapshots lists snapshots, oldest first; host "" means every host.
func (c *DB) Snapshots(ctx context.Context, host string) ([]Snapshot, error) {
	if host == "" {
		return c.snapshots(ctx, "")
	}
	return c.snapshots(ctx, "WHERE host = ?", host)
}

// LastSnapshot returns the newest snapshot of host+source (complete ones
// only when completeOnly), or ErrNotFound.
func (c *DB) LastSnapshot(ctx context.Context, host, source string, completeOnly bool) (*Snapshot, error) {
	where := "WHERE host = ? AND source = ?"
	args := []any{host, source}
	if completeOnly {
		where += " AND status = ?"
		args = append(args, SnapshotComplete)
	}
	ss, err := c.snapshotsOrdered(ctx, where, "started DESC, id DESC LIMIT 1", args...)
	if err != nil {
		return nil, err
	}
	if len(ss) == 0 {
		return nil, fmt.Errorf("snapshot of %s/%s: %w", host, source, ErrNotFound)
	}
	return &ss[0], nil
}

func (c *DB) snapshots(ctx context.Context, where string, args ...any) ([]Snapshot, error) {
	return c.snapshotsOrdered(ctx, where, "started, id", args...)
}

func (c *DB) snapshotsOrdered(ctx context.Context, where, order string, args ...any) ([]Snapshot, error) {
	rows, err := c.query(ctx, "SELECT "+snapCols+" FROM snapshots "+where+" ORDER BY "+order, args...)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	defer rows.Close()
	var out []Snapshot
	for rows.Next() {
		var s Snapshot
		var started, finished int64
		if err := rows.Scan(&s.ID, &s.Host, &s.Source, &started, &finished, &s.Root, &s.Status,
			&s.Files, &s.Bytes, &s.BytesNew, &s.Errors, &s.JobID); err != nil {
			return nil, err
		}
		s.Started, s.Finished = fromNanos(started), fromNanos(finished)
		out = append(out, s)
	}
	return out, rows.Err()
}
