package dbdump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

type postgres struct{}

func (postgres) name() string { return "postgres" }

// pgBinDir returns the newest /usr/lib/postgresql/*/bin with pg_dump
// (Debian keeps the real binaries there; /usr/bin/pg_dump is pg_wrapper).
func pgBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(a, b int) bool {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[a])))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[b])))
		return va > vb
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_dump")); err == nil {
			return d
		}
	}
	return ""
}

// pgpassEscape escapes a .pgpass field.
func pgpassEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return strings.ReplaceAll(s, ":", `\:`)
}

// connStr quotes a libpq conninfo value.
func connStr(db string) string {
	db = strings.ReplaceAll(db, `\`, `\\`)
	db = strings.ReplaceAll(db, `'`, `\'`)
	return "dbname='" + db + "'"
}

func (postgres) prepare(cfg *config, dir string) (*conn, error) {
	switch cfg.format {
	case "":
		cfg.format = "plain"
	case "plain", "custom":
	default:
		return nil, fmt.Errorf("option format=%q: want plain or custom", cfg.format)
	}
	binDir := cfg.binDir
	if binDir == "" {
		binDir = pgBinDir()
	}
	host := cfg.host
	if cfg.socket != "" {
		host = cfg.socket // libpq: a directory is a socket dir
	}
	user := cfg.user
	if user == "" {
		user = "postgres"
	}
	pass := filepath.Join(dir, "pgpass")
	line := fmt.Sprintf("%s:%s:*:%s:%s\n", pgpassEscape(host), cfg.port, pgpassEscape(user), pgpassEscape(cfg.password))
	if strings.ContainsAny(cfg.password, "\n\r") {
		return nil, errors.New("the password contains a newline")
	}
	if err := os.WriteFile(pass, []byte(line), 0o600); err != nil {
		return nil, fmt.Errorf("write pgpass: %w", err)
	}
	c := &conn{cfg: cfg, cred: pass,
		args: []string{"-h", host, "-p", cfg.port, "-U", user, "-w"},
		env: []string{"PATH=/usr/bin:/bin", "PGPASSFILE=" + pass, "LANG=C.UTF-8", "PGAPPNAME=cairn",
			"PGCONNECT_TIMEOUT=" + strconv.Itoa(int(cfg.timeout.Seconds())), "HOME=" + dir},
		bin: func(name string) string {
			if binDir != "" {
				return filepath.Join(binDir, name)
			}
			if p, err := exec.LookPath(name); err == nil {
				return p
			}
			return name
		}}
	return c, nil
}

// psql runs one or more SQL commands against db and returns the output
// (unaligned, tuples only, fields separated by \x1f, records by NUL).
func (c *conn) psql(ctx context.Context, db string, sql ...string) (string, error) {
	args := append([]string{"-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-F", "\x1f", "-0", "-d", connStr(db)}, c.args...)
	for _, s := range sql {
		args = append(args, "-c", s)
	}
	return c.output(ctx, cmdSpec{path: c.bin("psql"), args: args, env: c.env})
}

func records(out string) []string {
	var r []string
	for f := range strings.SplitSeq(out, "\x00") {
		if f = strings.TrimSuffix(f, "\n"); f != "" {
			r = append(r, f)
		}
	}
	return r
}

func (postgres) databases(ctx context.Context, c *conn) ([]string, error) {
	out, err := c.psql(ctx, "postgres", "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1")
	if err != nil {
		return nil, err
	}
	return records(out), nil
}

func (postgres) dump(c *conn, db string) (cmdSpec, string) {
	args := append([]string{}, c.args...)
	ext := ".sql"
	if c.cfg.format == "custom" {
		// Uncompressed, so the pool's chunking deduplicates day to day.
		args = append(args, "--format=custom", "--compress=0")
		ext = ".dump"
	} else {
		args = append(args, "--format=plain")
	}
	args = append(args, "-d", connStr(db))
	return cmdSpec{path: c.bin("pg_dump"), args: args, env: c.env}, fileName(db, ext)
}

func (postgres) globals(c *conn) (cmdSpec, string, bool) {
	args := append(append([]string{}, c.args...), "--globals-only")
	return cmdSpec{path: c.bin("pg_dumpall"), args: args, env: c.env}, "pg_globals.sql", true
}

func (postgres) restore(ctx context.Context, c *conn, dump io.Reader, file, db string) error {
	quoted := `"` + strings.ReplaceAll(db, `"`, `""`) + `"`
	if _, err := c.psql(ctx, "postgres", "CREATE DATABASE "+quoted); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	var spec cmdSpec
	if strings.HasSuffix(file, ".dump") {
		args := append(append([]string{}, c.args...), "--no-owner", "--exit-on-error", "-d", connStr(db))
		spec = cmdSpec{path: c.bin("pg_restore"), args: args, env: c.env, stdin: dump}
	} else {
		args := append([]string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", connStr(db), "-f", "-"}, c.args...)
		spec = cmdSpec{path: c.bin("psql"), args: args, env: c.env, stdin: dump}
	}
	_, err := c.output(ctx, spec)
	return err
}

// The table-sum queries; the %s of pgSumSQL is a name from pgTablesSQL,
// already quoted by format('%I.%I').
const (
	pgTablesSQL = `SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
		WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`
	pgSumSQL = `SELECT count(*), coalesce(md5(string_agg(r::text, E'\n' ORDER BY r::text)), '') FROM %s r`
)

func (postgres) drop(ctx context.Context, c *conn, db string) error {
	_, err := c.psql(ctx, "postgres", `DROP DATABASE IF EXISTS "`+strings.ReplaceAll(db, `"`, `""`)+`"`)
	return err
}

func (postgres) tableSums(ctx context.Context, c *conn, db string) (map[string]TableSum, error) {
	out, err := c.psql(ctx, db, pgTablesSQL)
	if err != nil {
		return nil, err
	}
	tables := records(out)
	sums := map[string]TableSum{}
	if len(tables) == 0 {
		return sums, nil
	}
	var qs []string
	for _, t := range tables {
		qs = append(qs, fmt.Sprintf(pgSumSQL, t))
	}
	out, err = c.psql(ctx, db, qs...)
	if err != nil {
		return nil, err
	}
	rows := records(out)
	if len(rows) != len(tables) {
		return nil, fmt.Errorf("%d checksum rows for %d tables", len(rows), len(tables))
	}
	for i, r := range rows {
		n, sum, _ := strings.Cut(r, "\x1f")
		cnt, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("table %s: bad count %q", tables[i], n)
		}
		sums[tables[i]] = TableSum{Rows: cnt, Sum: sum}
	}
	return sums, nil
}
