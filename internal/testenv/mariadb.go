package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// MariaDBServer is a throwaway MariaDB server started by MariaDB.
type MariaDBServer struct {
	Addr string // "127.0.0.1:port"
	Host string
	Port int
	// User/Password is a TCP account ('backup'@'127.0.0.1') with the
	// privileges a logical backup needs (SELECT, SHOW VIEW, TRIGGER, LOCK
	// TABLES, EVENT, RELOAD, PROCESS, BINLOG MONITOR) plus enough to make
	// test data (CREATE, INSERT, UPDATE, DELETE, DROP, ALTER, INDEX,
	// CREATE VIEW, CREATE ROUTINE, ALTER ROUTINE, EXECUTE).
	User     string
	Password string
	// Socket is the unix socket. RootSocketUser ("root") logs in there
	// without a password (unix_socket/normal auth for root@localhost);
	// root cannot log in over TCP.
	Socket         string
	RootSocketUser string
	// DefaultsFile is the server's my.cnf; its [client] section points at
	// Socket and Port, so `mariadb --defaults-file=DefaultsFile -uroot`
	// works (--defaults-file must come first).
	DefaultsFile string
	DataDir      string
	Pid          int
}

var (
	mariaTemplateOnce sync.Once
	mariaTemplateDir  string
	mariaTemplateErr  error
)

// mariaConf is the my.cnf shared by the template's install-db run and the
// servers (%[1]s data dir, %[2]s socket, %[3]d port, %[4]s pid file).
const mariaConf = `[client]
port = %[3]d
socket = %[2]s
[mariadbd]
user = mysql
datadir = %[1]s
socket = %[2]s
port = %[3]d
bind-address = 127.0.0.1
pid-file = %[4]s
skip-name-resolve
skip-log-bin
innodb_buffer_pool_size = 32M
innodb_log_file_size = 16M
innodb_flush_log_at_trx_commit = 2
innodb_doublewrite = 0
performance_schema = OFF
max_connections = 100
`

// MariaDB starts a throwaway MariaDB server (mariadbd, TESTING.md §7) on
// 127.0.0.1 and a unix socket, from a copy of a template data dir made once
// per machine by mariadb-install-db and kept in CacheDir() keyed by the
// server version (install-db takes 1-7 s; copy and start take ~0.3 s). It
// creates the TCP account User/Password with a random password.
//
// Gotchas handled: --defaults-file is the first argument, so /etc/mysql is
// never read; mariadbd starts as root and drops to mysql (same pid), so its
// dirs are opened to 0755 and the data and run dirs are owned by mysql;
// root@localhost exists only on the socket (skip-name-resolve), hence the
// separate TCP account; errors go to stderr, shown on failure.
func MariaDB(t testing.TB) *MariaDBServer {
	t.Helper()
	needRoot(t, "testenv.MariaDB")
	mariadbd := bin(t, "mariadbd")
	Need(t, "mariadb-install-db", "mariadb")
	cred := userCred(t, "mysql")

	mariaTemplateOnce.Do(func() { mariaTemplateDir, mariaTemplateErr = mariaTemplate(mariadbd, cred) })
	if mariaTemplateErr != nil {
		t.Fatalf("testenv: mariadb template: %v", mariaTemplateErr)
	}

	dir := tempDir(t)
	data := filepath.Join(dir, "data")
	runDir := filepath.Join(dir, "run")
	run(t, "", "cp", "-a", mariaTemplateDir, data)
	mustMkdir(t, runDir, 0o755)
	if err := os.Chown(runDir, int(cred.Uid), int(cred.Gid)); err != nil {
		t.Fatalf("testenv: mariadb: %v", err)
	}
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	sock := filepath.Join(runDir, "mysqld.sock")
	cnf := filepath.Join(dir, "my.cnf")
	writeFile(t, cnf, fmt.Sprintf(mariaConf, data, sock, port, filepath.Join(runDir, "mysqld.pid")), 0o644)

	cmd := exec.Command(mariadbd, "--defaults-file="+cnf)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TZ=UTC"}
	d := startDaemon(t, "mariadbd", cmd, filepath.Join(dir, "mariadbd.log"))
	d.waitReady(t, "unix socket "+sock, func() error {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return err
		}
		return c.Close()
	})
	d.waitReady(t, "TCP connect to "+addr, tcpProbe(addr))

	pw := randomSecret(12)
	sql := fmt.Sprintf(`CREATE USER 'backup'@'127.0.0.1' IDENTIFIED BY '%s';
GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT, RELOAD, PROCESS, BINLOG MONITOR,
  CREATE, INSERT, UPDATE, DELETE, DROP, ALTER, INDEX, CREATE VIEW, CREATE ROUTINE, ALTER ROUTINE, EXECUTE
  ON *.* TO 'backup'@'127.0.0.1';`, pw)
	if out, err := runErr(sql, findBin("mariadb"), "--defaults-file="+cnf, "-uroot", "--batch"); err != nil {
		t.Fatalf("testenv: mariadb: create backup user: %v\n%s\nlog tail:\n%s", err, out, logTail(d.logPath))
	}
	return &MariaDBServer{Addr: addr, Host: "127.0.0.1", Port: port, User: "backup", Password: pw,
		Socket: sock, RootSocketUser: "root", DefaultsFile: cnf, DataDir: data, Pid: d.Pid()}
}

// mariaTemplate returns a cached data dir made by mariadb-install-db.
func mariaTemplate(mariadbd string, cred *syscall.Credential) (string, error) {
	out, err := exec.Command(mariadbd, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("mariadbd --version: %w", err)
	}
	const flags = "--auth-root-authentication-method=normal --skip-test-db --skip-name-resolve"
	sum := sha256.Sum256([]byte(strings.TrimSpace(string(out)) + "\x00" + flags + "\x00" + mariaConf))
	return cachedTemplate("mariadb-"+hex.EncodeToString(sum[:6]), cred, func(data string) error {
		scratch := filepath.Dir(data)
		cnf := filepath.Join(scratch, "my.cnf")
		conf := fmt.Sprintf(mariaConf, data, filepath.Join(scratch, "install.sock"), 0, filepath.Join(scratch, "install.pid"))
		if err := os.WriteFile(cnf, []byte(conf), 0o644); err != nil {
			return err
		}
		args := append([]string{"--defaults-file=" + cnf, "--user=mysql", "--datadir=" + data}, strings.Fields(flags)...)
		cmd := exec.Command(findBin("mariadb-install-db"), args...)
		cmd.Dir = scratch
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("mariadb-install-db: %w\n%s", err, out)
		}
		return nil
	})
}
