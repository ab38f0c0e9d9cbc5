package dbdump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// Method names this package registers.
const (
	MethodPostgres = "postgres"
	MethodMariaDB  = "mariadb"
)

func init() {
	pullers.Register(MethodPostgres, func() pullers.Puller { return &Puller{engine: postgres{}} })
	pullers.Register(MethodMariaDB, func() pullers.Puller { return &Puller{engine: mariadb{}} })
}

// Puller dumps databases into a snapshot. Make one with NewPostgres or
// NewMariaDB (or pullers.Get).
type Puller struct {
	engine engine

	// Dial opens the TCP connection to the SSH server of mode (b) (e.g.
	// through a jump host); nil uses net.Dialer. Mode (a) connects
	// directly.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu   sync.Mutex
	seen ssh.PublicKey // host key of a mode-(b) login without a pin
}

var _ pullers.Puller = (*Puller)(nil)

// NewPostgres returns the PostgreSQL dump puller (pg_dump).
func NewPostgres() *Puller { return &Puller{engine: postgres{}} }

// NewMariaDB returns the MariaDB/MySQL dump puller (mariadb-dump or
// mysqldump).
func NewMariaDB() *Puller { return &Puller{engine: mariadb{}} }

// engine is one database product.
type engine interface {
	name() string
	// prepare writes credentials into dir (0700) and returns the
	// connection settings the other calls use.
	prepare(cfg *config, dir string) (*conn, error)
	databases(ctx context.Context, c *conn) ([]string, error)
	// dump returns the command that writes db's dump to stdout and the
	// file name it is stored as.
	dump(c *conn, db string) (cmdSpec, string)
	// globals returns the command for the server's global objects
	// (roles, tablespaces), if the engine has one.
	globals(c *conn) (cmdSpec, string, bool)
	// restore loads dump (stored as file) into the new database db.
	restore(ctx context.Context, c *conn, dump io.Reader, file, db string) error
	tableSums(ctx context.Context, c *conn, db string) (map[string]TableSum, error)
	drop(ctx context.Context, c *conn, db string) error
}

// TableSum is one table's row count and content checksum.
type TableSum struct {
	Rows int64  `json:"rows"`
	Sum  string `json:"sum"`
}

// cmdSpec is one tool invocation. Secrets are never in args or env: they
// are in a 0600 file that env or args name.
type cmdSpec struct {
	path  string
	args  []string
	env   []string
	stdin io.Reader
	// blockOut asks the tool to write its stdout in pipeSize blocks
	// (stdbuf, where it works) instead of stdio's 4 KiB to a pipe: set
	// for dumps, whose reader otherwise wakes for every 4 KiB.
	blockOut bool
}

// config is a parsed Source.
type config struct {
	host, port, user, password string
	socket                     string
	include, exclude           []string
	format                     string // postgres: plain or custom
	binDir                     string
	spoolDir                   string
	globals                    bool
	recordSums                 bool
	timeout                    time.Duration
}

// conn is what the dump tools need: argv prefix and environment.
type conn struct {
	cfg  *config
	args []string // connection arguments (no password)
	env  []string
	bin  func(name string) string
	cred string // the credential file (pgpass or my.cnf)
	dir  string // the private directory holding it
	// run runs a tool: locally, or on the host over SSH (mode b).
	run func(ctx context.Context, spec cmdSpec, out io.Writer, redact func(string) string) error
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseConfig(host string, src *pullers.Source, defPort string) (*config, error) {
	o := src.Options
	c := &config{host: o["host"], port: o["port"], user: o["user"], password: src.Secret["password"],
		socket: o["socket"], format: o["format"], binDir: o["bin_dir"], spoolDir: o["spool_dir"],
		include: splitList(o["databases"]), exclude: splitList(o["exclude_databases"]), globals: true}
	if c.host == "" && c.socket == "" {
		c.host = host
	}
	if c.host == "" && c.socket == "" {
		return nil, errors.New("no host (Options[\"host\"]) or socket (Options[\"socket\"])")
	}
	if c.port == "" {
		c.port = defPort
	}
	if n, err := strconv.Atoi(c.port); err != nil || n <= 0 || n > 65535 {
		return nil, fmt.Errorf("bad port %q", c.port)
	}
	if strings.ContainsAny(c.host+c.user+c.socket, "\x00\n") {
		return nil, errors.New("host, user or socket contains NUL or a newline")
	}
	if v := o["globals"]; v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("option globals=%q: want true or false", v)
		}
		c.globals = b
	}
	if v := o["record_sums"]; v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("option record_sums=%q: want true or false", v)
		}
		c.recordSums = b
	}
	c.timeout = 30 * time.Second
	if v := o["connect_timeout"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return nil, fmt.Errorf("option connect_timeout=%q: want a duration of at least 1s", v)
		}
		c.timeout = d
	}
	if c.spoolDir == "" {
		c.spoolDir = os.TempDir()
	}
	return c, nil
}

func (c *config) where() string {
	if c.socket != "" {
		return c.socket
	}
	return c.host + ":" + c.port
}

// Pull dumps every selected database into its own file of the snapshot.
// See the package documentation.
func (p *Puller) Pull(ctx context.Context, j *pullers.Job) error {
	if j == nil || j.Sink == nil {
		return errors.New("dbdump: no sink")
	}
	e := p.engine
	// Credentials live in a private directory for the run only.
	c, where, cleanup, err := p.setup(ctx, j.Host, &j.Source)
	if err != nil {
		return err
	}
	defer cleanup()
	cfg := c.cfg
	st, _ := parseSSH(j.Host, &j.Source)
	dbs := cfg.include
	if len(dbs) == 0 {
		if dbs, err = e.databases(ctx, c); err != nil {
			return fmt.Errorf("%s: list databases: %w", where, err)
		}
	}
	var sel []string
	for _, db := range dbs {
		if !contains(cfg.exclude, db) {
			sel = append(sel, db)
		}
	}
	if len(sel) == 0 {
		return fmt.Errorf("%s: no database to dump", where)
	}
	start := time.Now()
	root := pool.Entry{Name: ".", Type: pool.TypeDir, Mode: 0o700, ModTime: start.UnixNano()}
	if err := j.Sink.Add(ctx, ".", root, nil); err != nil {
		return fmt.Errorf("%s: store the root: %w", where, err)
	}
	type job struct {
		cmd  cmdSpec
		file string
		db   string
	}
	var jobs []job
	if cmd, file, ok := e.globals(c); ok && cfg.globals {
		jobs = append(jobs, job{cmd, file, "(globals)"})
	}
	for _, db := range sel {
		cmd, file := e.dump(c, db)
		jobs = append(jobs, job{cmd, file, db})
	}
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].file < jobs[b].file })
	var prog pullers.Progress
	prog.Files = 1
	seen := map[string]bool{}
	for _, jb := range jobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !pool.ValidName(jb.file) || seen[jb.file] {
			return fmt.Errorf("%s: database %q cannot be stored as %q", where, jb.db, jb.file)
		}
		seen[jb.file] = true
		prog.Path = jb.file
		if j.Progress != nil {
			j.Progress(prog)
		}
		var snap *pgSnapshot
		if cfg.recordSums && jb.db != "(globals)" {
			if _, ok := e.(postgres); ok && st == nil {
				// Sums from the dump's own snapshot.
				if snap, err = openPGSnapshot(ctx, cfg, jb.db); err != nil {
					return fmt.Errorf("%s: %s: open a snapshot for the sums: %w", where, jb.db, ctxErr(ctx, err))
				}
				jb.cmd.args = append(jb.cmd.args, "--snapshot="+snap.id)
			}
		}
		n, err := runInto(ctx, j.Sink, c, jb.cmd, jb.file, start, redactor(cfg.password))
		if err == nil && cfg.recordSums && jb.db != "(globals)" {
			var sums map[string]TableSum
			if snap != nil {
				sums, err = snap.sums(ctx)
			} else {
				sums, err = e.tableSums(ctx, c, jb.db)
			}
			if err != nil {
				err = fmt.Errorf("table sums: %w", err)
			} else {
				data := sumsJSON(jb.db, snap != nil, sums)
				name := strings.TrimSuffix(strings.TrimSuffix(jb.file, ".sql"), ".dump") + SumsSuffix
				se := pool.Entry{Name: name, Type: pool.TypeFile, Mode: 0o600, Size: int64(len(data)), ModTime: start.UnixNano()}
				if aerr := j.Sink.Add(ctx, name, se, bytes.NewReader(data)); aerr != nil {
					err = fmt.Errorf("store %s: %w", name, aerr)
				}
			}
		}
		if snap != nil {
			snap.close(ctx)
		}
		if err != nil {
			if strings.Contains(err.Error(), "server version mismatch") && j.Source.Options["via"] != "ssh" {
				// pg_dump refuses a newer server.
				return fmt.Errorf("%s: dump %s: %w (the server is newer than the appliance's pg_dump: "+
					"run the dump on the host with Options via=ssh)", where, jb.db, err)
			}
			return fmt.Errorf("%s: dump %s: %w", where, jb.db, err)
		}
		prog.Files++
		prog.Bytes += n
		if j.Progress != nil {
			j.Progress(prog)
		}
	}
	prog.Path = ""
	if j.Progress != nil {
		j.Progress(prog)
	}
	return nil
}

func defaultPort(e engine) string {
	if _, ok := e.(postgres); ok {
		return "5432"
	}
	return "3306"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runInto runs cmd and streams its stdout into the sink as file, through
// a pipe: nothing is spooled, and memory stays within the pool writer's
// bounds whatever the dump's size. A failing tool ends the pipe with its
// error, so the sink rejects the half-read entry and stores nothing.
func runInto(ctx context.Context, sink pullers.Sink, c *conn, cmd cmdSpec, file string, mtime time.Time, redact func(string) string) (int64, error) {
	ss, ok := sink.(pullers.StreamSink)
	if !ok {
		return 0, fmt.Errorf("store %s: the sink (%T) cannot store a stream of unknown size", file, sink)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd.blockOut = true
	out, err := startTool(func(w *os.File) error { return c.run(rctx, cmd, w, redact) })
	if err != nil {
		return 0, fmt.Errorf("store %s: %w", file, err)
	}
	e := pool.Entry{Name: file, Type: pool.TypeFile, Mode: 0o600, ModTime: mtime.UnixNano()}
	n, err := ss.AddStream(ctx, file, e, out)
	if err != nil {
		// The sink stopped reading (rejected entry or storage failure):
		// stop the tool, then prefer its own error, which says why.
		cancel()
		out.close()
		if runErr := out.wait(); runErr != nil && errors.Is(err, runErr) {
			return 0, runErr
		}
		return 0, fmt.Errorf("store %s: %w", file, err)
	}
	out.close()
	if err := out.wait(); err != nil {
		return 0, err // cannot happen: the end of file would have carried it
	}
	return n, nil
}

// runCmd runs cmd with stdout to out, in its own process group (killed
// as a whole on cancel). A non-zero exit is an error carrying the tail of
// stderr, with secrets masked.
func runCmd(ctx context.Context, spec cmdSpec, out io.Writer, redact func(string) string) error {
	tail := &tailBuffer{max: 4 << 10}
	name, args := spec.path, spec.args
	if spec.blockOut {
		if sb := stdbuf(); sb != "" {
			// A tool not found keeps its own error below.
			if p, err := exec.LookPath(spec.path); err == nil {
				name, args = sb, append([]string{stdbufOut, p}, args...)
			}
		}
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = spec.env
	cmd.Stdin = spec.stdin
	cmd.Stdout = out
	cmd.Stderr = tail
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		msg := strings.TrimSpace(tail.String())
		if msg == "" {
			return fmt.Errorf("%s: %v", filepath.Base(spec.path), err)
		}
		return fmt.Errorf("%s: %v: %s", filepath.Base(spec.path), err, redact(msg))
	}
	return nil
}

// output runs a query tool and returns its stdout.
func (c *conn) output(ctx context.Context, spec cmdSpec) (string, error) {
	var out bytes.Buffer
	if err := c.run(ctx, spec, &out, redactor(c.cfg.password)); err != nil {
		return "", err
	}
	return out.String(), nil
}

// setup parses src for engine e and writes its credentials into a new
// private directory; cleanup removes it.
func (p *Puller) setup(ctx context.Context, host string, src *pullers.Source) (c *conn, where string, cleanup func(), err error) {
	e := p.engine
	st, err := parseSSH(host, src)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s %s: %w", e.name(), host, err)
	}
	defHost := host
	if st != nil {
		defHost = "localhost" // as seen from the host
	}
	cfg, err := parseConfig(defHost, src, defaultPort(e))
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s %s: %w", e.name(), host, err)
	}
	remoteBin := ""
	if st != nil {
		remoteBin, cfg.binDir = cfg.binDir, ""
	}
	where = e.name() + " " + cfg.where()
	if st != nil {
		where += " via ssh " + st.addr
	}
	dir, err := os.MkdirTemp(cfg.spoolDir, "cairn-dbdump-")
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s: credentials dir: %w", where, err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	if err := os.Chmod(dir, 0o700); err != nil {
		cleanup()
		return nil, "", nil, fmt.Errorf("%s: %w", where, err)
	}
	if c, err = e.prepare(cfg, dir); err != nil {
		cleanup()
		return nil, "", nil, fmt.Errorf("%s: %w", where, err)
	}
	c.dir = dir
	c.run = runCmd
	if st != nil {
		client, err := p.dialSSH(ctx, st)
		if err != nil {
			cleanup()
			return nil, "", nil, fmt.Errorf("%s: %w", where, err)
		}
		c.run = remoteRunner(client, c, remoteBin)
		prev := cleanup
		cleanup = func() { client.Close(); prev() }
	}
	return c, where, cleanup, nil
}

// Restore loads a dump (as stored: file is its name in the snapshot,
// "<db>.sql" or "<db>.dump") into the NEW database db on the server that
// src names (same Options and Secret as a backup). Creating db fails when
// it exists, so nothing is overwritten. host is the default host name.
func (p *Puller) Restore(ctx context.Context, host string, src pullers.Source, dump io.Reader, file, db string) error {
	c, where, cleanup, err := p.setup(ctx, host, &src)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := p.engine.restore(ctx, c, dump, file, db); err != nil {
		return fmt.Errorf("%s: restore %s into %s: %w", where, file, db, err)
	}
	return nil
}

// TableSums returns every base table's row count and a checksum of its
// content, keyed by (schema-qualified) table name, for comparing a
// restored copy with its original.
func (p *Puller) TableSums(ctx context.Context, host string, src pullers.Source, db string) (map[string]TableSum, error) {
	c, where, cleanup, err := p.setup(ctx, host, &src)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	sums, err := p.engine.tableSums(ctx, c, db)
	if err != nil {
		return nil, fmt.Errorf("%s: checksums of %s: %w", where, db, err)
	}
	return sums, nil
}

// fileName maps a database name to its file: "/" and "%" escaped.
func fileName(db, ext string) string {
	db = strings.ReplaceAll(db, "%", "%25")
	db = strings.ReplaceAll(db, "/", "%2F")
	db = strings.ReplaceAll(db, "\x00", "%00")
	return db + ext
}

// redactor masks a secret in messages.
func redactor(secret string) func(string) string {
	return func(s string) string {
		if len(secret) < 1 {
			return s
		}
		return strings.ReplaceAll(s, secret, "***")
	}
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cut {
		return "…" + string(bytes.ToValidUTF8(t.buf, nil))
	}
	return string(t.buf)
}
