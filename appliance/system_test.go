package appliance

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/internal/testenv"
)

// Outside the appliance the system endpoints do not exist: nobody can
// format a disk or replace the binary of an ordinary `cairn serve`.
func TestSystemEndpointsOnlyInAppliance(t *testing.T) {
	e := newEnv(t, Config{})
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/system"}, {"GET", "/api/v1/system/disks"}, {"POST", "/api/v1/system/disks/use"},
		{"POST", "/api/v1/system/update"}, {"POST", "/api/v1/system/reboot"},
	} {
		w := e.do("socket", c.method, c.path, map[string]string{"disk": "sda", "confirm": "sda"})
		if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "not an appliance") {
			t.Errorf("%s %s outside the appliance: %d %s", c.method, c.path, w.Code, w.Body)
		}
	}
	// And in the appliance they are admin-only.
	e.s.sys = defaultSysEnv()
	op := e.user("op", catalog.RoleOperator)
	for _, p := range []string{"/api/v1/system", "/api/v1/system/disks"} {
		if w := e.do(op, "GET", p, nil); w.Code != http.StatusForbidden {
			t.Errorf("operator GET %s: %d %s", p, w.Code, w.Body)
		}
		if w := e.do("", "GET", p, nil); w.Code != http.StatusUnauthorized {
			t.Errorf("anonymous GET %s: %d %s", p, w.Code, w.Body)
		}
	}
	if w := e.do(op, "POST", "/api/v1/system/disks/use", map[string]string{"disk": "sda"}); w.Code != http.StatusForbidden {
		t.Errorf("operator use disk: %d %s", w.Code, w.Body)
	}
}

func TestProbeSignature(t *testing.T) {
	mk := func(f func(b []byte)) []byte { b := make([]byte, 1<<17); f(b); return b }
	for _, c := range []struct {
		name, fstype, label string
		b                   []byte
	}{
		{"ext4", "ext4", "CAIRN-DATA", mk(func(b []byte) {
			b[1024+56], b[1024+57] = 0x53, 0xEF
			b[1024+96] = 0x40
			copy(b[1024+120:], "CAIRN-DATA")
		})},
		{"gpt", "gpt", "", mk(func(b []byte) { copy(b[512:], "EFI PART"); b[510], b[511] = 0x55, 0xAA })},
		{"dos", "dos", "", mk(func(b []byte) { b[510], b[511] = 0x55, 0xAA })},
		{"xfs", "xfs", "", mk(func(b []byte) { copy(b, "XFSB") })},
		{"btrfs", "btrfs", "", mk(func(b []byte) { copy(b[65536+64:], "_BHRfS_M") })},
		{"swap", "swap", "", mk(func(b []byte) { copy(b[4086:], "SWAPSPACE2") })},
		{"zeros", "", "", mk(func(b []byte) {})},
	} {
		fs, label := probeSignature(c.b)
		if fs != c.fstype || label != c.label {
			t.Errorf("%s: got %q %q, want %q %q", c.name, fs, label, c.fstype, c.label)
		}
	}
}

// loopDisk makes a loop device over a sparse file of size MiB, with
// mkfs (if any) run on it first, and detaches it at the end.
func loopDisk(t *testing.T, mib int, mkfs ...string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, int64(mib)<<20); err != nil {
		t.Fatal(err)
	}
	if len(mkfs) > 0 {
		if out, err := exec.Command(mkfs[0], append(mkfs[1:], img)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", mkfs, err, out)
		}
	}
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// tmpfsDir is a fresh tmpfs, like the live system's RAM root.
func tmpfsDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", d).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// With whatever the appliance mounted below it.
		if out, err := exec.Command("umount", "-R", d).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", d, err, out)
		}
	})
	return d
}

// applianceRun is a runAppliance in the background.
type applianceRun struct {
	t       *testing.T
	opened  chan *Server
	ready   chan string
	done    chan error
	cancel  context.CancelFunc
	client  *http.Client
	console string
}

func startAppliance(t *testing.T, dir string) *applianceRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &applianceRun{t: t, opened: make(chan *Server, 4), ready: make(chan string, 4), done: make(chan error, 1), cancel: cancel,
		console: filepath.Join(t.TempDir(), "console")}
	env := defaultSysEnv()
	env.includeLoop = true
	env.consoles = []string{a.console}
	env.reboot = func() error { return nil }
	logs := &syncBuffer{}
	cfg := Config{DataDir: dir, Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	go func() {
		a.done <- runAppliance(ctx, cfg, env, func(addr string) { a.ready <- addr }, func(s *Server) { a.opened <- s })
	}()
	a.client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	t.Cleanup(func() {
		a.stop()
		if t.Failed() {
			t.Logf("appliance log:\n%s", logs.String())
		}
	})
	return a
}

func (a *applianceRun) stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	a.cancel = nil
	select {
	case err := <-a.done:
		if err != nil {
			a.t.Errorf("runAppliance: %v", err)
		}
	case <-time.After(time.Minute):
		a.t.Error("runAppliance did not stop")
	}
}

// next waits for the next opened server and its address.
func (a *applianceRun) next() (*Server, string) {
	a.t.Helper()
	var s *Server
	select {
	case s = <-a.opened:
	case err := <-a.done:
		a.t.Fatalf("runAppliance ended: %v", err)
	case <-time.After(2 * time.Minute):
		a.t.Fatal("appliance did not open")
	}
	select {
	case addr := <-a.ready:
		return s, "https://" + addr
	case err := <-a.done:
		a.t.Fatalf("runAppliance ended: %v", err)
	case <-time.After(2 * time.Minute):
		a.t.Fatal("appliance did not listen")
	}
	return nil, ""
}

func (a *applianceRun) call(tok, method, url string, body, out any) int {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			a.t.Fatalf("%s %s: %v in %s", method, url, err, b)
		}
	}
	if resp.StatusCode >= 300 {
		a.t.Logf("%s %s: %d %s", method, url, resp.StatusCode, bytes.TrimSpace(b))
	}
	return resp.StatusCode
}

func adminToken(t *testing.T, s *Server) string {
	t.Helper()
	u := &catalog.User{Name: "admin", PasswordHash: "x", Role: catalog.RoleAdmin}
	if err := s.cat.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	tok := newToken()
	if err := s.cat.CreateToken(context.Background(), &catalog.Token{UserID: u.ID, Name: "t", Hash: hashToken(tok)}); err != nil {
		t.Fatal(err)
	}
	return tok
}

// The whole data-disk story on loop devices: listing, refusing a
// non-empty disk without confirmation, formatting it with confirmation,
// moving the data dir there, and finding it by its label on the next
// start. The data dir starts on a tmpfs, as on the live system.
func TestApplianceDataDisk(t *testing.T) {
	testenv.NeedRoot(t, "loop devices, mkfs and mounts")
	testenv.Need(t, "losetup", "mkfs.ext4", "wipefs")
	used := loopDisk(t, 64, "mkfs.ext4", "-q", "-L", "OLDDATA")
	blank := loopDisk(t, 64)
	usedName, blankName := filepath.Base(used), filepath.Base(blank)
	dir := filepath.Join(tmpfsDir(t), "cairn")

	a := startAppliance(t, dir)
	s, base := a.next()
	tok := adminToken(t, s)

	var sys SystemBody
	if c := a.call(tok, "GET", base+"/api/v1/system", nil, &sys); c != 200 {
		t.Fatalf("GET system: %d", c)
	}
	if sys.DataPersistent || sys.DataDevice != "" || len(sys.TLSFingerprint) != 95 || sys.Update.Status != "none" || sys.Update.RunningSlot != "A" {
		t.Fatalf("system on tmpfs: %+v", sys)
	}
	fpr := sys.TLSFingerprint

	// TLS: 1.2+ with AEAD only, and the certificate is the one shown.
	conn, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	st := conn.ConnectionState()
	conn.Close()
	if got := Fingerprint(st.PeerCertificates[0].Raw); got != fpr || st.Version < tls.VersionTLS12 {
		t.Errorf("TLS: fingerprint %s version %x; system says %s", got, st.Version, fpr)
	}
	for name, cc := range map[string]*tls.Config{
		"TLS 1.1": {InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11},
		"CBC":     {InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}},
	} {
		if c, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), cc); err == nil {
			c.Close()
			t.Errorf("%s handshake accepted", name)
		}
	}

	var disks []Disk
	a.call(tok, "GET", base+"/api/v1/system/disks", nil, &disks)
	find := func(name string) *Disk {
		for i := range disks {
			if disks[i].Name == name {
				return &disks[i]
			}
		}
		t.Fatalf("disk %s not listed in %+v", name, disks)
		return nil
	}
	if d := find(usedName); d.Empty || d.FSType != "ext4" || d.Label != "OLDDATA" || d.InUse || d.Size != 64<<20 || d.Path != used {
		t.Errorf("used disk: %+v", d)
	}
	if d := find(blankName); !d.Empty || d.FSType != "" || d.InUse {
		t.Errorf("blank disk: %+v", d)
	}

	// A non-empty disk is not formatted without its name as confirmation.
	if c := a.call(tok, "POST", base+"/api/v1/system/disks/use", DiskUseInput{Disk: usedName}, nil); c != http.StatusConflict {
		t.Errorf("use a non-empty disk without confirm: %d", c)
	}
	if c := a.call(tok, "POST", base+"/api/v1/system/disks/use", DiskUseInput{Disk: usedName, Confirm: blankName}, nil); c != http.StatusBadRequest {
		t.Errorf("use with a wrong confirm: %d", c)
	}
	if c := a.call(tok, "POST", base+"/api/v1/system/disks/use", DiskUseInput{Disk: "nosuch"}, nil); c != http.StatusNotFound {
		t.Errorf("use an unknown disk: %d", c)
	}
	if fs, label, _ := probeDevice(used); fs != "ext4" || label != "OLDDATA" {
		t.Fatalf("refused disk was touched: %s %q", fs, label)
	}

	// Confirmed: formatted, the appliance restarts on it with its data.
	var use DiskUseBody
	if c := a.call(tok, "POST", base+"/api/v1/system/disks/use", DiskUseInput{Disk: usedName, Confirm: usedName}, &use); c != http.StatusAccepted || use.Status != "restarting" {
		t.Fatalf("use with confirm: %d %+v", c, use)
	}
	_, base = a.next()
	if fs, label, _ := probeDevice(used); fs != "ext4" || label != DataLabel {
		t.Errorf("formatted disk: %s %q", fs, label)
	}
	sys = SystemBody{}
	if c := a.call(tok, "GET", base+"/api/v1/system", nil, &sys); c != 200 {
		t.Fatalf("GET system after the move (the token must have moved with the catalog): %d", c)
	}
	if !sys.DataPersistent || sys.DataDevice != used || sys.TLSFingerprint != fpr {
		t.Errorf("system after the move: %+v (fingerprint was %s)", sys, fpr)
	}
	if c := a.call(tok, "POST", base+"/api/v1/system/disks/use", DiskUseInput{Disk: blankName}, nil); c != http.StatusConflict {
		t.Errorf("second move: %d", c)
	}
	if _, err := os.Stat(filepath.Join(dir, "catalog.db")); err != nil {
		t.Errorf("catalog on the data disk: %v", err)
	}
	a.call(tok, "GET", base+"/api/v1/system/disks", nil, &disks)
	if d := find(usedName); !d.InUse || !strings.Contains(d.InUseBy, dir) {
		t.Errorf("data disk not shown in use: %+v", d)
	}
	con, _ := os.ReadFile(a.console)
	if !strings.Contains(string(con), fpr) ||
		!strings.Contains(string(con), "IN RAM") || !strings.Contains(string(con), used+" (persistent)") {
		t.Errorf("console banner:\n%s", con)
	}
	a.stop()

	// Next boot: a fresh RAM data dir; the disk is found by its label.
	if err := exec.Command("umount", dir).Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	b := startAppliance(t, dir)
	_, base = b.next()
	sys = SystemBody{}
	if c := b.call(tok, "GET", base+"/api/v1/system", nil, &sys); c != 200 || !sys.DataPersistent || sys.DataDevice != used || sys.TLSFingerprint != fpr {
		t.Errorf("after the reboot: %d %+v", c, sys)
	}
	b.stop()
}

// The console banner shows the setup URL with the token until the admin
// exists, and the TLS fingerprint.
func TestConsoleBanner(t *testing.T) {
	e := newEnv(t, Config{TLSMode: "auto"})
	e.s.sys = defaultSysEnv()
	e.s.sys.port = "443"
	e.s.sys.fpr = "AA:BB"
	e.s.sys.urlScheme = "https"
	fake := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(fake, []byte("1 0 0:1 / / rw - tmpfs tmpfs rw\n"), 0o644)
	e.s.sys.mountinfo = fake
	b := e.s.consoleBanner()
	tok := e.s.ui.SetupToken()
	if !strings.Contains(b, "Setup token: "+tok+"\n") || !strings.Contains(b, "AA:BB") || !strings.Contains(b, "IN RAM") {
		t.Errorf("banner before setup:\n%s", b)
	}
	for _, u := range e.s.sys.urls("443") {
		if !strings.Contains(b, u+"setup?token="+tok) {
			t.Errorf("banner lacks %s with the token:\n%s", u, b)
		}
	}
	adminToken(t, e.s)
	if b := e.s.consoleBanner(); strings.Contains(b, "token") || !strings.Contains(b, "AA:BB") {
		t.Errorf("banner after setup:\n%s", b)
	}
}

func TestDecideSlot(t *testing.T) {
	for _, c := range []struct {
		in, out string
		want    slotDecision
	}{
		{"", "", runA}, {updateStatusPending, updateStatusTrying, runB}, {updateStatusTrying, updateStatusRolled, runA},
		{updateStatusGood, updateStatusGood, runB}, {updateStatusRolled, updateStatusRolled, runA},
	} {
		var st *updateState
		if c.in != "" {
			st = &updateState{Status: c.in, Version: "v2"}
		}
		got := decideSlot(st)
		if got != c.want || (st != nil && st.Status != c.out) {
			t.Errorf("%q: got %v %+v, want %v %q", c.in, got, st, c.want, c.out)
		}
		if c.in == updateStatusTrying && !strings.Contains(st.LastError, "v2") {
			t.Errorf("rollback reason: %q", st.LastError)
		}
	}
}

// An uploaded ISO gives its /cairn.bin; anything else is refused with a
// reason.
func TestUpdateUploadChecks(t *testing.T) {
	testenv.Need(t, "xorriso")
	e := newEnv(t, Config{})
	e.s.sys = defaultSysEnv()
	self, err := os.Executable() // a test binary: ELF, static enough, but not cairn
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "fake")
	os.WriteFile(script, []byte("#!/bin/sh\necho cairn v9\n"), 0o755)
	for name, body := range map[string]string{"script": script, "test binary": self} {
		b, _ := os.ReadFile(body)
		w := e.doRaw("socket", "POST", "/api/v1/system/update", b)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "upload:") {
			t.Errorf("%s: %d %s", name, w.Code, w.Body)
		}
	}
	// ISO extraction.
	tree := t.TempDir()
	want := bytes.Repeat([]byte("cairn-binary-"), 5000)
	os.WriteFile(filepath.Join(tree, "cairn.bin"), want, 0o644)
	os.MkdirAll(filepath.Join(tree, "live"), 0o755)
	os.WriteFile(filepath.Join(tree, "live", "other"), []byte("x"), 0o644)
	iso := filepath.Join(t.TempDir(), "x.iso")
	if out, err := exec.Command("xorriso", "-as", "mkisofs", "-R", "-J", "-V", "CAIRN", "-o", iso, tree).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v: %s", err, out)
	}
	f, err := os.Open(iso)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !isISO(f) {
		t.Fatal("isISO: false for an ISO")
	}
	var got bytes.Buffer
	if err := isoExtract(f, "cairn.bin", &got); err != nil || !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("isoExtract: %v, %d bytes (want %d)", err, got.Len(), len(want))
	}
	if err := isoExtract(f, "nosuch", io.Discard); err == nil || !strings.Contains(err.Error(), "no /nosuch") {
		t.Errorf("missing file: %v", err)
	}
}

func (e *testEnv) doRaw(as, method, path string, body []byte) *httptest.ResponseRecorder {
	e.t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req = req.WithContext(context.WithValue(req.Context(), peerKey, peer{unix: true, uid: 0}))
	w := httptest.NewRecorder()
	e.s.Handler().ServeHTTP(w, req)
	return w
}

// `cairn serve --tls-cert/--tls-key` outside the appliance: the given
// certificate is served; a wrong mode or a missing key is refused.
func TestServeTLSFiles(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := ensureSelfSigned(cert, key); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	want := Fingerprint(pair.Certificate[0])
	e := newEnv(t, Config{Listen: "127.0.0.1:0", TLSMode: "file", TLSCert: cert, TLSKey: key})
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- e.s.Serve(ctx, func(a string) { addr <- a }) }()
	a := <-addr
	conn, err := tls.Dial("tcp", a, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	if got := Fingerprint(conn.ConnectionState().PeerCertificates[0].Raw); got != want {
		t.Errorf("served %s, want %s", got, want)
	}
	conn.Close()
	if !strings.Contains(e.logs.String(), "TLS on") || !strings.Contains(e.logs.String(), "https://") {
		t.Errorf("log lacks the TLS line or the https setup URL:\n%s", e.logs.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{{TLSMode: "bogus"}, {TLSMode: "file", TLSCert: cert}, {TLSMode: "file", TLSCert: cert, TLSKey: cert}} {
		if _, _, err := loadTLS(c, dir); err == nil {
			t.Errorf("loadTLS(%+v) accepted", c)
		}
	}
}
