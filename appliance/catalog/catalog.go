package catalog

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

// Errors of the catalog API, tested with errors.Is.
var (
	// ErrNotFound: the named row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: a row with that unique name already exists.
	ErrExists = errors.New("already exists")
)

//go:embed migrations/*.sql
var migrationFS embed.FS

type dialect int

const (
	sqlite dialect = iota
	postgres
)

// DB is an open catalog. It is safe for concurrent use.
type DB struct {
	db      *sql.DB
	dialect dialect
	where   string // for messages; never contains a password
}

// Open opens (creating if needed) the catalog named by dsn and applies
// pending migrations. dsn is a postgres:// or postgresql:// URL, or a path
// to an SQLite file.
func Open(ctx context.Context, dsn string) (*DB, error) {
	c := &DB{}
	var err error
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		c.dialect = postgres
		c.where = redactDSN(dsn)
		c.db, err = sql.Open("pgx", dsn)
	} else {
		c.dialect = sqlite
		c.where = dsn
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "foreign_keys(1)")
		q.Add("_pragma", "synchronous(NORMAL)")
		c.db, err = sql.Open("sqlite", "file:"+dsn+"?"+q.Encode())
	}
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", c.where, err)
	}
	if err := c.db.PingContext(ctx); err != nil {
		c.db.Close()
		return nil, fmt.Errorf("catalog %s: %w", c.where, err)
	}
	if err := c.migrate(ctx); err != nil {
		c.db.Close()
		return nil, fmt.Errorf("catalog %s: %w", c.where, err)
	}
	return c, nil
}

// redactDSN drops the password from a database URL for messages.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://(unparseable)"
	}
	return u.Redacted()
}

// Close closes the database.
func (c *DB) Close() error { return c.db.Close() }

// Where names the database for messages (passwords redacted).
func (c *DB) Where() string { return c.where }

// Driver returns "sqlite" or "postgres".
func (c *DB) Driver() string {
	if c.dialect == postgres {
		return "postgres"
	}
	return "sqlite"
}

// Ping checks the database is reachable.
func (c *DB) Ping(ctx context.Context) error { return c.db.PingContext(ctx) }

// rebind turns ? placeholders into $n for PostgreSQL. Queries in this
// package never put a literal ? inside a string.
func (c *DB) rebind(q string) string {
	if c.dialect != postgres {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

type querier interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func (c *DB) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return c.db.ExecContext(ctx, c.rebind(q), args...)
}

func (c *DB) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return c.db.QueryContext(ctx, c.rebind(q), args...)
}

func (c *DB) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return c.db.QueryRowContext(ctx, c.rebind(q), args...)
}

// insertID runs an INSERT … RETURNING id (both dialects support it).
func (c *DB) insertID(ctx context.Context, q querier, stmt string, args ...any) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, c.rebind(stmt+" RETURNING id"), args...).Scan(&id)
	return id, err
}

// tx runs fn in a transaction, rolling back on error.
func (c *DB) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// isUnique reports whether err is a unique-constraint violation.
func isUnique(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "UNIQUE constraint failed") || strings.Contains(s, "SQLSTATE 23505") ||
		strings.Contains(s, "duplicate key value")
}

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	ents, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range ents {
		name := e.Name()
		num, rest, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(rest, ".sql") {
			return nil, fmt.Errorf("migration file %q: want NNNN_name.sql", name)
		}
		b, err := migrationFS.ReadFile("migrations/" + name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: strings.TrimSuffix(rest, ".sql"), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %d (%s): versions must be 1, 2, 3… without gaps", m.version, m.name)
		}
	}
	return out, nil
}

func (c *DB) ddl(s string) string {
	if c.dialect == postgres {
		s = strings.ReplaceAll(s, "{{id}}", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
		s = strings.ReplaceAll(s, "{{blob}}", "BYTEA")
	} else {
		s = strings.ReplaceAll(s, "{{id}}", "INTEGER PRIMARY KEY AUTOINCREMENT")
		s = strings.ReplaceAll(s, "{{blob}}", "BLOB")
	}
	return s
}

// SchemaVersion returns the highest applied migration.
func (c *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	err := c.queryRow(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&v)
	return int(v.Int64), err
}

func (c *DB) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	if _, err := c.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	have, err := c.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if have > len(ms) {
		return fmt.Errorf("schema version %d is newer than this binary knows (%d): refusing to run an older cairn on a newer catalog", have, len(ms))
	}
	for _, m := range ms[have:] {
		err := c.tx(ctx, func(tx *sql.Tx) error {
			for _, stmt := range splitSQL(c.ddl(m.sql)) {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%.60q: %w", stmt, err)
				}
			}
			_, err := tx.ExecContext(ctx, c.rebind("INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, ?)"),
				m.version, m.name, time.Now().UnixNano())
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %04d_%s: %w", m.version, m.name, err)
		}
	}
	return nil
}

// splitSQL splits a migration into statements at semicolons that end a
// line. Migrations keep semicolons out of string literals.
func splitSQL(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ";\n") {
		if p := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(part), ";")); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
