package dbdump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

type mariadb struct{}

func (mariadb) name() string { return "mariadb" }

// mariaSystemDBs are left out of discovery (they can still be named in
// Options["databases"]).
var mariaSystemDBs = []string{"information_schema", "performance_schema", "sys", "mysql"}

// optQuote quotes a value for a MySQL option file.
func optQuote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + s + `"`
}

func (mariadb) prepare(cfg *config, dir string) (*conn, error) {
	if cfg.format != "" && cfg.format != "plain" {
		return nil, fmt.Errorf("option format=%q: mariadb dumps are plain SQL", cfg.format)
	}
	if strings.ContainsAny(cfg.password, "\n\r") {
		return nil, errors.New("the password contains a newline")
	}
	var b strings.Builder
	b.WriteString("[client]\n")
	if cfg.user != "" {
		fmt.Fprintf(&b, "user=%s\n", optQuote(cfg.user))
	}
	if cfg.password != "" {
		fmt.Fprintf(&b, "password=%s\n", optQuote(cfg.password))
	}
	if cfg.socket != "" {
		fmt.Fprintf(&b, "socket=%s\nprotocol=SOCKET\n", optQuote(cfg.socket))
	} else {
		fmt.Fprintf(&b, "host=%s\nport=%s\nprotocol=TCP\n", optQuote(cfg.host), cfg.port)
	}
	// Only this file is read (--defaults-file), never /etc/mysql or ~/.my.cnf.
	f := filepath.Join(dir, "my.cnf")
	if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
		return nil, fmt.Errorf("write defaults file: %w", err)
	}
	binDir := cfg.binDir
	c := &conn{cfg: cfg, cred: f,
		args: []string{"--defaults-file=" + f},
		env:  []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "HOME=" + dir},
		bin: func(name string) string {
			alt := map[string]string{"mariadb-dump": "mysqldump", "mariadb": "mysql"}[name]
			for _, n := range []string{name, alt} {
				if n == "" {
					continue
				}
				if binDir != "" {
					if p := filepath.Join(binDir, n); isExec(p) {
						return p
					}
					continue
				}
				if p, err := exec.LookPath(n); err == nil {
					return p
				}
			}
			return name
		}}
	return c, nil
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// mysql runs SQL (batch mode, no column names) and returns the rows, each
// split into unescaped fields.
func (c *conn) mysql(ctx context.Context, db, sql string) ([][]string, error) {
	args := append(append([]string{}, c.args...), "--batch", "--skip-column-names", "--execute="+sql)
	if db != "" {
		args = append(args, "--database="+db)
	}
	out, err := c.output(ctx, cmdSpec{path: c.bin("mariadb"), args: args, env: c.env})
	if err != nil {
		return nil, err
	}
	var rows [][]string
	for line := range strings.SplitSeq(out, "\n") {
		if line == "" {
			continue
		}
		var row []string
		for f := range strings.SplitSeq(line, "\t") {
			row = append(row, unescapeBatch(f))
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// unescapeBatch undoes --batch escaping (\n \t \\ \0).
func unescapeBatch(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case '0':
				b.WriteByte(0)
			default:
				b.WriteByte(s[i])
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func (mariadb) databases(ctx context.Context, c *conn) ([]string, error) {
	rows, err := c.mysql(ctx, "", "SHOW DATABASES")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rows {
		if len(r) > 0 && !contains(mariaSystemDBs, r[0]) {
			out = append(out, r[0])
		}
	}
	return out, nil
}

func (mariadb) dump(c *conn, db string) (cmdSpec, string) {
	args := append(append([]string{}, c.args...),
		"--single-transaction", "--routines", "--events", "--triggers", "--hex-blob",
		"--skip-dump-date", "--", db)
	// Without --databases: no CREATE DATABASE/USE lines, so the dump loads
	// into any database (a restore target or a scratch copy).
	return cmdSpec{path: c.bin("mariadb-dump"), args: args, env: c.env}, fileName(db, ".sql")
}

func (mariadb) globals(*conn) (cmdSpec, string, bool) { return cmdSpec{}, "", false }

func (mariadb) restore(ctx context.Context, c *conn, dump io.Reader, file, db string) error {
	if _, err := c.mysql(ctx, "", "CREATE DATABASE "+quoteIdent(db)); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	args := append(append([]string{}, c.args...), "--batch", "--database="+db)
	_, err := c.output(ctx, cmdSpec{path: c.bin("mariadb"), args: args, env: c.env, stdin: dump})
	return err
}

func (mariadb) drop(ctx context.Context, c *conn, db string) error {
	_, err := c.mysql(ctx, "", "DROP DATABASE IF EXISTS "+quoteIdent(db))
	return err
}

func (mariadb) tableSums(ctx context.Context, c *conn, db string) (map[string]TableSum, error) {
	rows, err := c.mysql(ctx, db, "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY 1")
	if err != nil {
		return nil, err
	}
	sums := map[string]TableSum{}
	for _, r := range rows {
		t := r[0]
		cnt, err := c.mysql(ctx, db, "SELECT COUNT(*) FROM "+quoteIdent(t))
		if err != nil {
			return nil, err
		}
		ck, err := c.mysql(ctx, db, "CHECKSUM TABLE "+quoteIdent(t)+" EXTENDED")
		if err != nil {
			return nil, err
		}
		if len(cnt) != 1 || len(ck) != 1 || len(ck[0]) < 2 {
			return nil, fmt.Errorf("table %s: unexpected reply", t)
		}
		n, err := strconv.ParseInt(cnt[0][0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("table %s: bad count %q", t, cnt[0][0])
		}
		sums[t] = TableSum{Rows: n, Sum: ck[0][1]}
	}
	return sums, nil
}
