package testenv

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHServer is a running OpenSSH sshd started by SSHD.
type SSHServer struct {
	Addr string // "127.0.0.1:port"
	Host string // "127.0.0.1"
	Port int
	User string // "root"

	KeyFile        string     // the client's private key (OpenSSH format, 0600), for ssh -i
	Signer         ssh.Signer // the same key for golang.org/x/crypto/ssh
	HostKey        ssh.PublicKey
	KnownHostsFile string // one line: "[127.0.0.1]:port ssh-ed25519 …"

	// Password authenticates User (root) with password auth. It is empty
	// when password auth could not be set up (see SSHD).
	Password string

	// Dir is an empty directory, owned by root, that the test may fill. The
	// sftp subsystem starts there (relative paths resolve against it);
	// absolute paths reach the whole filesystem.
	Dir string

	// Pid is sshd's pid, also its process group id.
	Pid int
}

// ClientConfig returns an ssh.ClientConfig for User with the client key and
// the server's fixed host key.
func (s *SSHServer) ClientConfig() *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.Signer)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey),
	}
}

// SSHArgs returns the ssh(1) options that log in to this server
// non-interactively with the client key and the known_hosts file, e.g. for
// rsync -e "ssh " + strings.Join(SSHArgs(), " "). The host is not included.
func (s *SSHServer) SSHArgs() []string {
	return []string{
		"-p", strconv.Itoa(s.Port), "-i", s.KeyFile,
		"-o", "UserKnownHostsFile=" + s.KnownHostsFile, "-o", "StrictHostKeyChecking=yes",
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "GlobalKnownHostsFile=/dev/null",
		"-F", "/dev/null",
	}
}

// SSHD starts OpenSSH's sshd (/usr/sbin/sshd -D -e) on 127.0.0.1 with a
// temporary config, a fresh ed25519 host key and a fresh ed25519 client key
// (both made in Go), and returns it once it sends its SSH banner. It needs
// root: users log in as root.
//
// What it serves: exec and shell (as root; rsync over ssh works), and SFTP
// through internal-sftp with the start directory set to Dir.
//
// Gotchas handled (TESTING.md §3): sshd must be started by absolute path
// (it re-execs itself); /run/sshd (the privilege separation dir) must exist;
// StrictModes is off because the key files live under /tmp (mode 1777);
// ChrootDirectory is not used (it cannot work below /tmp); UsePAM is off so
// that nothing in /etc/pam.d is consulted for key auth; MaxStartups is
// raised so that parallel connections in tests are not dropped at random.
// Password auth: see sshd_password.go.
func SSHD(t testing.TB) *SSHServer {
	t.Helper()
	needRoot(t, "testenv.SSHD")
	sshd := bin(t, "sshd")
	dir := t.TempDir()
	served := filepath.Join(dir, "served")
	mustMkdir(t, served, 0o755)
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("testenv: sshd: create privilege separation dir: %v", err)
	}

	hostPub, hostKeyFile := writeEd25519Key(t, filepath.Join(dir, "host_ed25519_key"))
	clientPub, clientKeyFile := writeEd25519Key(t, filepath.Join(dir, "client_ed25519_key"))
	clientPEM, err := os.ReadFile(clientKeyFile)
	if err != nil {
		t.Fatalf("testenv: sshd: %v", err)
	}
	signer, err := ssh.ParsePrivateKey(clientPEM)
	if err != nil {
		t.Fatalf("testenv: sshd: parse client key: %v", err)
	}
	authKeys := filepath.Join(dir, "authorized_keys")
	writeFile(t, authKeys, string(ssh.MarshalAuthorizedKey(clientPub)), 0o600)

	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	knownHosts := filepath.Join(dir, "known_hosts")
	writeFile(t, knownHosts, knownhosts.Line([]string{addr}, hostPub)+"\n", 0o644)

	pw := sshPassword(t, dir)
	pwAuth := "no"
	if pw.password != "" {
		pwAuth = "yes"
	}
	conf := filepath.Join(dir, "sshd_config")
	writeFile(t, conf, fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PubkeyAuthentication yes
PasswordAuthentication %s
KbdInteractiveAuthentication no
PermitEmptyPasswords no
UsePAM %s
StrictModes no
PermitRootLogin yes
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 100:30:200
MaxSessions 100
LoginGraceTime 60
Subsystem sftp internal-sftp -d %s
LogLevel VERBOSE
`, port, hostKeyFile, filepath.Join(dir, "sshd.pid"), authKeys, pwAuth, pw.usePAM, served), 0o644)

	argv0 := sshd
	if pw.argv0 != "" {
		argv0 = pw.argv0
	}
	if out, err := exec.Command(sshd, "-t", "-f", conf).CombinedOutput(); err != nil {
		t.Fatalf("testenv: sshd -t %s: %v\n%s", conf, err, out)
	}
	cmd := &exec.Cmd{Path: argv0, Args: []string{argv0, "-D", "-e", "-f", conf}, Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}}
	d := startDaemon(t, "sshd", cmd, filepath.Join(dir, "sshd.log"))
	d.waitReady(t, "SSH banner on "+addr, bannerProbe(addr, "SSH-2.0-"))

	return &SSHServer{
		Addr: addr, Host: "127.0.0.1", Port: port, User: "root",
		KeyFile: clientKeyFile, Signer: signer, HostKey: hostPub, KnownHostsFile: knownHosts,
		Password: pw.password, Dir: served, Pid: d.Pid(),
	}
}

// writeEd25519Key writes a new ed25519 private key in OpenSSH format (0600)
// to path and its public key to path+".pub".
func writeEd25519Key(t testing.TB, path string) (ssh.PublicKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("testenv: ed25519: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "cairn-testenv")
	if err != nil {
		t.Fatalf("testenv: marshal ssh key: %v", err)
	}
	writeFile(t, path, string(pem.EncodeToMemory(block)), 0o600)
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("testenv: ssh public key: %v", err)
	}
	writeFile(t, path+".pub", string(ssh.MarshalAuthorizedKey(sshPub)), 0o644)
	return sshPub, path
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatalf("testenv: write %s: %v", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatalf("testenv: chmod %s: %v", path, err)
	}
}

func mustMkdir(t testing.TB, path string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(path, mode); err != nil {
		t.Fatalf("testenv: mkdir %s: %v", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatalf("testenv: chmod %s: %v", path, err)
	}
}
