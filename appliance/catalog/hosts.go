package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// A Host is a machine Cairn backs up.
type Host struct {
	ID       int64
	Name     string
	Address  string // how to reach it (hostname or IP); "" for local sources
	Enabled  bool
	Settings map[string]string // per-host overrides (free-form)
	Created  time.Time
	Groups   []string
}

// A Source is one thing to pull from a host (a directory over SFTP, an SMB
// share, a database dump…). Secret is sealed by the caller; the catalog
// never sees plaintext credentials.
type Source struct {
	ID       int64
	HostID   int64
	Name     string
	Method   string
	Path     string
	Excludes []string
	Options  map[string]string
	Secret   []byte // sealed; nil when the source has no credentials
}

// CreateHost inserts h and sets h.ID. A duplicate name is ErrExists; an
// unknown group is ErrNotFound and stores nothing.
func (c *DB) CreateHost(ctx context.Context, h *Host) error {
	if h.Created.IsZero() {
		h.Created = time.Now().UTC()
	}
	settings, _ := json.Marshal(nonNilMap(h.Settings))
	return c.tx(ctx, func(tx *sql.Tx) error {
		id, err := c.insertID(ctx, tx, "INSERT INTO hosts (name, address, enabled, settings, created) VALUES (?, ?, ?, ?, ?)",
			h.Name, h.Address, b2i(h.Enabled), string(settings), nanos(h.Created))
		if isUnique(err) {
			return fmt.Errorf("host %s: %w", h.Name, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("create host %s: %w", h.Name, err)
		}
		h.ID = id
		return c.setHostGroups(ctx, tx, h)
	})
}

// UpdateHost writes h's address, enabled flag, settings, name and groups.
func (c *DB) UpdateHost(ctx context.Context, h *Host) error {
	settings, _ := json.Marshal(nonNilMap(h.Settings))
	return c.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, c.rebind("UPDATE hosts SET name = ?, address = ?, enabled = ?, settings = ? WHERE id = ?"),
			h.Name, h.Address, b2i(h.Enabled), string(settings), h.ID)
		if isUnique(err) {
			return fmt.Errorf("host %s: %w", h.Name, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("update host %s: %w", h.Name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("host %s: %w", h.Name, ErrNotFound)
		}
		return c.setHostGroups(ctx, tx, h)
	})
}

func (c *DB) setHostGroups(ctx context.Context, tx *sql.Tx, h *Host) error {
	if _, err := tx.ExecContext(ctx, c.rebind("DELETE FROM host_groups WHERE host_id = ?"), h.ID); err != nil {
		return err
	}
	for _, g := range h.Groups {
		gid, err := c.groupID(ctx, tx, g)
		if err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
		if _, err := tx.ExecContext(ctx, c.rebind("INSERT INTO host_groups (host_id, group_id) VALUES (?, ?)"), h.ID, gid); err != nil {
			return err
		}
	}
	return nil
}

// DeleteHost removes a host with its sources, schedules and retention.
// Its snapshots stay in the index (they still exist in the pool).
func (c *DB) DeleteHost(ctx context.Context, name string) error {
	res, err := c.exec(ctx, "DELETE FROM hosts WHERE name = ?", name)
	if err != nil {
		return fmt.Errorf("delete host %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("host %s: %w", name, ErrNotFound)
	}
	return nil
}

// Host returns the named host, or ErrNotFound.
func (c *DB) Host(ctx context.Context, name string) (*Host, error) {
	hs, err := c.hosts(ctx, "WHERE name = ?", name)
	if err != nil {
		return nil, err
	}
	if len(hs) == 0 {
		return nil, fmt.Errorf("host %s: %w", name, ErrNotFound)
	}
	return &hs[0], nil
}

// Hosts lists every host, by name.
func (c *DB) Hosts(ctx context.Context) ([]Host, error) { return c.hosts(ctx, "") }

func (c *DB) hosts(ctx context.Context, where string, args ...any) ([]Host, error) {
	rows, err := c.query(ctx, "SELECT id, name, address, enabled, settings, created FROM hosts "+where+" ORDER BY name", args...)
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	defer rows.Close()
	var out []Host
	for rows.Next() {
		var h Host
		var enabled, created int64
		var settings string
		if err := rows.Scan(&h.ID, &h.Name, &h.Address, &enabled, &settings, &created); err != nil {
			return nil, err
		}
		h.Enabled, h.Created = enabled != 0, fromNanos(created)
		if err := json.Unmarshal([]byte(settings), &h.Settings); err != nil {
			return nil, fmt.Errorf("host %s settings: %w", h.Name, err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	for i := range out {
		out[i].Groups, err = c.names(ctx, `SELECT g.name FROM groups g JOIN host_groups hg ON hg.group_id = g.id
			WHERE hg.host_id = ? ORDER BY g.name`, out[i].ID)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *DB) names(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := c.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// PutSource inserts or replaces (by host and name) a source of a host.
func (c *DB) PutSource(ctx context.Context, s *Source) error {
	ex, _ := json.Marshal(nonNilSlice(s.Excludes))
	opts, _ := json.Marshal(nonNilMap(s.Options))
	id, err := c.insertID(ctx, c.db, `INSERT INTO sources (host_id, name, method, path, excludes, options, secret)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (host_id, name) DO UPDATE SET method = excluded.method, path = excluded.path,
			excludes = excluded.excludes, options = excluded.options, secret = excluded.secret`,
		s.HostID, s.Name, s.Method, s.Path, string(ex), string(opts), s.Secret)
	if err != nil {
		return fmt.Errorf("put source %s: %w", s.Name, err)
	}
	s.ID = id
	return nil
}

// DeleteSource removes one source of a host.
func (c *DB) DeleteSource(ctx context.Context, hostID int64, name string) error {
	res, err := c.exec(ctx, "DELETE FROM sources WHERE host_id = ? AND name = ?", hostID, name)
	if err != nil {
		return fmt.Errorf("delete source %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("source %s: %w", name, ErrNotFound)
	}
	return nil
}

// Sources lists a host's sources, by name.
func (c *DB) Sources(ctx context.Context, hostID int64) ([]Source, error) {
	rows, err := c.query(ctx, `SELECT id, host_id, name, method, path, excludes, options, secret
		FROM sources WHERE host_id = ? ORDER BY name`, hostID)
	if err != nil {
		return nil, fmt.Errorf("list sources: %w", err)
	}
	defer rows.Close()
	var out []Source
	for rows.Next() {
		var s Source
		var ex, opts string
		if err := rows.Scan(&s.ID, &s.HostID, &s.Name, &s.Method, &s.Path, &ex, &opts, &s.Secret); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(ex), &s.Excludes); err != nil {
			return nil, fmt.Errorf("source %s excludes: %w", s.Name, err)
		}
		if err := json.Unmarshal([]byte(opts), &s.Options); err != nil {
			return nil, fmt.Errorf("source %s options: %w", s.Name, err)
		}
		if len(s.Secret) == 0 {
			s.Secret = nil
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// A Schedule says when a host (or one of its sources, when Source is set)
// is backed up: a cron expression plus up to Jitter of random delay.
type Schedule struct {
	ID       int64
	HostID   int64
	Source   string // "" = every source of the host
	Cron     string
	Jitter   time.Duration
	Blackout []string // windows such as "08:00-18:00"
	LastRun  time.Time
}

// PutSchedule inserts or replaces the schedule of (host, source).
func (c *DB) PutSchedule(ctx context.Context, s *Schedule) error {
	bo, _ := json.Marshal(nonNilSlice(s.Blackout))
	id, err := c.insertID(ctx, c.db, `INSERT INTO schedules (host_id, source, cron, jitter, blackout, last_run)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (host_id, source) DO UPDATE SET cron = excluded.cron, jitter = excluded.jitter,
			blackout = excluded.blackout`,
		s.HostID, s.Source, s.Cron, int64(s.Jitter), string(bo), nanos(s.LastRun))
	if err != nil {
		return fmt.Errorf("put schedule: %w", err)
	}
	s.ID = id
	return nil
}

// DeleteSchedules removes every schedule of a host.
func (c *DB) DeleteSchedules(ctx context.Context, hostID int64) error {
	_, err := c.exec(ctx, "DELETE FROM schedules WHERE host_id = ?", hostID)
	return err
}

// SetScheduleRun records when a schedule last fired.
func (c *DB) SetScheduleRun(ctx context.Context, id int64, t time.Time) error {
	_, err := c.exec(ctx, "UPDATE schedules SET last_run = ? WHERE id = ?", nanos(t), id)
	return err
}

// Schedules lists the schedules of one host (hostID > 0) or of all hosts.
func (c *DB) Schedules(ctx context.Context, hostID int64) ([]Schedule, error) {
	q := "SELECT id, host_id, source, cron, jitter, blackout, last_run FROM schedules"
	var args []any
	if hostID > 0 {
		q += " WHERE host_id = ?"
		args = append(args, hostID)
	}
	rows, err := c.query(ctx, q+" ORDER BY host_id, source", args...)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	defer rows.Close()
	var out []Schedule
	for rows.Next() {
		var s Schedule
		var jitter, last int64
		var bo string
		if err := rows.Scan(&s.ID, &s.HostID, &s.Source, &s.Cron, &jitter, &bo, &last); err != nil {
			return nil, err
		}
		s.Jitter, s.LastRun = time.Duration(jitter), fromNanos(last)
		if err := json.Unmarshal([]byte(bo), &s.Blackout); err != nil {
			return nil, fmt.Errorf("schedule blackout: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// Retention is a host's keep policy (restic forget semantics).
type Retention struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
}

// IsZero reports whether no rule is set (keep everything).
func (r Retention) IsZero() bool { return r == Retention{} }

// SetRetention sets a host's retention policy.
func (c *DB) SetRetention(ctx context.Context, hostID int64, r Retention) error {
	_, err := c.exec(ctx, `INSERT INTO retention (host_id, keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (host_id) DO UPDATE SET keep_last = excluded.keep_last, keep_hourly = excluded.keep_hourly,
			keep_daily = excluded.keep_daily, keep_weekly = excluded.keep_weekly,
			keep_monthly = excluded.keep_monthly, keep_yearly = excluded.keep_yearly`,
		hostID, r.Last, r.Hourly, r.Daily, r.Weekly, r.Monthly, r.Yearly)
	if err != nil {
		return fmt.Errorf("set retention: %w", err)
	}
	return nil
}

// Retention returns a host's policy (zero when none is set).
func (c *DB) Retention(ctx context.Context, hostID int64) (Retention, error) {
	var r Retention
	err := c.queryRow(ctx, `SELECT keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly
		FROM retention WHERE host_id = ?`, hostID).Scan(&r.Last, &r.Hourly, &r.Daily, &r.Weekly, &r.Monthly, &r.Yearly)
	if errors.Is(err, sql.ErrNoRows) {
		return Retention{}, nil
	}
	if err != nil {
		return r, fmt.Errorf("read retention: %w", err)
	}
	return r, nil
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
