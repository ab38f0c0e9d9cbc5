package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"golang.org/x/crypto/ssh"
)

func TestOnboardApplianceKey(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, Config{DataDir: dir})
	p := filepath.Join(dir, SSHKeyName)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: mode %o, want 600", p, fi.Mode().Perm())
	}
	_, pub1, err := e.s.applianceKey()
	if err != nil {
		t.Fatal(err)
	}
	if pub1.Type() != ssh.KeyAlgoED25519 {
		t.Fatalf("key type %s, want ed25519", pub1.Type())
	}
	pubFile, err := os.ReadFile(p + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	fp, _, _, _, err := ssh.ParseAuthorizedKey(pubFile)
	if err != nil || !bytes.Equal(fp.Marshal(), pub1.Marshal()) {
		t.Fatalf(".pub does not match the private key: %v", err)
	}
	// A restart keeps the key.
	e.s.Close()
	e2 := newEnv(t, Config{DataDir: dir})
	_, pub2, err := e2.s.applianceKey()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub1.Marshal(), pub2.Marshal()) {
		t.Fatal("the appliance key changed across a restart")
	}
	// A key others can read is refused.
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e2.s.applianceKey(); err == nil || !strings.Contains(err.Error(), "mode 644") {
		t.Fatalf("world-readable key: err %v, want a mode error", err)
	}
}

func TestOnboardAPIValidation(t *testing.T) {
	e := newEnv(t, Config{})
	e.addHost("web1", nil)
	e.must("socket", "PUT", "/api/v1/hosts/web1/sources/mirror", SourceInput{Name: "mirror", Method: "rsync", Path: "/srv/data",
		Options: map[string]string{"transport": "ssh", "user": "backup"}}, nil)
	var b OnboardBody
	e.must("socket", "GET", "/api/v1/hosts/web1/onboard?from=192.0.2.7&rsync=true&create_user=true", nil, &b)
	for _, want := range []string{`from="192.0.2.7"`, `command="rrsync -ro /srv/data"`, "no-pty", "no-port-forwarding",
		"no-X11-forwarding", "no-agent-forwarding", b.PublicKey} {
		if !strings.Contains(b.KeyLine, want) {
			t.Errorf("key line %q lacks %q", b.KeyLine, want)
		}
	}
	if b.User != "backup" || !strings.Contains(b.Script, "useradd") {
		t.Errorf("user %q / script without useradd:\n%s", b.User, b.Script)
	}
	user := e.user("u1", "user")
	op := e.user("op1", "operator")
	if w := e.do(user, "GET", "/api/v1/hosts/web1/onboard?from=192.0.2.7", nil); w.Code != 403 {
		t.Errorf("user: %d, want 403", w.Code)
	}
	if w := e.do(op, "GET", "/api/v1/hosts/web1/onboard?from=192.0.2.7", nil); w.Code != 200 {
		t.Errorf("operator: %d %s, want 200", w.Code, w.Body)
	}
	if w := e.do("socket", "GET", "/api/v1/hosts/nohost/onboard?from=192.0.2.7", nil); w.Code != 404 {
		t.Errorf("unknown host: %d, want 404", w.Code)
	}
	for _, q := range []string{
		"from=192.0.2.7&user=r%3Brm", "from=192.0.2.7&user=Root%20x", `from=1.2.3.4%22,command%3D%22sh`,
		"from=a%20b", "from=192.0.2.7&rsync=true&path=/srv/a%20b", "from=192.0.2.7&rsync=true&path=rel",
		"from=192.0.2.7&rsync=true&path=/x%27y", "", // no from: the socket gives no address
	} {
		if w := e.do("socket", "GET", "/api/v1/hosts/web1/onboard?"+q, nil); w.Code != 400 {
			t.Errorf("%s: %d %s, want 400", q, w.Code, w.Body)
		}
	}
	// The setting supplies from= when the request does not.
	if err := e.s.cat.SetSetting(context.Background(), SettingApplianceAddress, "10.0.0.5"); err != nil {
		t.Fatal(err)
	}
	e.must("socket", "GET", "/api/v1/hosts/web1/onboard", nil, &b)
	if !strings.HasPrefix(b.KeyLine, `from="10.0.0.5",no-pty,`) {
		t.Errorf("key line %q: want from the setting", b.KeyLine)
	}
}

// TestOnboardSnippetSSHD runs the snippet against a real sshd's
// authorized_keys and logs in with the appliance's key.
func TestOnboardSnippetSSHD(t *testing.T) {
	testenv.Need(t, "sshd", "sh")
	srv := testenv.SSHD(t)
	e := newEnv(t, Config{})
	e.addHost("web1", nil)
	var b OnboardBody
	e.must("socket", "GET", "/api/v1/hosts/web1/onboard?from=127.0.0.1&user=root", nil, &b)
	ak := filepath.Join(filepath.Dir(srv.KeyFile), "authorized_keys")
	before, err := os.ReadFile(ak)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		cmd := exec.Command("sh", "-c", b.Script)
		cmd.Env = append(os.Environ(), "CAIRN_AUTHORIZED_KEYS="+ak)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, out)
		}
		want := []string{"added", "already"}[i]
		if !strings.Contains(string(out), want) {
			t.Errorf("run %d: output %q lacks %q", i, out, want)
		}
	}
	after, err := os.ReadFile(ak)
	if err != nil {
		t.Fatal(err)
	}
	if want := string(before) + b.KeyLine + "\n"; string(after) != want {
		t.Fatalf("authorized_keys after two runs:\n%s\nwant:\n%s", after, want)
	}

	pem, _, err := e.s.applianceKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", srv.Addr, &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(srv.HostKey)})
	if err != nil {
		t.Fatalf("appliance key login: %v", err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err == nil {
		t.Error("a pty was granted to the appliance key")
	}
	out, err := sess.Output("echo onboarded")
	if err != nil || string(out) != "onboarded\n" {
		t.Fatalf("command: %q %v", out, err)
	}
	if conn, err := c.Dial("tcp", srv.Addr); err == nil {
		conn.Close()
		t.Error("port forwarding was allowed for the appliance key")
	}

	// A source with no credential of its own logs in with the appliance
	// key: the API accepts it, the sftp connection test passes, and a
	// backup through it stores the served file.
	if err := os.WriteFile(filepath.Join(srv.Dir, "onboarded.txt"), []byte("pulled with the appliance key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.must("socket", "PUT", "/api/v1/hosts/web1/sources/files", SourceInput{Name: "files", Method: "sftp", Path: srv.Dir,
		Options: map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "user": "root"}}, nil)
	w := e.do("socket", "POST", "/api/v1/hosts/web1/test?source=files", nil)
	var res []SourceTestBody
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || len(res) != 1 || !res[0].OK {
		t.Fatalf("sftp test with the appliance key: %d %s", w.Code, w.Body)
	}
	if j := e.waitJob(e.backup("web1").ID); j.State != "done" {
		t.Fatalf("backup with the appliance key: %s: %s", j.State, j.Error)
	}
	ctx := context.Background()
	var got []byte
	err = e.s.pool.Snapshots(ctx, func(m *pool.Manifest) error {
		if m.Host != "web1" || m.Source != "files" {
			return nil
		}
		f, err := e.s.pool.SnapshotFS(ctx, m).Open("onboarded.txt")
		if err != nil {
			return err
		}
		defer f.Close()
		got, err = io.ReadAll(f)
		return err
	})
	if err != nil || string(got) != "pulled with the appliance key\n" {
		t.Fatalf("snapshot content %q: %v", got, err)
	}
}
