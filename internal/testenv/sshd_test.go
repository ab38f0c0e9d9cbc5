package testenv

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

func TestSSHD(t *testing.T) {
	var leaked *ssh.Client
	t.Cleanup(func() { // registered first, so it runs last
		if leaked != nil {
			leaked.Close()
		}
	})
	g := watchGone(t, "sshd")
	done := timed(t, "sshd")
	s := SSHD(t)
	done()
	g.pid = s.Pid
	defer g.snapshot()

	payload := randomBytes(t, 300<<10)
	if err := os.WriteFile(filepath.Join(s.Dir, "seed.bin"), payload, 0o600); err != nil {
		t.Fatal(err)
	}

	conn, err := ssh.Dial("tcp", s.Addr, s.ClientConfig())
	if err != nil {
		t.Fatalf("ssh dial %s: %v", s.Addr, err)
	}
	defer conn.Close()

	// SFTP: download the seeded file by relative path (start dir is Dir),
	// upload a new one by absolute path, read it back from disk.
	c, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatalf("sftp: %v", err)
	}
	f, err := c.Open("seed.bin")
	if err != nil {
		t.Fatalf("sftp open seed.bin: %v", err)
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("sftp download: err %v, got %d bytes sha %s, want %d sha %s", err, len(got), sha(got), len(payload), sha(payload))
	}
	up := randomBytes(t, 200<<10)
	w, err := c.Create(filepath.Join(s.Dir, "up.bin"))
	if err != nil {
		t.Fatalf("sftp create: %v", err)
	}
	if _, err := w.Write(up); err != nil {
		t.Fatalf("sftp write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("sftp close: %v", err)
	}
	onDisk, err := os.ReadFile(filepath.Join(s.Dir, "up.bin"))
	if err != nil || sha(onDisk) != sha(up) {
		t.Fatalf("sftp upload: on disk sha %s (err %v), want %s", sha(onDisk), err, sha(up))
	}
	fis, err := c.ReadDir(s.Dir)
	if err != nil || len(fis) != 2 {
		t.Fatalf("sftp readdir: %v, %d entries", err, len(fis))
	}
	c.Close()

	// exec: echo and sha256sum of the seeded file.
	out := sshRun(t, conn, "echo hello-from-sshd")
	if out != "hello-from-sshd\n" {
		t.Fatalf("exec echo: %q", out)
	}
	out = sshRun(t, conn, "sha256sum "+filepath.Join(s.Dir, "seed.bin"))
	if !strings.HasPrefix(out, sha(payload)+" ") {
		t.Fatalf("exec sha256sum: %q, want %s", out, sha(payload))
	}
	out = sshRun(t, conn, "id -u")
	if out != "0\n" {
		t.Fatalf("exec id -u: %q", out)
	}

	// The OpenSSH client with the key file and known_hosts (what rsync -e ssh uses).
	Need(t, "ssh")
	args := append(s.SSHArgs(), s.User+"@"+s.Host, "cat", filepath.Join(s.Dir, "up.bin"))
	cli, err := exec.Command("ssh", args...).Output()
	if err != nil || !bytes.Equal(cli, up) {
		t.Fatalf("ssh CLI cat: %v, sha %s want %s", err, sha(cli), sha(up))
	}

	// rsync over ssh (exec of "rsync --server --sender" on the server).
	Need(t, "rsync")
	src := filepath.Join(s.Dir, "tree")
	fillTree(t, src)
	dest := filepath.Join(t.TempDir(), "dest")
	rsh := "ssh " + strings.Join(s.SSHArgs(), " ")
	if out, err := exec.Command("rsync", "-a", "-e", rsh, s.User+"@"+s.Host+":"+src+"/", dest+"/").CombinedOutput(); err != nil {
		t.Fatalf("rsync over ssh: %v\n%s", err, out)
	}
	assertSameTree(t, src, dest)

	// A connection left open when the test ends: its per-connection sshd
	// (in a session of its own, outside sshd's group) must be stopped too.
	leaked, err = ssh.Dial("tcp", s.Addr, s.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	if out := sshRun(t, leaked, "echo open"); out != "open\n" {
		t.Fatalf("exec on the leaked connection: %q", out)
	}
	if len(descendants(s.Pid)) == 0 {
		t.Fatalf("no per-connection sshd found below %d", s.Pid)
	}

	// Password auth.
	if s.Password == "" {
		t.Fatalf("Password is empty: password auth was not set up (see test log)")
	}
	pcfg := &ssh.ClientConfig{User: s.User, Auth: []ssh.AuthMethod{ssh.Password(s.Password)}, HostKeyCallback: ssh.FixedHostKey(s.HostKey)}
	pconn, err := ssh.Dial("tcp", s.Addr, pcfg)
	if err != nil {
		t.Fatalf("ssh password login: %v", err)
	}
	if out := sshRun(t, pconn, "echo pw"); out != "pw\n" {
		t.Fatalf("exec over password login: %q", out)
	}
	pconn.Close()
	pcfg.Auth = []ssh.AuthMethod{ssh.Password(s.Password + "x")}
	if c, err := ssh.Dial("tcp", s.Addr, pcfg); err == nil {
		c.Close()
		t.Fatalf("wrong password accepted")
	}
}

func sshRun(t *testing.T, conn *ssh.Client, cmd string) string {
	t.Helper()
	sess, err := conn.NewSession()
	if err != nil {
		t.Fatalf("ssh session: %v", err)
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("ssh exec %q: %v\n%s", cmd, err, out)
	}
	return string(out)
}
