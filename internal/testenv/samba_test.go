package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
