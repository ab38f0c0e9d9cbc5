package testenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/hirochachacha/go-smb2"
)

func TestSamba(t *testing.T) {
	g, rg := watchGone(t, "smbd"), watchGone(t, "samba-dcerpcd")
	done := timed(t, "samba")
	s := Samba(t)
	done()
	g.pid, rg.pid = s.Pid, s.RPCPid
	defer g.snapshot()
	defer rg.snapshot()
	Need(t, "smbclient")

	work := t.TempDir()
	payload := randomBytes(t, 700<<10)
	if err := os.MkdirAll(filepath.Join(s.Dir, "sub dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "sub dir", "seed.bin"), payload, 0o600); err != nil {
		t.Fatal(err)
	}
	up := randomBytes(t, 50<<10)
	if err := os.WriteFile(filepath.Join(work, "up.bin"), up, 0o600); err != nil {
		t.Fatal(err)
	}
	authFile := filepath.Join(work, "auth")
	if err := os.WriteFile(authFile, []byte("username = "+s.User+"\npassword = "+s.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	smbclient := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("smbclient", append([]string{"-p", strconv.Itoa(s.Port), "-A", authFile, "--configfile=/dev/null"}, args...)...)
		cmd.Dir = work
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("smbclient %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := smbclient("//127.0.0.1/"+s.Share, "-c", `cd "sub dir"; get seed.bin got.bin; cd ..; put up.bin up.bin; ls`)
	if !strings.Contains(out, "sub dir") || !strings.Contains(out, "up.bin") {
		t.Fatalf("smbclient ls output lacks entries:\n%s", out)
	}
	got, err := os.ReadFile(filepath.Join(work, "got.bin"))
	if err != nil || sha(got) != sha(payload) {
		t.Fatalf("smb get: err %v sha %s want %s", err, sha(got), sha(payload))
	}
	onDisk, err := os.ReadFile(filepath.Join(s.Dir, "up.bin"))
	if err != nil || sha(onDisk) != sha(up) {
		t.Fatalf("smb put: err %v sha %s want %s", err, sha(onDisk), sha(up))
	}
	// Share enumeration goes through samba-dcerpcd (srvsvc).
	out = smbclient("-L", "127.0.0.1", "-g")
	if !strings.Contains(out, "Disk|"+s.Share+"|") || !strings.Contains(out, "IPC|IPC$|") {
		t.Fatalf("share list:\n%s", out)
	}
	// A wrong password is refused.
	bad := filepath.Join(work, "bad")
	if err := os.WriteFile(bad, []byte("username = root\npassword = wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("smbclient", "-p", strconv.Itoa(s.Port), "-A", bad, "--configfile=/dev/null", "//127.0.0.1/"+s.Share, "-c", "ls")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("wrong password accepted:\n%s", out)
	}
}

// TestSambaGoClient does the same round trip with go-smb2, the client the
// SMB puller uses: NTLMv2 login, share enumeration (srvsvc through
// samba-dcerpcd), directory listing and a file read.
func TestSambaGoClient(t *testing.T) {
	g, rg := watchGone(t, "smbd"), watchGone(t, "samba-dcerpcd")
	s := Samba(t)
	g.pid, rg.pid = s.Pid, s.RPCPid
	defer g.snapshot()
	defer rg.snapshot()

	payload := randomBytes(t, 2<<20)
	if err := os.MkdirAll(filepath.Join(s.Dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "d", "f.bin"), payload, 0o600); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d := &smb2.Dialer{Initiator: &smb2.NTLMInitiator{User: s.User, Password: s.Password}}
	sess, err := d.Dial(conn)
	if err != nil {
		t.Fatalf("smb2 session: %v", err)
	}
	defer sess.Logoff()
	names, err := sess.ListSharenames()
	if err != nil {
		t.Fatalf("ListSharenames: %v", err)
	}
	sort.Strings(names)
	if !equalStrings(names, []string{"IPC$", s.Share}) {
		t.Fatalf("shares: %v", names)
	}
	fs, err := sess.Mount(s.Share)
	if err != nil {
		t.Fatalf("mount %s: %v", s.Share, err)
	}
	defer fs.Umount()
	fis, err := fs.ReadDir("d")
	if err != nil || len(fis) != 1 || fis[0].Name() != "f.bin" || fis[0].Size() != int64(len(payload)) {
		t.Fatalf("ReadDir: %v %v", fis, err)
	}
	got, err := fs.ReadFile(`d\f.bin`)
	if err != nil || sha(got) != sha(payload) {
		t.Fatalf("ReadFile: err %v sha %s want %s", err, sha(got), sha(payload))
	}
}
