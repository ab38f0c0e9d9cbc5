package testenv

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// SambaServer is a running Samba smbd (plus samba-dcerpcd) started by Samba.
type SambaServer struct {
	Addr     string // "127.0.0.1:port" (SMB2/3 over TCP; no NetBIOS)
	Host     string
	Port     int
	User     string // "root"
	Password string
	Share    string // "share", read-write for User
	Dir      string // the share's directory
	// ConfFile is the smb.conf, for smbclient --configfile or smbstatus -s.
	ConfFile string
	Pid      int // smbd
	RPCPid   int // samba-dcerpcd
}

// Samba starts smbd and samba-dcerpcd (TESTING.md §4) with a private
// smb.conf, private state/lock/cache/pid dirs and a private tdbsam passdb
// holding the user root with a random password; nothing under
// /var/lib/samba is used. One share, "share", is read-write and maps to
// Dir. Share enumeration (smbclient -L, go-smb2 ListSharenames) works
// because samba-dcerpcd serves srvsvc.
//
// Gotchas handled: both daemons run in the foreground (-F) in their own
// process group with --no-process-group (without Setpgid that flag would
// make smbd's SIGTERM handler signal the test binary's group); the ncalrpc
// dir is 0755 (with 0700 enumeration hangs forever); samba-dcerpcd is
// started by us ("rpc start on demand helpers = no"), because the one smbd
// would spawn is detached from its process group and would survive the
// test; its readiness is the --ready-signal-fd pipe; smbd's is a TCP
// connect. The rpcd_* workers create empty /var/log/samba/log.rpcd_* files
// before reading -l; that is the only write outside the temp dir.
func Samba(t testing.TB) *SambaServer {
	t.Helper()
	needRoot(t, "testenv.Samba")
	smbd := bin(t, "smbd")
	dcerpcd := bin(t, "samba-dcerpcd")
	smbpasswd := bin(t, "smbpasswd")

	dir := t.TempDir()
	for _, sub := range []string{"private", "lock", "state", "cache", "pid", "log", "ncalrpc", "share"} {
		mustMkdir(t, filepath.Join(dir, sub), 0o755)
	}
	mustMkdir(t, filepath.Join(dir, "private"), 0o700)
	share := filepath.Join(dir, "share")
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conf := filepath.Join(dir, "smb.conf")
	writeFile(t, conf, fmt.Sprintf(`[global]
  server role = standalone server
  workgroup = WORKGROUP
  netbios name = CAIRNTEST
  smb ports = %[2]d
  interfaces = 127.0.0.1
  bind interfaces only = yes
  disable netbios = yes
  private dir = %[1]s/private
  lock directory = %[1]s/lock
  state directory = %[1]s/state
  cache directory = %[1]s/cache
  pid directory = %[1]s/pid
  ncalrpc dir = %[1]s/ncalrpc
  log file = %[1]s/log/log.%%m
  log level = 1
  passdb backend = tdbsam:%[1]s/private/passdb.tdb
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  map to guest = never
  usershare path =
  rpc start on demand helpers = no
[share]
  path = %[3]s
  read only = no
  valid users = root
`, dir, port, share), 0o644)

	pw := randomSecret(12)
	run(t, pw+"\n"+pw+"\n", smbpasswd, "-c", conf, "-a", "-s", "root")

	// samba-dcerpcd first: it signals readiness on fd 3.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatalf("testenv: samba: pipe: %v", err)
	}
	rpc := exec.Command(dcerpcd, "--libexec-rpcds", "-F", "--no-process-group", "--debug-stdout",
		"--ready-signal-fd=3", "-s", conf, "-l", filepath.Join(dir, "log"))
	rpc.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	rpc.ExtraFiles = []*os.File{w}
	rd := startDaemon(t, "samba-dcerpcd", rpc, filepath.Join(dir, "dcerpcd.out"))
	w.Close()
	_ = r.SetReadDeadline(time.Now().Add(readyTimeout))
	_, err = io.Copy(io.Discard, r) // one NUL byte, then EOF when it closes fd 3 (or exits)
	r.Close()
	if err != nil || rd.exited() {
		t.Fatalf("testenv: samba-dcerpcd not ready (%v, exited %v)\nlog tail:\n%s", err, rd.exited(), logTail(rd.logPath))
	}

	smb := exec.Command(smbd, "-F", "--no-process-group", "--debug-stdout", "-s", conf, "-l", filepath.Join(dir, "log"))
	smb.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	d := startDaemon(t, "smbd", smb, filepath.Join(dir, "smbd.out"))
	d.waitReady(t, "TCP connect to "+addr, tcpProbe(addr))

	return &SambaServer{Addr: addr, Host: "127.0.0.1", Port: port, User: "root", Password: pw,
		Share: "share", Dir: share, ConfFile: conf, Pid: d.Pid(), RPCPid: rd.Pid()}
}
