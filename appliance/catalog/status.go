package catalog

import (
	"context"
	"fmt"
	"time"
)

// BackupStatus is the outcome of the last backup attempt of one source of
// a host, for metrics and the dashboard.
type BackupStatus struct {
	Host        string
	Source      string
	Status      string // "complete", "partial", "failed"
	Error       string
	Attempt     time.Time // when the last attempt ended
	LastSuccess time.Time // when the last complete or partial snapshot ended
	Duration    time.Duration
	Files       int64
	Bytes       int64
	BytesNew    int64
}

// PutBackupStatus records an attempt. A failed attempt keeps the previous
// LastSuccess and counters.
func (c *DB) PutBackupStatus(ctx context.Context, s *BackupStatus) error {
	var err error
	if s.Status == "failed" {
		_, err = c.exec(ctx, `INSERT INTO backup_status (host, source, status, error, attempt, duration)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (host, source) DO UPDATE SET status = excluded.status, error = excluded.error,
				attempt = excluded.attempt, duration = excluded.duration`,
			s.Host, s.Source, s.Status, s.Error, nanos(s.Attempt), int64(s.Duration))
	} else {
		_, err = c.exec(ctx, `INSERT INTO backup_status (host, source, status, error, attempt, last_success, duration, files, bytes, bytes_new)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (host, source) DO UPDATE SET status = excluded.status, error = excluded.error,
				attempt = excluded.attempt, last_success = excluded.last_success, duration = excluded.duration,
				files = excluded.files, bytes = excluded.bytes, bytes_new = excluded.bytes_new`,
			s.Host, s.Source, s.Status, s.Error, nanos(s.Attempt), nanos(s.LastSuccess), int64(s.Duration),
			s.Files, s.Bytes, s.BytesNew)
	}
	if err != nil {
		return fmt.Errorf("backup status %s/%s: %w", s.Host, s.Source, err)
	}
	return nil
}

// BackupStatuses lists every recorded status by host and source.
func (c *DB) BackupStatuses(ctx context.Context) ([]BackupStatus, error) {
	rows, err := c.query(ctx, `SELECT host, source, status, error, attempt, last_success, duration, files, bytes, bytes_new
		FROM backup_status ORDER BY host, source`)
	if err != nil {
		return nil, fmt.Errorf("list backup status: %w", err)
	}
	defer rows.Close()
	var out []BackupStatus
	for rows.Next() {
		var s BackupStatus
		var attempt, last, dur int64
		if err := rows.Scan(&s.Host, &s.Source, &s.Status, &s.Error, &attempt, &last, &dur, &s.Files, &s.Bytes, &s.BytesNew); err != nil {
			return nil, err
		}
		s.Attempt, s.LastSuccess, s.Duration = fromNanos(attempt), fromNanos(last), time.Duration(dur)
		out = append(out, s)
	}
	return out, rows.Err()
}
