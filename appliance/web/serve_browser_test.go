package web

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
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
	if txt := b.evalString("document.body.innerText"); b.path() != "/setup/storage" || !strings.Contains(txt, filepath.Join(data, "pool")) ||
		!strings.Contains(txt, "Free space:") {
		t.Fatalf("storage step at %s:\n%s", b.path(), txt)
	}
	b.screenshot("serve-01-storage")
	b.navigate(base + "/setup/timezone")
	b.setValue("#timezone", "UTC")
	b.submit("form[action='/setup/timezone']")
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
	// Run a backup from the host page and wait for its snapshot.
	b.eval(`document.querySelector("#run-now").click()`)
	b.waitFor("backup queued", `document.querySelector("#host-msg").innerText.includes("Backup queued as job")`)
	b.navigate(base + "/")
	b.waitFor("dashboard", `document.body.dataset.ready === "1"`)
	b.waitFor("backup complete on the dashboard", `document.querySelector("#host-status tbody").innerText.includes("complete")`)
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
	got64 := b.evalString(`(async () => {
		const a = [...document.querySelectorAll("#entries a")].find(a => a.textContent === "b.bin");
		const r = await fetch(a.href, {credentials: "same-origin"});
		if (!r.ok) return "HTTP " + r.status;
		const u = new Uint8Array(await r.arrayBuffer());
		let s = ""; for (const c of u) s += String.fromCharCode(c);
		return btoa(s);
	})()`)
	if got, err := base64.StdEncoding.DecodeString(got64); err != nil || !bytes.Equal(got, files["sub/b.bin"]) {
		t.Fatalf("downloaded sub/b.bin differs (%d bytes, %v; %.40q)", len(got), err, got64)
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
	var status struct {
		SetupDone bool `json:"setup_done"`
	}
	json.Unmarshal([]byte(b.evalString(`fetch("/api/v1/status").then(r => r.text())`)), &status)
	if !status.SetupDone {
		t.Fatal("status does not report setup done")
	}
}
