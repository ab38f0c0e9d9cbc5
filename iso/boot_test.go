package iso

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// TestBoot is the appliance boot test (`make iso-test`; `make test` runs
// it under CI=true). It boots the ISO in QEMU (TCG: KVM hangs here) with
// 2 GiB of RAM, a blank 4 GiB disk and user networking forwarding a local
// port to the appliance's HTTPS port, then drives the first-boot story
// through the forwarded port:
//
//	setup page → admin account with the token read from the serial console
//	→ the blank disk as data disk → an SFTP host (a real sshd on the host's
//	loopback, 10.0.2.2 from the guest) → a backup → the file over WebDAV
//	→ reboot → host, snapshot and file still there.
//
// The ISO is $CAIRN_ISO, or built from the tree into a temporary directory
// (root, `make deps`). It runs when CAIRN_ISO_TEST=1 or CI=true; an
// ordinary `go test ./iso/...` leaves it out as it takes minutes.
func TestBoot(t *testing.T) {
	if os.Getenv("CAIRN_ISO_TEST") != "1" && os.Getenv("CI") != "true" {
		t.Skip("the boot test takes minutes: set CAIRN_ISO_TEST=1 (make iso-test); CI=true runs it")
	}
	testenv.NeedRoot(t, "building the ISO needs debootstrap and mounts")
	testenv.Need(t, "qemu-system-x86_64")
	ph := &phases{t: t, start: time.Now(), last: time.Now()}
	defer ph.report()

	iso := os.Getenv("CAIRN_ISO")
	if iso == "" {
		iso = buildISO(t)
		ph.done("build the ISO")
	}
	work := t.TempDir()
	disk := filepath.Join(work, "data.raw")
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 4<<30); err != nil {
		t.Fatal(err)
	}

	// The SFTP server the appliance backs up; slirp maps 10.0.2.2 to the
	// host's loopback, where testenv's sshd listens.
	sshd := testenv.SSHD(t)
	content := map[string][]byte{
		"hello.txt":       []byte("hello from the boot test\n"),
		"sub/random.bin":  randomBytes(3 << 20),
		"sub/deeper/a.md": []byte("# a\n"),
	}
	for name, b := range content {
		p := filepath.Join(sshd.Dir, "data", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	key, err := os.ReadFile(sshd.KeyFile)
	if err != nil {
		t.Fatal(err)
	}

	port := freePort(t)
	vm := bootVM(t, iso, disk, port, filepath.Join(work, "serial-1.log"))
	c := newClient(port)
	c.waitSetup(t, vm, 20*time.Minute)
	ph.done("boot to setup page")

	// The console shows the one-time token and the certificate's
	// fingerprint; the served certificate must be that one.
	token, fpr := vm.waitConsole(t, 2*time.Minute)
	if got := c.fingerprint(t); got != fpr {
		t.Fatalf("served certificate %s, console shows %s", got, fpr)
	}
	const admin, password = "admin", "Boot-test-password-42"
	c.setup(t, token, admin, password)
	api := c.newToken(t)
	ph.done("setup (admin account, API token)")

	var sys struct {
		DataPersistent bool   `json:"data_persistent"`
		DataDevice     string `json:"data_device"`
		TLSFingerprint string `json:"tls_fingerprint"`
	}
	c.api(t, api, "GET", "/api/v1/system", nil, 200, &sys)
	if sys.DataPersistent || sys.TLSFingerprint != fpr {
		t.Fatalf("fresh appliance: %+v (console fingerprint %s)", sys, fpr)
	}
	var disks []struct {
		Name  string `json:"name"`
		Size  int64  `json:"size"`
		Empty bool   `json:"empty"`
		InUse bool   `json:"in_use"`
	}
	c.api(t, api, "GET", "/api/v1/system/disks", nil, 200, &disks)
	blank := ""
	for _, d := range disks {
		if d.Size == 4<<30 && d.Empty && !d.InUse {
			blank = d.Name
		}
	}
	if blank == "" {
		t.Fatalf("the blank 4 GiB disk is not listed as empty: %+v", disks)
	}
	c.api(t, api, "POST", "/api/v1/system/disks/use", map[string]string{"disk": blank}, 202, nil)
	c.waitFor(t, "the data dir on the data disk", 3*time.Minute, func() bool {
		sys.DataPersistent = false
		return c.try(api, "GET", "/api/v1/system", nil, 200, &sys) == nil && sys.DataPersistent
	})
	if !strings.HasSuffix(sys.DataDevice, "/"+blank) {
		t.Errorf("data device %q, want /dev/%s", sys.DataDevice, blank)
	}
	ph.done("data disk formatted, data dir moved")

	src := map[string]any{
		"name": "data", "method": "sftp", "path": filepath.Join(sshd.Dir, "data"),
		"options": map[string]string{"host": "10.0.2.2", "port": strconv.Itoa(sshd.Port), "user": sshd.User},
		"secret":  map[string]string{"private_key": string(key)},
	}
	c.api(t, api, "POST", "/api/v1/hosts", map[string]any{"name": "web1", "sources": []any{src}}, 201, nil)
	var job struct {
		ID    int64  `json:"id"`
		State string `json:"state"`
		Error string `json:"error"`
	}
	c.api(t, api, "POST", "/api/v1/hosts/web1/backup", nil, 0, &job)
	c.waitFor(t, "the backup", 5*time.Minute, func() bool {
		c.api(t, api, "GET", fmt.Sprintf("/api/v1/jobs/%d", job.ID), nil, 200, &job)
		return job.State == "done" || job.State == "failed" || job.State == "cancelled" || job.State == "interrupted"
	})
	if job.State != "done" {
		t.Fatalf("backup %s: %s", job.State, job.Error)
	}
	ph.done("SFTP backup")

	c.checkDAV(t, admin, password, content)
	ph.done("browse over WebDAV")

	// Reboot (qemu runs with -no-reboot, so it exits) and boot again on
	// the same disk.
	c.api(t, api, "POST", "/api/v1/system/reboot", nil, 202, nil)
	vm.waitExit(t, 4*time.Minute)
	ph.done("reboot: shut down")
	// The second boot is through UEFI (OVMF), the first was BIOS: the
	// image is hybrid.
	vm = bootVM(t, iso, disk, port, filepath.Join(work, "serial-2.log"), "-bios", ovmf(t))
	c.waitFor(t, "the API after the reboot", 20*time.Minute, func() bool {
		return c.try(api, "GET", "/api/v1/system", nil, 200, &sys) == nil
	})
	ph.done("reboot: boot to API")
	if !sys.DataPersistent || sys.TLSFingerprint != fpr {
		t.Errorf("after the reboot: %+v (fingerprint was %s)", sys, fpr)
	}
	var hosts []struct {
		Name string `json:"name"`
	}
	c.api(t, api, "GET", "/api/v1/hosts", nil, 200, &hosts)
	var snaps []struct {
		Host   string `json:"host"`
		Status string `json:"status"`
		Files  int64  `json:"files"`
	}
	c.api(t, api, "GET", "/api/v1/snapshots?host=web1", nil, 200, &snaps)
	if len(hosts) != 1 || hosts[0].Name != "web1" || len(snaps) != 1 || snaps[0].Host != "web1" {
		t.Errorf("after the reboot: hosts %+v, snapshots %+v", hosts, snaps)
	}
	c.checkDAV(t, admin, password, content)
	// The console now says the data is on the disk, and shows no token.
	vm.waitText(t, "(persistent)", time.Minute)
	if b, _ := os.ReadFile(vm.serial); tokenRe.Match(b) {
		t.Error("the console shows a setup token after the setup")
	}
	ph.done("reboot: config, snapshot and files survived")
}

// phases times the test's phases and prints them at the end.
type phases struct {
	t           *testing.T
	start, last time.Time
	lines       []string
}

func (p *phases) done(what string) {
	now := time.Now()
	line := fmt.Sprintf("%-45s %7.1fs  (total %6.1fs)", what, now.Sub(p.last).Seconds(), now.Sub(p.start).Seconds())
	p.lines = append(p.lines, line)
	p.t.Log("phase: " + line)
	fmt.Println("iso-test phase: " + line)
	p.last = now
}

func (p *phases) report() {
	p.t.Logf("phases:\n  %s", strings.Join(p.lines, "\n  "))
}

// buildISO builds cairn and the ISO into a temporary directory.
func buildISO(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "cairn")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=iso-test", "-o", bin, "./cmd/cairn")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build cairn: %v\n%s", err, out)
	}
	iso := filepath.Join(dir, "cairn-iso-test.iso")
	mk := exec.Command("go", "run", "./iso/cmd/mkiso", "-cairn", bin, "-version", "iso-test", "-out", iso)
	mk.Dir = root
	var log bytes.Buffer
	mk.Stdout, mk.Stderr = &log, &log
	if err := mk.Run(); err != nil {
		t.Fatalf("mkiso: %v\n%s", err, log.String())
	}
	return iso
}

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	x := uint64(0x9E3779B97F4A7C15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// vm is one QEMU run.
type vm struct {
	cmd    *exec.Cmd
	serial string
	exited chan error
}

// ovmf is the UEFI firmware (Debian's ovmf package, `make deps`).
func ovmf(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("no OVMF.fd (UEFI firmware): run `make deps` (package ovmf)")
	return ""
}

func bootVM(t *testing.T, iso, disk string, port int, serial string, extra ...string) *vm {
	t.Helper()
	args := []string{"-machine", "q35,accel=tcg", "-cpu", "max", "-smp", "2", "-m", "2048",
		"-display", "none", "-monitor", "none", "-no-reboot",
		"-cdrom", iso, "-boot", "d",
		"-drive", "file=" + disk + ",format=raw,if=virtio",
		"-nic", fmt.Sprintf("user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:%d-:443", port),
		"-serial", "file:" + serial}
	args = append(args, extra...)
	cmd := exec.Command("qemu-system-x86_64", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("qemu: %v", err)
	}
	v := &vm{cmd: cmd, serial: serial, exited: make(chan error, 1)}
	go func() { v.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-v.exited
		v.exited <- nil
		if t.Failed() {
			t.Logf("qemu output: %s\nserial console (%s), last 6000 bytes:\n%s", out.String(), serial, tail(serial, 6000))
		}
	})
	return v
}

func tail(path string, n int64) string {
	b, _ := os.ReadFile(path)
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}

var (
	tokenRe = regexp.MustCompile(`Setup token: ([A-Za-z0-9_-]+)`)
	fprRe   = regexp.MustCompile(`\b([0-9A-F]{2}(?::[0-9A-F]{2}){31})\b`)
)

// waitConsole reads the setup token and the TLS fingerprint off the
// serial console.
func (v *vm) waitConsole(t *testing.T, d time.Duration) (token, fpr string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(v.serial)
		tm, fm := tokenRe.FindAllSubmatch(b, -1), fprRe.FindAllSubmatch(b, -1)
		if len(tm) > 0 && len(fm) > 0 {
			return string(tm[len(tm)-1][1]), string(fm[len(fm)-1][1])
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("no setup token and fingerprint on the serial console after %s", d)
	return "", ""
}

func (v *vm) waitText(t *testing.T, text string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(v.serial); bytes.Contains(b, []byte(text)) {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("%q not on the serial console after %s", text, d)
}

func (v *vm) waitExit(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-v.exited:
		v.exited <- err
	case <-time.After(d):
		t.Fatalf("the VM did not shut down within %s of the reboot request", d)
	}
}

// client talks to the appliance through the forwarded port.
type client struct {
	base string
	http *http.Client
	jar  http.CookieJar
}

func newClient(port int) *client {
	jar, _ := cookiejar.New(nil)
	return &client{base: fmt.Sprintf("https://127.0.0.1:%d", port), jar: jar, http: &http.Client{
		Jar: jar, Timeout: 2 * time.Minute,
		// The certificate is self-signed: it is checked by its fingerprint.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

func (c *client) waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(2 * time.Second)
	}
}

func (c *client) waitSetup(t *testing.T, v *vm, d time.Duration) {
	t.Helper()
	c.waitFor(t, "the setup page", d, func() bool {
		select {
		case err := <-v.exited:
			v.exited <- err
			t.Fatalf("qemu exited while booting: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", c.base+"/setup", nil)
		resp, err := c.http.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && bytes.Contains(b, []byte(`name="form_token"`))
	})
}

func (c *client) fingerprint(t *testing.T) string {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(c.base, "https://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st := conn.ConnectionState()
	if st.Version < tls.VersionTLS12 {
		t.Errorf("TLS version %x", st.Version)
	}
	sum := sha256.Sum256(st.PeerCertificates[0].Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

var formTokenRe = regexp.MustCompile(`name="form_token" value="([^"]+)"`)
var csrfRe = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)"`)

// setup posts the first-boot form as a browser would.
func (c *client) setup(t *testing.T, token, user, password string) {
	t.Helper()
	page := c.get(t, "/setup")
	m := formTokenRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form_token on the setup page:\n%s", page)
	}
	form := url.Values{"token": {token}, "username": {user}, "password": {password}, "password2": {password}, "form_token": {m[1]}}
	resp, err := c.http.PostForm(c.base+"/setup", form)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /setup: %d\n%s", resp.StatusCode, b)
	}
}

func (c *client) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := c.http.Get(c.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// newToken makes an API token with the admin's browser session.
func (c *client) newToken(t *testing.T) string {
	t.Helper()
	page := c.get(t, "/setup/storage")
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf-token meta on /setup/storage:\n%s", page)
	}
	body, _ := json.Marshal(map[string]string{"name": "iso-test"})
	req, _ := http.NewRequest("POST", c.base+"/api/v1/tokens", bytes.NewReader(body))
	req.Header.Set("X-CSRF-Token", m[1])
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var tok struct {
		Token string `json:"token"`
	}
	if resp.StatusCode >= 300 || json.Unmarshal(b, &tok) != nil || tok.Token == "" {
		t.Fatalf("POST /api/v1/tokens: %d %s", resp.StatusCode, b)
	}
	return tok.Token
}

// try does an API call; want 0 accepts any 2xx.
func (c *client) try(tok, method, path string, body any, want int, out any) error {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	req.Header.Set("Authorization", "Bearer "+tok)
	plain := &http.Client{Transport: c.http.Transport, Timeout: c.http.Timeout} // no cookies: the token only
	resp, err := plain.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if (want != 0 && resp.StatusCode != want) || (want == 0 && resp.StatusCode >= 300) {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return nil
}

func (c *client) api(t *testing.T, tok, method, path string, body any, want int, out any) {
	t.Helper()
	if err := c.try(tok, method, path, body, want, out); err != nil {
		t.Fatal(err)
	}
}

// checkDAV lists the latest snapshot over WebDAV and reads every file,
// comparing digests.
func (c *client) checkDAV(t *testing.T, user, password string, content map[string][]byte) {
	t.Helper()
	plain := &http.Client{Transport: c.http.Transport, Timeout: c.http.Timeout}
	do := func(method, path string, hdr map[string]string) (int, []byte) {
		req, _ := http.NewRequest(method, c.base+path, nil)
		req.SetBasicAuth(user, password)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, b := do("PROPFIND", "/dav/web1/latest/data/", map[string]string{"Depth": "1"})
	if code != http.StatusMultiStatus || !bytes.Contains(b, []byte("hello.txt")) || !bytes.Contains(b, []byte("sub")) {
		t.Fatalf("PROPFIND /dav/web1/latest/data/: %d\n%s", code, b)
	}
	for name, want := range content {
		code, got := do("GET", "/dav/web1/latest/data/"+name, nil)
		ws, gs := sha256.Sum256(want), sha256.Sum256(got)
		if code != 200 || ws != gs {
			t.Errorf("GET over WebDAV %s: %d, sha256 %s, want %s", name, code, hex.EncodeToString(gs[:]), hex.EncodeToString(ws[:]))
		}
	}
	if code, _ := do("DELETE", "/dav/web1/latest/data/hello.txt", nil); code < 400 {
		t.Errorf("DELETE over WebDAV: %d, want a refusal", code)
	}
}
