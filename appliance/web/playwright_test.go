package web

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// TestPlaywright runs the Playwright suite in e2e/ (flows.mjs) against the
// real `cairn serve` binary on a fresh data dir and a real sshd: setup
// refused without the token, the setup wizard, an SFTP host with a
// connection test and a backup followed to 100%, a file download checked
// by digest, a directory zip extracted and compared, a restore to the
// host, and a user of group A who cannot see host B. Node, Chromium and
// the npm packages come from `make deps`; under CI=true a missing one
// fails the test. Screenshots go to $CAIRN_TEST_ARTIFACTS/playwright.
func TestPlaywright(t *testing.T) {
	testenv.Need(t, "node", "chromium", "unzip")
	e2e, err := filepath.Abs("e2e")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e2e, "node_modules", "playwright-core", "package.json")); err != nil {
		msg := "playwright-core is not installed in " + e2e + " (run `make deps`, or npm ci --prefix appliance/web/e2e): " + err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal(err)
	}

	// Host B, backed up over SFTP: a small config file and a binary one
	// in a sub-directory (for the file download and the zip).
	sshd := testenv.SSHD(t)
	files := map[string][]byte{
		"web.conf":  []byte("listen 443\n"),
		"sub/b.bin": bytes.Repeat([]byte{0, 1, 2, 250, 251}, 40000),
		"sub/c.txt": []byte("third file\n"),
	}
	for name, content := range files {
		p := filepath.Join(sshd.Dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Host A, a local directory.
	local := t.TempDir()
	if err := os.WriteFile(filepath.Join(local, "a.txt"), []byte("host A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := os.Getenv("CAIRN_TEST_ARTIFACTS")
	if out == "" {
		out = filepath.Join(os.TempDir(), "cairn-web-screenshots")
	}
	out = filepath.Join(out, "playwright")
	os.RemoveAll(out)

	data := t.TempDir()
	base, setupURL := startServe(t, data)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(e2e, "flows.mjs"))
	cmd.Dir = e2e
	cmd.Env = append(os.Environ(),
		"CAIRN_BASE="+base,
		"CAIRN_SETUP_URL="+setupURL,
		"CAIRN_PASSWORD="+goodPassword,
		"CHROMIUM="+chromium,
		"SSHD_HOST="+sshd.Host,
		"SSHD_PORT="+strconv.Itoa(sshd.Port),
		"SSHD_USER="+sshd.User,
		"SSHD_KEY="+sshd.KeyFile,
		"SSHD_DIR="+sshd.Dir,
		"LOCAL_DIR="+local,
		"OUT_DIR="+out,
	)
	start := time.Now()
	output, err := cmd.CombinedOutput()
	t.Logf("node flows.mjs (%s):\n%s", time.Since(start).Round(100*time.Millisecond), output)
	if err != nil {
		t.Fatalf("playwright flows failed: %v", err)
	}

	// Checked again from Go: the restore wrote the files on the host.
	var restored []byte
	filepath.WalkDir(filepath.Join(sshd.Dir, "restored"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "web.conf" {
			restored, _ = os.ReadFile(p)
		}
		return nil
	})
	if !bytes.Equal(restored, files["web.conf"]) {
		t.Fatalf("web.conf restored to the host: %q, want %q", restored, files["web.conf"])
	}
	// The HTTPS step stored a certificate and its key for the next start.
	if _, err := os.Stat(filepath.Join(data, "tls", "cert.pem")); err != nil {
		t.Errorf("certificate of the HTTPS step: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(data, "tls", "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key of the HTTPS step: %v %v", fi, err)
	}
	for _, name := range []string{"pw-01-setup", "pw-03-setup-tls", "pw-02-setup-storage", "pw-05-host-form", "pw-07-job", "pw-08-browse", "pw-10-users"} {
		if b, err := os.ReadFile(filepath.Join(out, name+".png")); err != nil || len(b) < 8 || string(b[1:4]) != "PNG" {
			t.Errorf("screenshot %s: %v", name, err)
		}
	}
}
