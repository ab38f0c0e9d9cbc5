package dbdump

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-backup/cairn/pullers"
)

// SumsSuffix ends the name of the file that records a database's table
// sums at dump time ("<db>.sums.json", next to "<db>.sql"), written when
// Options["record_sums"] is "true".
const SumsSuffix = ".sums.json"

// Sums is the content of a sums file.
type Sums struct {
	Database string    `json:"database"`
	Taken    time.Time `json:"taken"`
	// Consistent: taken in the dump's own snapshot (PostgreSQL, mode a:
	// pg_dump --snapshot); otherwise right after the dump, exact only
	// for tables not written meanwhile.
	Consistent bool                `json:"consistent"`
	Tables     map[string]TableSum `json:"tables"`
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	Tables     int      // tables compared
	Mismatches []string // "table: rows 10, recorded 11" …
}

// OK reports whether every table matched.
func (r *VerifyResult) OK() bool { return len(r.Mismatches) == 0 }

// Verify is the restore test: it loads dump (stored as file) into the new
// scratch database on the server target names, computes every table's
// row count and checksum, drops the scratch database again, and compares
// with recorded (a sums file's content). An error means the test could
// not run; a mismatch is in the result.
func (p *Puller) Verify(ctx context.Context, host string, target pullers.Source, dump io.Reader, file string, recorded []byte, scratch string) (*VerifyResult, error) {
	var want Sums
	if err := json.Unmarshal(recorded, &want); err != nil {
		return nil, fmt.Errorf("recorded sums: %w", err)
	}
	c, where, cleanup, err := p.setup(ctx, host, &target)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	if err := p.engine.restore(ctx, c, dump, file, scratch); err != nil {
		// A half-made scratch database is dropped too (if it was made).
		p.engine.drop(context.WithoutCancel(ctx), c, scratch)
		return nil, fmt.Errorf("%s: restore %s into %s: %w", where, file, scratch, err)
	}
	got, err := p.engine.tableSums(ctx, c, scratch)
	if derr := p.engine.drop(context.WithoutCancel(ctx), c, scratch); derr != nil && err == nil {
		err = fmt.Errorf("drop the scratch database: %w", derr)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: verify %s: %w", where, file, err)
	}
	return compareSums(want.Tables, got), nil
}

func compareSums(want, got map[string]TableSum) *VerifyResult {
	r := &VerifyResult{}
	names := map[string]bool{}
	for t := range want {
		names[t] = true
	}
	for t := range got {
		names[t] = true
	}
	var sorted []string
	for t := range names {
		sorted = append(sorted, t)
	}
	sort.Strings(sorted)
	for _, t := range sorted {
		w, inW := want[t]
		g, inG := got[t]
		r.Tables++
		switch {
		case !inG:
			r.Mismatches = append(r.Mismatches, t+": missing from the restored copy")
		case !inW:
			r.Mismatches = append(r.Mismatches, t+": not in the recorded sums")
		case w.Rows != g.Rows:
			r.Mismatches = append(r.Mismatches, fmt.Sprintf("%s: %d rows restored, %d recorded", t, g.Rows, w.Rows))
		case w.Sum != g.Sum:
			r.Mismatches = append(r.Mismatches, fmt.Sprintf("%s: checksum %s restored, %s recorded", t, g.Sum, w.Sum))
		}
	}
	return r
}

// pgSnapshot is an open REPEATABLE READ transaction whose snapshot
// pg_dump shares (--snapshot), so sums taken in it match the dump.
type pgSnapshot struct {
	conn *pgx.Conn
	tx   pgx.Tx
	id   string
}

func openPGSnapshot(ctx context.Context, cfg *config, db string) (*pgSnapshot, error) {
	pc, err := pgx.ParseConfig("sslmode=prefer")
	if err != nil {
		return nil, err
	}
	pc.Host = cfg.host
	if cfg.socket != "" {
		pc.Host = cfg.socket
	}
	port, _ := strconv.Atoi(cfg.port)
	pc.Port = uint16(port)
	pc.User = cfg.user
	if pc.User == "" {
		pc.User = "postgres"
	}
	pc.Password = cfg.password
	pc.Database = db
	pc.ConnectTimeout = cfg.timeout
	pc.RuntimeParams = map[string]string{"application_name": "cairn"}
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, err
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		conn.Close(ctx)
		return nil, err
	}
	s := &pgSnapshot{conn: conn, tx: tx}
	if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&s.id); err != nil {
		s.close(ctx)
		return nil, err
	}
	return s, nil
}

func (s *pgSnapshot) close(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	s.tx.Rollback(ctx)
	s.conn.Close(ctx)
}

// sums computes the table sums in the snapshot, with the same queries as
// postgres.tableSums so the two compare.
func (s *pgSnapshot) sums(ctx context.Context) (map[string]TableSum, error) {
	rows, err := s.tx.Query(ctx, pgTablesSQL)
	if err != nil {
		return nil, err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := map[string]TableSum{}
	for _, t := range tables {
		var ts TableSum
		if err := s.tx.QueryRow(ctx, fmt.Sprintf(pgSumSQL, t)).Scan(&ts.Rows, &ts.Sum); err != nil {
			return nil, fmt.Errorf("table %s: %w", t, err)
		}
		out[t] = ts
	}
	return out, nil
}

func sumsJSON(db string, consistent bool, tables map[string]TableSum) []byte {
	b, _ := json.MarshalIndent(Sums{Database: db, Taken: time.Now().UTC(), Consistent: consistent, Tables: tables}, "", "  ")
	return append(b, '\n')
}
