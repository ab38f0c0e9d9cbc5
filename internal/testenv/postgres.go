package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PGServer is a throwaway PostgreSQL cluster started by Postgres.
type PGServer struct {
	Addr string // "127.0.0.1:port"
	Host string
	Port int
	User string // "postgres", superuser, trust auth (no password)
	// DSN connects to the "postgres" database over TCP:
	// postgres://postgres@127.0.0.1:port/postgres?sslmode=disable
	DSN string
	// SocketDir holds the unix socket (.s.PGSQL.<port>): psql -h SocketDir -p Port.
	SocketDir string
	DataDir   string
	// BinDir holds the server's binaries (pg_dump, pg_basebackup, psql, …),
	// e.g. /usr/lib/postgresql/15/bin, which is not on PATH on Debian.
	BinDir string
	Pid    int
}

// CreateDB creates database name (quoted as an identifier) and returns the
// DSN that connects to it.
func (s *PGServer) CreateDB(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		t.Fatalf("testenv: postgres %s: connect: %v", s.Addr, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testenv: postgres %s: create database %q: %v", s.Addr, name, err)
	}
	return s.dsn(name)
}

func (s *PGServer) dsn(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(s.User), Host: s.Addr, Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

var (
	pgTemplateOnce sync.Once
	pgTemplateDir  string
	pgTemplateErr  error
)

// Postgres starts a throwaway PostgreSQL cluster (the newest
// /usr/lib/postgresql/*/bin) listening on 127.0.0.1 and on a unix socket in
// SocketDir, with fsync, full_page_writes and synchronous_commit off. The
// superuser is postgres with trust auth.
//
// The cluster is a copy of a template made once per machine by initdb and
// kept in CacheDir() (keyed by the server version), so a call costs a copy
// and a start (~0.2 s) instead of an initdb.
//
// Gotchas handled (TESTING.md §2, §7): initdb and postgres refuse to run as
// root, so they run as the postgres user (SysProcAttr.Credential, no extra
// process); t.TempDir() and its parent are 0700 root, so they are opened to
// 0755; readiness is a real login (the port accepts connections before the
// server accepts logins); stop is a fast shutdown (SIGINT to the postmaster
// only, so that open client connections do not hold it up and backends are
// not signalled behind the postmaster's back).
func Postgres(t testing.TB) *PGServer {
	t.Helper()
	needRoot(t, "testenv.Postgres")
	postgres := bin(t, "postgres")
	binDir := filepath.Dir(postgres)
	Need(t, filepath.Join(binDir, "initdb"))
	cred := userCred(t, "postgres")

	pgTemplateOnce.Do(func() { pgTemplateDir, pgTemplateErr = pgTemplate(binDir, cred) })
	if pgTemplateErr != nil {
		t.Fatalf("testenv: postgres template: %v", pgTemplateErr)
	}

	dir := tempDir(t)
	data := filepath.Join(dir, "data")
	sock := filepath.Join(dir, "sock")
	run(t, "", "cp", "-a", pgTemplateDir, data)
	mustMkdir(t, sock, 0o755)
	if err := os.Chown(sock, int(cred.Uid), int(cred.Gid)); err != nil {
		t.Fatalf("testenv: postgres: %v", err)
	}
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(postgres, "-D", data, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+sock,
		"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
		"-c", "max_connections=100", "-c", "shared_buffers=32MB", "-c", "log_min_messages=warning")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + binDir + ":/usr/bin:/bin", "LANG=C.UTF-8", "PGTZ=UTC"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	d := startDaemon(t, "postgres", cmd, filepath.Join(dir, "postgres.log"))
	d.leaderOnly, d.stopSignal = true, syscall.SIGINT

	s := &PGServer{Addr: addr, Host: "127.0.0.1", Port: port, User: "postgres", SocketDir: sock,
		DataDir: data, BinDir: binDir, Pid: d.Pid()}
	s.DSN = s.dsn("postgres")
	d.waitReady(t, "login on "+addr, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.DSN)
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	})
	return s
}

// pgTemplate returns a cached, freshly initdb'd data directory for the
// server in binDir, creating it if needed.
func pgTemplate(binDir string, cred *syscall.Credential) (string, error) {
	out, err := exec.Command(filepath.Join(binDir, "postgres"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("postgres --version: %w", err)
	}
	const initdbFlags = "-U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync --no-instructions"
	sum := sha256.Sum256([]byte(strings.TrimSpace(string(out)) + "\x00" + initdbFlags))
	return cachedTemplate("postgres-"+hex.EncodeToString(sum[:6]), cred, func(stage string) error {
		cmd := exec.Command(filepath.Join(binDir, "initdb"), append([]string{"-D", stage}, strings.Fields(initdbFlags)...)...)
		cmd.Env = []string{"PATH=" + binDir + ":/usr/bin:/bin", "LANG=C.UTF-8"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("initdb: %w\n%s", err, out)
		}
		return nil
	})
}

// cachedTemplate returns CacheDir()/templates/<key>, creating it once per
// machine with create, which must fill the (non-existing) directory it is
// given. create runs in a scratch dir under os.TempDir() owned by cred, so
// that a daemon user can write there (the cache dir may be below a 0700
// home); the result is copied into the cache with cp -a (ownership kept)
// and renamed into place, so concurrent test processes never see a partial
// template.
func cachedTemplate(key string, cred *syscall.Credential, create func(dir string) error) (string, error) {
	root := filepath.Join(CacheDir(), "templates")
	final := filepath.Join(root, key)
	if _, err := os.Stat(filepath.Join(final, ".complete")); err == nil {
		return filepath.Join(final, "data"), nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	scratch, err := os.MkdirTemp("", "cairn-testenv-template-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(scratch)
	if err := os.Chmod(scratch, 0o755); err != nil {
		return "", err
	}
	if err := os.Chown(scratch, int(cred.Uid), int(cred.Gid)); err != nil {
		return "", err
	}
	if err := create(filepath.Join(scratch, "data")); err != nil {
		return "", err
	}
	stage, err := os.MkdirTemp(root, ".stage-"+key+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	if out, err := exec.Command("cp", "-a", filepath.Join(scratch, "data"), filepath.Join(stage, "data")).CombinedOutput(); err != nil {
		return "", fmt.Errorf("cp -a template: %w\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(stage, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Chmod(stage, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(stage, final); err != nil {
		// Another process won the race; use its template.
		if _, serr := os.Stat(filepath.Join(final, ".complete")); serr != nil {
			return "", fmt.Errorf("install template %s: %w", final, err)
		}
	}
	return filepath.Join(final, "data"), nil
}

// userCred looks up a system user for SysProcAttr.Credential.
func userCred(t testing.TB, name string) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("testenv: system user %s: %v (run `make deps`)", name, err)
		}
		t.Skipf("testenv: system user %s: %v (run `make deps`)", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}
