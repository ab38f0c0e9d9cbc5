package web

import (
	"archive/zip"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
)

var (
	cairnOnce sync.Once
	cairnBin  string
	cairnErr  error
)

// buildCairn builds the real binary once per test process.
func buildCairn(t *testing.T) string {
	t.Helper()
	cairnOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cairn-web-bin-")
		if err != nil {
			cairnErr = err
			return
		}
		cairnBin = filepath.Join(dir, "cairn")
		out, err := exec.Command("go", "build", "-o", cairnBin, "github.com/cairn-backup/cairn/cmd/cairn").CombinedOutput()
		if err != nil {
			cairnErr = err
			t.Logf("go build: %s", out)
		}
	})
	if cairnErr != nil {
		t.Fatalf("building cairn: %v", cairnErr)
	}
	return cairnBin
}

// startServe runs `cairn serve` on a fresh data dir and returns its base
// URL and the setup URL it logged.
func startServe(t *testing.T, data string) (base, setupURL string) {
	t.Helper()
	cmd := exec.Command(buildCairn(t), "serve", "--data", data, "--listen", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	var logMu sync.Mutex
	found := make(chan [2]string, 1)
	go func() {
		addrRe, urlRe := regexp.MustCompile(`http=(\S+)`), regexp.MustCompile(`url="?([^"\s]+/setup\?token=[^"\s]+)`)
		var addr string
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			log.WriteString(line + "\n")
			logMu.Unlock()
			if m := addrRe.FindStringSubmatch(line); m != nil && strings.Contains(line, "listening") {
				addr = m[1]
			}
			if m := urlRe.FindStringSubmatch(line); m != nil {
				found <- [2]string{"http://" + addr, m[1]}
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("cairn serve log:\n%s", log.String())
			logMu.Unlock()
		}
	})
	select {
	case f := <-found:
		return f[0], f[1]
	case <-time.After(60 * time.Second):
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("cairn serve printed no setup URL within 60s:\n%s", log.String())
	}
	return "", ""
}

var updateDocs = flag.Bool("docs", false, "write the README's setup screenshots to docs/ (TestBrowserServe)")

// docShot saves the page, 1024 px wide and as tall as its content (at
// most 1400 px), as docs/<name>.png for the README when -docs is given.
// Each must stay under 150 KB.
func docShot(b *browser, name string) {
	b.t.Helper()
	if !*updateDocs {
		return
	}
	set := func(h int) {
		b.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 1024, "height": h, "deviceScaleFactor": 1, "mobile": false}, nil)
	}
	set(700)
	h, _ := strconv.Atoi(b.evalString(`String(Math.min(1400, Math.max(700, document.documentElement.scrollHeight)))`))
	set(h)
	var res struct {
		Data string `json:"data"`
	}
	b.call("Page.captureScreenshot", map[string]any{"format": "png"}, &res)
	b.call("Emulation.clearDeviceMetricsOverride", nil, nil)
	png, err := base64.StdEncoding.DecodeString(res.Data)
	if err != nil || len(png) > 150<<10 {
		b.t.Fatalf("doc screenshot %s: %d bytes (want < 150 KB), %v", name, len(png), err)
	}
	p := filepath.Join("..", "..", "docs", name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("doc screenshot %s (%d bytes)", p, len(png))
}

// TestBrowserServe drives the real `cairn serve` binary in headless
// Chromium: setup (refused without the token), login, adding a local
// host through the form, a backup run from the UI, browsing and
// downloading a file, a restore job, and group visibility for a user.
func TestBrowserServe(t *testing.T) {
	b := startBrowser(t)
	data := t.TempDir()
	src := t.TempDir()
	files := map[string][]byte{"a.txt": []byte("hello from cairn\n"), "sub/b.bin": bytes.Repeat([]byte{0, 1, 2, 250, 251}, 40000)}
	for name, content := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base, setupURL := startServe(t, data)

	// Setup without the token is refused.
	b.navigate(base + "/")
	if p := b.path(); p != "/setup" {
		t.Fatalf("first page %s, want /setup", p)
	}
	b.eval(`document.querySelector("#token").removeAttribute("required")`)
	b.setValue("#token", "")
	b.setValue("#password", goodPassword)
	b.setValue("#password2", goodPassword)
	b.submit("#setup-form")
	if txt := b.evalString("document.body.innerText"); !strings.Contains(txt, "Wrong setup token") {
		t.Fatalf("setup without token:\n%s", txt)
	}
	b.consoleErrors()
	// With the printed URL the token is filled in.
	b.navigate(setupURL)
	b.setValue("#password", goodPassword)
	b.setValue("#password2", goodPassword)
	b.submit("#setup-form")
	b.waitFor("storage step", `location.pathname === "/setup/storage" && document.body.dataset.ready === "1" && document.querySelector("#st-test-result").textContent.startsWith("OK")`)
	if txt := b.evalString("document.body.innerText"); !strings.Contains(txt, filepath.Join(data, "pool")+" (not encrypted), ") ||
		!strings.Contains(txt, "Free space there: ") {
		t.Fatalf("storage step at %s:\n%s", b.path(), txt)
	}
	// Keep the directory, encrypt the pool: it is re-created, and its
	// key is shown once, as the appliance stored it.
	b.eval(`document.querySelector("#st-encrypt").click()`)
	docShot(b, "setup-1-storage")
	b.eval(`document.querySelector("#storage-form").requestSubmit()`)
	b.waitFor("pool key shown", `!document.querySelector("#st-key-box").hidden`)
	keyFile, err := os.ReadFile(filepath.Join(data, "pool.key"))
	if err != nil {
		t.Fatal(err)
	}
	if k := b.evalString(`document.querySelector("#st-key").value`); k != strings.TrimSpace(string(keyFile)) || len(k) != 64 {
		t.Fatalf("key shown %q, key file %q", k, keyFile)
	}
	if txt := b.evalString(`document.querySelector("#pool-enc").textContent + "|" + document.querySelector("#st-done").textContent`); !strings.HasPrefix(txt, "encrypted|New pool ") {
		t.Fatalf("after choosing: %q", txt)
	}
	b.screenshot("serve-01-storage")
	b.eval(`document.querySelector("#st-key-saved").click(); document.querySelector("#st-next").click()`)
	b.waitFor("timezone step", `location.pathname === "/setup/timezone" && document.readyState === "complete"`)
	b.setValue("#timezone", "UTC")
	b.submit("form[action='/setup/timezone']")
	// The HTTPS step follows the timezone; its link leads to the schedule.
	b.waitFor("HTTPS step", `location.pathname === "/setup/tls" && document.body.dataset.ready === "1"`)
	b.eval(`document.querySelector("#tls-next").click()`)
	b.waitFor("defaults step", `location.pathname === "/setup/defaults" && document.body.dataset.ready === "1"`)
	b.eval(`document.querySelector("#defaults-form").requestSubmit()`)
	b.waitFor("first host step", `location.pathname === "/setup/host" && document.readyState === "complete"`)
	b.eval(`document.querySelector('a[href="/hosts/new?setup=1"]').click()`)
	b.waitFor("host form", `location.pathname === "/hosts/new" && document.body.dataset.ready === "1"`)

	// The host form lists the binary's registered methods.
	if opts := b.evalString(`[...document.querySelectorAll("#f-method option")].map(o => o.value + ":" + o.textContent).join(",")`); !strings.Contains(opts, "local:Local directory") {
		t.Fatalf("method options %q", opts)
	}
	addHost := func(name, groups string) {
		t.Helper()
		b.navigate(base + "/hosts/new")
		b.waitFor("host form", `document.body.dataset.ready === "1"`)
		b.setValue("#f-name", name)
		b.setValue("#f-method", "local")
		b.setValue("#f-path", src)
		b.setValue("#f-groups", groups)
		b.setValue("#f-keep_last", "5")
		b.eval(`window.__cairnOld = true; document.querySelector("#host-form").requestSubmit()`)
		b.waitFor("host page of "+name, `!window.__cairnOld && location.pathname === "/hosts/`+name+`" && document.body.dataset.ready === "1"`)
	}
	addHost("files1", "")
	if txt := b.evalString(`document.querySelector("#sources").innerText`); !strings.Contains(txt, src) || !strings.Contains(txt, "local") {
		t.Fatalf("sources of files1: %q", txt)
	}
	// Run a backup from the host page and follow it on its job page to
	// the end: the progress line reaches 100% with the files counted.
	b.eval(`document.querySelector("#run-now").click()`)
	b.waitFor("backup queued", `document.querySelector("#host-msg").innerText.includes("Backup queued as job")`)
	b.eval(`document.querySelector("#host-msg a").click()`)
	b.waitFor("backup done on its job page", `location.pathname.startsWith("/jobs/") && document.body.dataset.ready === "1" && /done|succeeded/.test(document.querySelector("#job-info").innerText)`)
	if txt := b.evalString(`document.querySelector("#job-pct").textContent`); !regexp.MustCompile(`^100% · [2-9] files · 195\.3 KiB$`).MatchString(txt) {
		t.Fatalf("job progress %q", txt)
	}
	b.navigate(base + "/")
	b.waitFor("dashboard", `document.body.dataset.ready === "1"`)
	b.waitFor("backup complete on the dashboard", `document.querySelector("#host-status tbody").innerText.includes("complete")`)
	// Pool usage: stored vs apparent, the saving, and the chart over the
	// samples of the new pool and of the backup.
	b.waitFor("usage sample of the backup", `(window.__h = window.__h || fetch("/api/v1/pool/history").then(r => r.json()).then(h => { window.__hist = h; window.__h = null; })) && window.__hist && window.__hist.points.length >= 2 && window.__hist.points.at(-1).snapshots === 1`)
	b.navigate(base + "/")
	b.waitFor("dashboard with the chart", `document.body.dataset.ready === "1" && document.querySelectorAll("#pool-chart polyline").length === 2`)
	if txt := b.evalString(`document.querySelector("#pool").innerText`); !regexp.MustCompile(`Apparent size\s+195\.3 KiB`).MatchString(txt) ||
		!regexp.MustCompile(`Space saved\s+\d+\.\d× \(dedup and compression\)`).MatchString(txt) || !strings.Contains(txt, "Encrypted\nyes") {
		t.Fatalf("pool on the dashboard: %q", txt)
	}
	b.screenshot("serve-02-dashboard")
	b.navigate(base + "/hosts/files1")
	b.waitFor("host page", `document.body.dataset.ready === "1"`)
	if txt := b.evalString(`document.querySelector("#retention-preview").innerText`); !strings.Contains(txt, "would keep 1, would remove 0") {
		t.Fatalf("retention preview: %q", txt)
	}
	// The connection test of a local source: the method has none, and says so.
	b.eval(`document.querySelector("#test-conn").click()`)
	b.waitFor("test result", `document.querySelector("#test-results .test-result")`)
	if txt := b.evalString(`document.querySelector("#test-results").innerText`); !strings.Contains(txt, "main (local)") || !strings.Contains(txt, "no connection test") {
		t.Fatalf("test result: %q", txt)
	}

	// An SFTP host against a real sshd, from the fields GET
	// /api/v1/methods lists: the connection test logs in with the pasted
	// key, a backup runs, and an edit that leaves the key empty keeps it
	// (the next test still logs in).
	sshd := testenv.SSHD(t)
	os.WriteFile(filepath.Join(sshd.Dir, "web.conf"), []byte("listen 443\n"), 0o644)
	key, err := os.ReadFile(sshd.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	b.navigate(base + "/hosts/new")
	b.waitFor("host form", `document.body.dataset.ready === "1"`)
	b.setValue("#f-method", "sftp")
	b.waitFor("sftp fields", `document.querySelector("#f-opt-private_key")`)
	if u := unlabelled(b); u != "" {
		t.Fatalf("sftp host form: controls without a label: %s", u)
	}
	b.setValue("#f-name", "web1")
	b.setValue("#f-address", sshd.Host)
	b.setValue("#f-path", sshd.Dir)
	b.setValue("#f-opt-port", strconv.Itoa(sshd.Port))
	b.setValue("#f-opt-user", sshd.User)
	docShot(b, "setup-2-host")
	b.setValue("#f-opt-private_key", string(key))
	b.screenshot("serve-03-host-form")
	b.eval(`window.__cairnOld = true; document.querySelector("#host-form").requestSubmit()`)
	b.waitFor("host page of web1", `!window.__cairnOld && location.pathname === "/hosts/web1" && document.body.dataset.ready === "1"`)
	testConn := func(what string) {
		t.Helper()
		b.eval(`document.querySelector("#test-results").replaceChildren(); document.querySelector("#test-conn").click()`)
		b.waitFor(what, `document.querySelector("#test-results .test-result")`)
		if txt := b.evalString(`document.querySelector("#test-results").innerText`); !strings.Contains(txt, "connected") || !strings.Contains(txt, "web.conf") && !strings.Contains(txt, "1") {
			t.Fatalf("%s: %q", what, txt)
		}
	}
	testConn("sftp connection test")
	b.eval(`document.querySelector("#run-now").click()`)
	b.waitFor("sftp backup queued", `document.querySelector("#host-msg").innerText.includes("Backup queued as job")`)
	b.eval(`document.querySelector("#host-msg a").click()`)
	b.waitFor("sftp backup done", `location.pathname.startsWith("/jobs/") && document.body.dataset.ready === "1" && /done|succeeded/.test(document.querySelector("#job-info").innerText)`)
	b.navigate(base + "/hosts/web1/edit")
	b.waitFor("edit form", `document.body.dataset.ready === "1" && document.querySelector("#f-opt-private_key")`)
	if v := b.evalString(`document.querySelector("#f-opt-private_key").value + "|" + document.querySelector("#f-opt-user").value`); v != "|"+sshd.User {
		t.Fatalf("edit form values %q", v)
	}
	b.setValue("#f-excludes", "*.tmp")
	b.eval(`window.__cairnOld = true; document.querySelector("#host-form").requestSubmit()`)
	b.waitFor("host page after edit", `!window.__cairnOld && location.pathname === "/hosts/web1" && document.body.dataset.ready === "1"`)
	if txt := b.evalString(`document.querySelector("#sources").innerText`); !strings.Contains(txt, "*.tmp") || !strings.Contains(txt, "private_key") {
		t.Fatalf("sources after edit: %q", txt)
	}
	testConn("sftp connection test after an edit without the key")
	// Restore web1's snapshot to the host, into a new directory there.
	b.navigate(base + "/browse/web1")
	b.waitFor("web1 snapshots", `document.body.dataset.ready === "1" && document.querySelector("#snapshots a")`)
	b.eval(`document.querySelector("#snapshots a").click()`)
	b.waitFor("web1 snapshot", `location.pathname.startsWith("/snapshots/") && document.body.dataset.ready === "1"`)
	hostDest := filepath.Join(sshd.Dir, "restored")
	b.eval(`document.querySelector("#r-where-host").click()`)
	b.waitFor("host restore fields", `!document.querySelector("#r-host-box").hidden`)
	b.setValue("#r-dest", hostDest)
	b.eval(`document.querySelector("#restore-form").requestSubmit()`)
	b.waitFor("restore to host queued", `document.querySelector("#restore-msg").innerText.includes("Restore queued as job")`)
	b.eval(`document.querySelector("#restore-msg a").click()`)
	b.waitFor("restore to host done", `location.pathname.startsWith("/jobs/") && document.body.dataset.ready === "1" && /done|succeeded|failed/.test(document.querySelector("#job-info").innerText)`)
	if txt := b.evalString(`document.querySelector("#job-info").innerText`); !strings.Contains(txt, "done") && !strings.Contains(txt, "succeeded") {
		t.Fatalf("restore to host: %s", txt)
	}
	var restored []byte
	filepath.WalkDir(hostDest, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "web.conf" {
			restored, _ = os.ReadFile(p)
		}
		return nil
	})
	if string(restored) != "listen 443\n" {
		t.Fatalf("web.conf restored to the host under %s: %q", hostDest, restored)
	}
	// A second backup after changes on the host; the newest snapshot's
	// root compared with the older one lists them.
	os.WriteFile(filepath.Join(sshd.Dir, "web.conf"), []byte("listen 8443\n"), 0o644)
	os.WriteFile(filepath.Join(sshd.Dir, "new.txt"), []byte("new\n"), 0o644)
	b.navigate(base + "/hosts/web1")
	b.waitFor("host page", `document.body.dataset.ready === "1"`)
	b.eval(`document.querySelector("#run-now").click()`)
	b.waitFor("second backup queued", `document.querySelector("#host-msg").innerText.includes("Backup queued as job")`)
	b.eval(`document.querySelector("#host-msg a").click()`)
	b.waitFor("second backup done", `location.pathname.startsWith("/jobs/") && document.body.dataset.ready === "1" && /done|succeeded/.test(document.querySelector("#job-info").innerText)`)
	b.navigate(base + "/browse/web1")
	b.waitFor("two snapshots", `document.body.dataset.ready === "1" && document.querySelectorAll("#snapshots a").length >= 2`)
	b.eval(`document.querySelector("#snapshots a").click()`)
	b.waitFor("compare done", `location.pathname.startsWith("/snapshots/") && document.body.dataset.diffReady === "1"`)
	diff := b.evalString(`[...document.querySelectorAll("#diff tbody tr")].map(r => r.dataset.status + " " + r.children[1].textContent).join(", ")`)
	if diff != "added new.txt, added restored/, changed web.conf" {
		t.Fatalf("diff against the older snapshot: %q (%s)", diff, b.evalString(`document.querySelector("#diff-result").textContent`))
	}
	if u := unlabelled(b); u != "" {
		t.Fatalf("snapshot page: controls without a label: %s", u)
	}

	// Verification: restore tests of both hosts from the UI.
	b.navigate(base + "/verify")
	b.waitFor("verify page", `document.body.dataset.ready === "1"`)
	if u := unlabelled(b); u != "" {
		t.Fatalf("verify page: controls without a label: %s", u)
	}
	b.eval(`document.querySelector("#rt-run").requestSubmit()`)
	b.waitFor("restore tests done", `document.querySelector("#rt-msg").textContent.includes("hosts tested")`)
	if msg := b.evalString(`document.querySelector("#rt-msg").textContent`); msg != "2 hosts tested, 0 failed." {
		t.Fatalf("restore tests: %q", msg)
	}
	if rows := b.evalString(`[...document.querySelectorAll("#restore-tests tbody tr")].map(r => r.dataset.host + ":" + r.children[1].textContent).sort().join(",")`); rows != "files1:ok,web1:ok" {
		t.Fatalf("restore test rows %q", rows)
	}
	b.screenshot("serve-06-verify")
	// Replication to a directory, synced from the UI, then the audit.
	replica := filepath.Join(t.TempDir(), "replica")
	b.navigate(base + "/replication")
	b.waitFor("replication page", `document.body.dataset.ready === "1"`)
	if u := unlabelled(b); u != "" {
		t.Fatalf("replication page: controls without a label: %s", u)
	}
	b.setValue("#t-name", "offsite")
	b.setValue("#t-location", replica)
	b.eval(`document.querySelector("#target-form").requestSubmit()`)
	b.waitFor("target listed", `document.querySelector('#targets tr[data-target="offsite"]')`)
	// Adding a target starts a first run; the list follows it.
	b.waitFor("sync button enabled", `!document.querySelector('button[data-sync="offsite"]').disabled`)
	b.eval(`document.querySelector('button[data-sync="offsite"]').click()`)
	b.waitFor("synced", `document.querySelector("#repl-msg").textContent.startsWith("offsite: ")`)
	if msg := b.evalString(`document.querySelector("#repl-msg").textContent`); !regexp.MustCompile(`^offsite: [0-3] snapshots copied, `).MatchString(msg) {
		t.Fatalf("sync: %q", msg)
	}
	b.waitFor("target row after the sync", `document.querySelector('#targets tr[data-target="offsite"]').children[6].textContent === "3"`)
	b.screenshot("serve-07-replication")
	b.navigate(base + "/audit")
	b.waitFor("audit page", `document.body.dataset.ready === "1"`)
	if txt := b.evalString(`document.querySelector("#audit-summary").textContent`); !strings.HasPrefix(txt, "No host lags behind.") {
		t.Fatalf("audit summary %q", txt)
	}
	if rows := b.evalString(`[...document.querySelectorAll("#audit-hosts tbody tr")].map(r => r.dataset.host + "/" + r.dataset.target + ":" + r.children[2].textContent).join(",")`); rows != "files1/primary:1,files1/offsite:1,web1/primary:2,web1/offsite:2" {
		t.Fatalf("audit rows %q", rows)
	}
	// Instances: this appliance alone.
	b.navigate(base + "/instances")
	b.waitFor("instances page", `document.body.dataset.ready === "1"`)
	if txt := b.evalString(`document.querySelector("#instances tbody").innerText`); !strings.Contains(txt, "(this one)") || !strings.Contains(txt, "up") {
		t.Fatalf("instances %q", txt)
	}
	// Not the appliance image: no banner, and the system page says so.
	b.navigate(base + "/system")
	b.waitFor("system page", `document.body.dataset.ready === "1"`)
	if b.evalString(`String(document.querySelector("#sys-none").hidden) + String(document.querySelector("#ram-banner").hidden)`) != "falsetrue" {
		t.Fatal("system page outside the appliance image")
	}
	b.consoleErrors() // the 404 of GET /api/v1/system is logged; expected
	if *updateDocs {
		b.navigate(base + "/")
		b.waitFor("dashboard with both hosts", `document.body.dataset.ready === "1" && document.querySelectorAll("#pool-chart polyline").length === 2 && document.querySelectorAll("#host-status tbody tr").length === 2`)
		docShot(b, "setup-3-dashboard")
	}

	// A phone-sized window: nothing runs off the side.
	b.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}, nil)
	b.navigate(base + "/")
	b.waitFor("dashboard", `document.body.dataset.ready === "1"`)
	if w := b.evalString(`String(document.documentElement.scrollWidth) + "/" + String(window.innerWidth)`); w != "390/390" {
		t.Errorf("dashboard on a phone: page width/viewport %s", w)
	}
	b.screenshot("serve-02-dashboard-phone")
	b.call("Emulation.clearDeviceMetricsOverride", nil, nil)

	// Browse the snapshot and download a file.
	b.navigate(base + "/browse/files1")
	b.waitFor("snapshot list", `document.body.dataset.ready === "1" && document.querySelector("#snapshots a")`)
	b.eval(`document.querySelector("#snapshots a").click()`)
	b.waitFor("snapshot root", `location.pathname.startsWith("/snapshots/") && document.body.dataset.ready === "1"`)
	if txt := b.evalString(`document.querySelector("#entries").innerText`); !strings.Contains(txt, "a.txt") || !strings.Contains(txt, "sub/") {
		t.Fatalf("snapshot root: %q", txt)
	}
	b.eval(`[...document.querySelectorAll("#entries a")].find(a => a.textContent === "sub/").click()`)
	b.waitFor("sub directory", `location.pathname.endsWith("/sub") && document.body.dataset.ready === "1"`)
	b.screenshot("serve-03-browse")
	if u := unlabelled(b); u != "" {
		t.Fatalf("browse page: controls without a label: %s", u)
	}
	// The browser downloads the file through its link and digests it.
	gotSum := b.evalString(`(async () => {
		const a = [...document.querySelectorAll("#entries a")].find(a => a.textContent === "b.bin");
		const r = await fetch(a.href, {credentials: "same-origin"});
		if (!r.ok) return "HTTP " + r.status;
		const d = new Uint8Array(await crypto.subtle.digest("SHA-256", await r.arrayBuffer()));
		return [...d].map(c => c.toString(16).padStart(2, "0")).join("");
	})()`)
	if want := fmt.Sprintf("%x", sha256.Sum256(files["sub/b.bin"])); gotSum != want {
		t.Fatalf("downloaded sub/b.bin: SHA-256 %s, want %s", gotSum, want)
	}

	// Download the directory as zip and tar.zst, with the session cookie.
	fetchHead := func(sel string) string {
		return b.evalString(`(async () => {
			const r = await fetch(document.querySelector("` + sel + `").href, {credentials: "same-origin"});
			if (!r.ok) return "HTTP " + r.status;
			const u = new Uint8Array(await r.arrayBuffer());
			return [...u.slice(0, 4)].map(c => c.toString(16).padStart(2, "0")).join("") + " " + u.length;
		})()`)
	}
	if got := fetchHead("#dl-zip"); !strings.HasPrefix(got, "504b0304 ") {
		t.Fatalf("zip download: %q, want a zip (PK\x03\x04)", got)
	}
	// The zip of the directory, downloaded by the browser, extracts to
	// the backed-up files.
	zip64 := b.evalString(`(async () => {
		const r = await fetch(document.querySelector("#dl-zip").href, {credentials: "same-origin"});
		if (!r.ok) return "HTTP " + r.status;
		const u = new Uint8Array(await r.arrayBuffer());
		let s = ""; for (const c of u) s += String.fromCharCode(c);
		return btoa(s);
	})()`)
	zb, err := base64.StdEncoding.DecodeString(zip64)
	if err != nil {
		t.Fatalf("zip download: %v (%.40q)", err, zip64)
	}
	zr, err := zip.NewReader(bytes.NewReader(zb), int64(len(zb)))
	if err != nil {
		t.Fatalf("zip download: %v", err)
	}
	var zipFiles []string
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		zipFiles = append(zipFiles, f.Name)
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !strings.HasSuffix(f.Name, "b.bin") || !bytes.Equal(got, files["sub/b.bin"]) {
			t.Fatalf("zip entry %s: %d bytes, %v", f.Name, len(got), err)
		}
	}
	if len(zipFiles) != 1 {
		t.Fatalf("zip of sub/ holds %v, want b.bin", zipFiles)
	}
	if got := fetchHead("#dl-tzst"); !strings.HasPrefix(got, "28b52ffd ") {
		t.Fatalf("tar.zst download: %q, want zstd magic", got)
	}
	// The WebDAV address of the directory serves its files.
	dav := b.evalString(`document.querySelector("#dav-url").value`)
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(base) + `/dav/files1/\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ/main/sub/$`).MatchString(dav) {
		t.Fatalf("WebDAV address %q", dav)
	}
	if got := b.evalString(`fetch(document.querySelector("#dav-url").value + "b.bin", {credentials: "same-origin"}).then(r => r.ok ? r.arrayBuffer().then(a => String(a.byteLength)) : "HTTP " + r.status)`); got != strconv.Itoa(len(files["sub/b.bin"])) {
		t.Fatalf("b.bin over WebDAV: %s, want %d bytes", got, len(files["sub/b.bin"]))
	}

	// Restore to the host: a local source cannot, and the API's reason shows.
	b.eval(`document.querySelector("#r-where-host").click()`)
	b.waitFor("host restore fields", `!document.querySelector("#r-host-box").hidden && document.querySelector("#r-dir-box").hidden`)
	b.eval(`document.querySelector("#r-in-place").click()`)
	b.waitFor("in-place warning", `!document.querySelector("#r-in-place-warn").hidden`)
	b.eval(`document.querySelector("#r-in-place").click()`)
	b.eval(`document.querySelector("#restore-form").requestSubmit()`)
	b.waitFor("to_host refused for local", `!document.querySelector('.field-error[data-for="restore"]').hidden`)
	if m := b.evalString(`document.querySelector('.field-error[data-for="restore"]').textContent`); !strings.Contains(m, "cannot restore to the host") {
		t.Fatalf("restore to host error %q", m)
	}
	b.consoleErrors() // the 400 is logged; expected
	b.eval(`document.querySelector("#r-where-dir").click()`)

	// Restore the snapshot to a directory on the appliance.
	to := filepath.Join(data, "restores", "r1")
	b.setValue("#r-path", "")
	b.setValue("#r-to", to)
	b.eval(`document.querySelector("#restore-form").requestSubmit()`)
	b.waitFor("restore queued", `document.querySelector("#restore-msg").innerText.includes("Restore queued as job")`)
	b.eval(`document.querySelector("#restore-msg a").click()`)
	b.waitFor("restore job done on its page", `location.pathname.startsWith("/jobs/") && document.querySelector("#job-info").innerText.includes("done")`)
	b.screenshot("serve-05-job")
	deadline := time.Now().Add(60 * time.Second)
	for name, want := range files {
		for {
			got, err := os.ReadFile(filepath.Join(to, name))
			if err == nil && bytes.Equal(got, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("restored %s: %v (%d bytes)", name, err, len(got))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// A user in group teamA sees only the hosts of teamA.
	b.navigate(base + "/users")
	b.waitFor("users page", `document.body.dataset.ready === "1"`)
	b.setValue("#g-name", "teamA")
	b.eval(`document.querySelector("#group-form").requestSubmit()`)
	b.waitFor("group listed", `document.querySelector("#groups").innerText.includes("teamA")`)
	b.setValue("#u-name", "alice")
	b.setValue("#u-password", goodPassword)
	b.setValue("#u-groups", "teamA")
	b.eval(`document.querySelector("#user-form").requestSubmit()`)
	b.waitFor("user listed", `document.querySelector("#users").innerText.includes("alice")`)
	b.screenshot("serve-04-users")
	if u := unlabelled(b); u != "" {
		t.Fatalf("users page: controls without a label: %s", u)
	}
	addHost("files2", "teamA")
	if errs := b.consoleErrors(); len(errs) > 0 {
		t.Fatalf("console errors:\n%s", strings.Join(errs, "\n"))
	}
	b.submit("form.logout")
	b.setValue("#username", "alice")
	b.setValue("#password", goodPassword)
	b.submit("#login-form")
	b.navigate(base + "/hosts")
	b.waitFor("hosts list", `document.body.dataset.ready === "1"`)
	if txt := b.evalString(`document.querySelector("#hosts").innerText`); !strings.Contains(txt, "files2") || strings.Contains(txt, "files1") {
		t.Fatalf("alice's hosts: %q", txt)
	}
	if got := b.evalString(`fetch("/api/v1/hosts/files1").then(r => String(r.status))`); got != "404" {
		t.Fatalf("alice GET /api/v1/hosts/files1: %s, want 404", got)
	}
	if got := b.evalString(`fetch("/api/v1/hosts/files2").then(r => String(r.status))`); got != "200" {
		t.Fatalf("alice GET /api/v1/hosts/files2: %s, want 200", got)
	}
	// A forged change without the CSRF token is refused even with the cookie.
	if got := b.evalString(`fetch("/api/v1/tokens", {method: "POST", headers: {"Content-Type": "application/json"}, body: '{"name":"x"}'}).then(r => String(r.status))`); got != "403" {
		t.Fatalf("POST without CSRF token: %s, want 403", got)
	}
	// Alice changes her password on her account page and logs in with it.
	b.navigate(base + "/tokens")
	b.waitFor("account page", `document.body.dataset.ready === "1"`)
	if u := unlabelled(b); u != "" {
		t.Fatalf("account page: controls without a label: %s", u)
	}
	newPassword := "Another-Secret-42"
	b.setValue("#pw-current", "not-her-password")
	b.setValue("#pw-new", newPassword)
	b.setValue("#pw-new2", newPassword)
	b.eval(`document.querySelector("#pw-form").requestSubmit()`)
	b.waitFor("wrong current password at its field", `!document.querySelector('.field-error[data-for="current"]').hidden`)
	b.consoleErrors() // the 403 is logged; expected
	b.setValue("#pw-current", goodPassword)
	b.setValue("#pw-new", newPassword)
	b.setValue("#pw-new2", newPassword)
	b.eval(`document.querySelector("#pw-form").requestSubmit()`)
	b.waitFor("password changed", `document.querySelector("#pw-msg").textContent === "Password changed."`)
	b.submit("form.logout")
	b.setValue("#username", "alice")
	b.setValue("#password", newPassword)
	b.submit("#login-form")
	if p := b.path(); p != "/" {
		t.Fatalf("login with the new password: at %s", p)
	}
	var status struct {
		SetupDone bool `json:"setup_done"`
	}
	json.Unmarshal([]byte(b.evalString(`fetch("/api/v1/status").then(r => r.text())`)), &status)
	if !status.SetupDone {
		t.Fatal("status does not report setup done")
	}
}
