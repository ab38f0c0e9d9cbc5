package testenv

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// RsyncServer is a running rsync daemon started by Rsyncd.
type RsyncServer struct {
	Addr string // "127.0.0.1:port"
	Host string
	Port int
	// Module is open (no auth): rsync://Host:Port/Module/.
	Module string // "mod"
	// AuthModule needs User/Password (auth users + secrets file):
	// RSYNC_PASSWORD=Password rsync rsync://User@Host:Port/AuthModule/.
	AuthModule string // "secure"
	User       string
	Password   string
	// Dir is served, read-only, by both modules.
	Dir string
	Pid int
}

// URL returns the rsync:// URL of a module's root (with the user for
// AuthModule), ending in a slash.
func (s *RsyncServer) URL(module string) string {
	if module == s.AuthModule {
		return fmt.Sprintf("rsync://%s@%s/%s/", s.User, s.Addr, module)
	}
	return fmt.Sprintf("rsync://%s/%s/", s.Addr, module)
}

// Rsyncd starts the rsync daemon (rsync --daemon --no-detach, TESTING.md
// §6) with a temporary rsyncd.conf and two read-only modules on Dir: "mod"
// without auth and "secure" with auth users and a secrets file.
//
// Gotchas handled: uid/gid = root in the modules (a root daemon defaults
// to nobody, which cannot read files that are not world-readable);
// use chroot = no; the secrets file is 0600 (strict modes); numeric ids.
func Rsyncd(t testing.TB) *RsyncServer {
	t.Helper()
	needRoot(t, "testenv.Rsyncd")
	rsync := bin(t, "rsync")
	dir := t.TempDir()
	served := filepath.Join(dir, "src")
	mustMkdir(t, served, 0o755)
	pw := randomSecret(12)
	secrets := filepath.Join(dir, "rsyncd.secrets")
	writeFile(t, secrets, "backup:"+pw+"\n", 0o600)
	conf := filepath.Join(dir, "rsyncd.conf")
	writeFile(t, conf, fmt.Sprintf(`use chroot = no
pid file = %[1]s/rsyncd.pid
lock file = %[1]s/rsyncd.lock
log file = %[1]s/rsyncd.log
numeric ids = yes
max connections = 0

[mod]
  path = %[2]s
  read only = yes
  uid = root
  gid = root

[secure]
  path = %[2]s
  read only = yes
  uid = root
  gid = root
  auth users = backup
  secrets file = %[3]s
`, dir, served, secrets), 0o644)
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(rsync, "--daemon", "--no-detach", "--address=127.0.0.1", "--port="+strconv.Itoa(port), "--config="+conf)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	d := startDaemon(t, "rsyncd", cmd, filepath.Join(dir, "rsyncd.out"))
	d.waitReady(t, "@RSYNCD greeting on "+addr, bannerProbe(addr, "@RSYNCD:"))
	return &RsyncServer{Addr: addr, Host: "127.0.0.1", Port: port, Module: "mod", AuthModule: "secure",
		User: "backup", Password: pw, Dir: served, Pid: d.Pid()}
}
