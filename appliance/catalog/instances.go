package catalog

import (
	"context"
	"fmt"
	"math"
	"time"
)

// An Instance is one `cairn serve` process using this catalog. It
// registers at start, renews LastHeartbeat while it lives and sets
// Stopped when it shuts down cleanly; one killed just stops beating.
type Instance struct {
	ID            string
	Host          string // hostname of the machine it runs on
	Addr          string // its HTTP address, "" when it listens on the socket only
	Version       string
	Started       time.Time
	LastHeartbeat time.Time
	Running       int     // jobs it runs now
	Capacity      int     // jobs it may run at once
	Load          float64 // 1-minute load average of its machine
	Stopped       time.Time
}

const instanceCols = "id, host, addr, version, started, last_heartbeat, running, capacity, load_milli, stopped"

// RegisterInstance records in (a new instance, or one restarting with
// the same ID).
func (c *DB) RegisterInstance(ctx context.Context, in *Instance) error {
	if in.ID == "" {
		return fmt.Errorf("register instance: empty id")
	}
	if in.LastHeartbeat.IsZero() {
		in.LastHeartbeat = in.Started
	}
	_, err := c.exec(ctx, `INSERT INTO instances (`+instanceCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
		ON CONFLICT (id) DO UPDATE SET host = excluded.host, addr = excluded.addr, version = excluded.version,
			started = excluded.started, last_heartbeat = excluded.last_heartbeat, running = excluded.running,
			capacity = excluded.capacity, load_milli = excluded.load_milli, stopped = 0`,
		in.ID, in.Host, in.Addr, in.Version, nanos(in.Started), nanos(in.LastHeartbeat), in.Running, in.Capacity, milli(in.Load))
	if err != nil {
		return fmt.Errorf("register instance %s: %w", in.ID, err)
	}
	return nil
}

// InstanceHeartbeat renews an instance's registration with its current
// load. An instance whose row was pruned is ErrNotFound: it re-registers.
func (c *DB) InstanceHeartbeat(ctx context.Context, id string, now time.Time, running int, load float64) error {
	res, err := c.exec(ctx, "UPDATE instances SET last_heartbeat = ?, running = ?, load_milli = ? WHERE id = ?",
		nanos(now), running, milli(load), id)
	if err != nil {
		return fmt.Errorf("heartbeat of instance %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("heartbeat of instance %s: %w", id, ErrNotFound)
	}
	return nil
}

// StopInstance records a clean shutdown.
func (c *DB) StopInstance(ctx context.Context, id string, now time.Time) error {
	if _, err := c.exec(ctx, "UPDATE instances SET stopped = ?, running = 0 WHERE id = ?", nanos(now), id); err != nil {
		return fmt.Errorf("stop instance %s: %w", id, err)
	}
	return nil
}

// Instances lists the registered instances, oldest start first.
func (c *DB) Instances(ctx context.Context) ([]Instance, error) {
	rows, err := c.query(ctx, "SELECT "+instanceCols+" FROM instances ORDER BY started, id")
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	defer rows.Close()
	var out []Instance
	for rows.Next() {
		var in Instance
		var started, hb, load, stopped int64
		if err := rows.Scan(&in.ID, &in.Host, &in.Addr, &in.Version, &started, &hb, &in.Running, &in.Capacity,
			&load, &stopped); err != nil {
			return nil, err
		}
		in.Started, in.LastHeartbeat, in.Stopped = fromNanos(started), fromNanos(hb), fromNanos(stopped)
		in.Load = float64(load) / 1000
		out = append(out, in)
	}
	return out, rows.Err()
}

// PruneInstances forgets instances that stopped, or last beat, before
// the given time. It returns how many it removed.
func (c *DB) PruneInstances(ctx context.Context, before time.Time) (int, error) {
	res, err := c.exec(ctx, "DELETE FROM instances WHERE (stopped > 0 AND stopped < ?) OR last_heartbeat < ?",
		nanos(before), nanos(before))
	if err != nil {
		return 0, fmt.Errorf("prune instances: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func milli(f float64) int64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return int64(math.Round(f * 1000))
}
