package web

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// stubTLSFingerprint is the certificate fingerprint the stub API reports.
const stubTLSFingerprint = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"

// stubAPI stands in for the appliance's /api/v1 in the UI's own browser
// test: it authenticates exactly as the appliance does with the UI's
// session store (cookie + CSRF on every non-GET), serves fixed data and
// streams the progress events the test pushes. The end-to-end test
// against the real `cairn serve` binary is TestBrowserServe.
type stubAPI struct {
	ui       *UI
	mu       sync.Mutex
	subs     map[chan string]bool // SSE streams; push fans out to all
	posted   map[string]any       // last POST /api/v1/hosts body
	patched  map[string]any       // last PATCH /api/v1/hosts/{host} body
	storage  map[string]any       // last POST /api/v1/storage body
	defaults map[string]any       // last PUT /api/v1/defaults body
	ram      *bool                // appliance image: data in RAM (nil: not the appliance)
	system   http.Handler         // serves /api/v1/system… when set
	csrfOK   bool
	tests    []string // query of each POST /api/v1/hosts/{host}/test
}

func (s *stubAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/api/v1/") {
		s.ui.Handler().ServeHTTP(w, r)
		return
	}
	js := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	if r.URL.Path == "/api/v1/status" { // public, as in the appliance
		st := map[string]any{"version": "test", "setup_done": true}
		s.mu.Lock()
		if s.ram != nil {
			st["data_persistent"] = !*s.ram
		}
		s.mu.Unlock()
		js(200, st)
		return
	}
	if _, ok := s.ui.Sessions.Authenticate(r); !ok {
		js(401, map[string]string{"error": "authentication required"})
		return
	}
	if err := s.ui.Sessions.CheckCSRF(r); err != nil {
		js(403, map[string]string{"error": err.Error()})
		return
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	host := map[string]any{"name": "web1", "address": "10.0.0.5", "enabled": true, "groups": []string{}, "settings": map[string]string{},
		"sources":   []any{map[string]any{"name": "etc", "method": "sftp", "path": "/etc", "excludes": []string{}, "options": map[string]string{}, "secret_keys": []string{"password"}}},
		"schedules": []any{map[string]any{"cron": "0 2 * * *"}}, "retention": map[string]int{"keep_daily": 7}, "created": now}
	q := r.URL.Query()
	if s.system != nil && strings.HasPrefix(r.URL.Path, "/api/v1/system") {
		s.system.ServeHTTP(w, r)
		return
	}
	switch {
	case r.URL.Path == "/api/v1/schedule/preview":
		if f := strings.Fields(q.Get("cron")); len(f) != 5 || f[0] == "99" {
			js(400, map[string]string{"error": "schedule " + q.Get("cron") + ": minute out of range"})
			return
		}
		js(200, map[string]any{"cron": q.Get("cron"), "zone": "UTC", "next": []time.Time{now.Add(13 * time.Hour), now.Add(37 * time.Hour), now.Add(61 * time.Hour)}})
	case r.URL.Path == "/api/v1/defaults" && r.Method == "GET":
		js(200, map[string]any{"settings": map[string]string{}})
	case r.URL.Path == "/api/v1/defaults" && r.Method == "PUT":
		var in map[string]any
		json.NewDecoder(r.Body).Decode(&in)
		if st, _ := in["settings"].(map[string]any); st["schedule"] == "99 2 * * *" {
			js(400, map[string]string{"error": `schedule: minute 99 out of range 0-59`})
			return
		}
		s.mu.Lock()
		s.defaults = in
		s.mu.Unlock()
		js(200, in)
	case r.URL.Path == "/api/v1/tls" && r.Method == "GET":
		js(200, map[string]any{"mode": "auto", "active": true, "fingerprint": stubTLSFingerprint, "subject": "CN=cairn",
			"names": []string{"cairn.local", "127.0.0.1"}, "not_after": now.Add(365 * 24 * time.Hour), "self_signed": true, "changeable": true})
	case r.URL.Path == "/api/v1/storage" && r.Method == "GET":
		js(200, map[string]any{"pool_id": "p", "kind": "dir", "location": "/srv/cairn/pool", "free": 3 << 30, "total": 8 << 30, "changeable": true})
	case r.URL.Path == "/api/v1/storage/test":
		var in map[string]any
		json.NewDecoder(r.Body).Decode(&in)
		if in["kind"] == "s3" {
			js(200, map[string]any{"ok": false, "location": "s3://h:9000/b", "error": "s3 s3://h:9000/b: connect: access denied"})
			return
		}
		js(200, map[string]any{"ok": true, "location": in["dir"], "free": 3 << 30, "total": 8 << 30})
	case r.URL.Path == "/api/v1/storage" && r.Method == "POST":
		var in map[string]any
		json.NewDecoder(r.Body).Decode(&in)
		s.mu.Lock()
		s.storage = in
		s.mu.Unlock()
		js(200, map[string]any{"pool_id": "p2", "kind": "dir", "location": in["dir"], "encrypted": in["encrypt"], "changeable": true,
			"key": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"})
	case r.URL.Path == "/api/v1/jobs" && q.Get("state") == "running":
		js(200, []any{map[string]any{"id": 7, "kind": "backup", "host": "web1", "state": "running", "created": now,
			"progress": map[string]any{"phase": "pulling", "files": 0, "bytes": 0, "bytes_total": 1 << 20}}})
	case r.URL.Path == "/api/v1/jobs" && q.Get("state") == "queued":
		js(200, []any{map[string]any{"id": 8, "kind": "backup", "host": "db1", "state": "queued", "created": now}})
	case r.URL.Path == "/api/v1/jobs":
		js(200, []any{})
	case r.URL.Path == "/api/v1/hosts" && r.Method == "GET":
		js(200, []any{host})
	case r.URL.Path == "/api/v1/hosts" && r.Method == "POST":
		var in map[string]any
		json.NewDecoder(r.Body).Decode(&in)
		s.mu.Lock()
		s.posted, s.csrfOK = in, r.Header.Get(CSRFHeader) != ""
		s.mu.Unlock()
		if in["name"] == "bad name" {
			js(400, map[string]string{"error": `host name "bad name": use letters, digits, '.', '_' and '-'`})
			return
		}
		// As the appliance: an sftp source needs a user and a credential.
		if srcs, _ := in["sources"].([]any); len(srcs) == 1 {
			src, _ := srcs[0].(map[string]any)
			opts, _ := src["options"].(map[string]any)
			sec, _ := src["secret"].(map[string]any)
			if src["method"] == "sftp" && opts["user"] == nil {
				js(400, map[string]string{"error": `source main: method sftp needs the option "user"`})
				return
			}
			if src["method"] == "sftp" && sec["password"] == nil && sec["private_key"] == nil {
				js(400, map[string]string{"error": `source main: method sftp needs the credential password or private_key`})
				return
			}
		}
		js(201, host)
	case strings.HasSuffix(r.URL.Path, "/test") && r.Method == "POST":
		s.mu.Lock()
		s.tests = append(s.tests, r.URL.RawQuery)
		s.mu.Unlock()
		res := map[string]any{"source": "etc", "method": "sftp", "supported": true, "pinned": "SHA256:old"}
		if q.Get("accept") == "true" {
			res["ok"], res["pinned"] = true, "SHA256:new"
			res["identity"] = map[string]string{"host_key_fingerprint": "SHA256:new", "server": "SSH-2.0-OpenSSH_9.2", "path": "/etc", "entries": "42"}
		} else {
			res["ok"], res["error"] = false, "sftp 10.0.0.5:22: host key changed: pinned SHA256:old, server sent SHA256:new"
		}
		js(200, []any{res})
	case strings.HasSuffix(r.URL.Path, "/retention"):
		js(200, map[string]any{"host": "web2", "policy": "daily 7", "sources": map[string]any{"etc": map[string]any{
			"keep": []any{map[string]any{"id": "s1", "time": now}}, "remove": []any{map[string]any{"id": "s0", "time": now.Add(-48 * time.Hour)}}}}})
	case strings.HasPrefix(r.URL.Path, "/api/v1/hosts/"):
		if r.Method == "PATCH" {
			var in map[string]any
			json.NewDecoder(r.Body).Decode(&in)
			s.mu.Lock()
			s.patched = in
			s.mu.Unlock()
		}
		h := map[string]any{}
		for k, v := range host {
			h[k] = v
		}
		h["name"] = strings.TrimPrefix(r.URL.Path, "/api/v1/hosts/")
		js(200, h)
	case r.URL.Path == "/api/v1/snapshots":
		js(200, []any{map[string]any{"id": "s1", "host": "web1", "source": "etc", "status": "complete", "files": 120, "bytes": 3 << 20,
			"started": time.Now().Add(-73 * time.Hour), "finished": time.Now().Add(-72 * time.Hour)}})
	case r.URL.Path == "/api/v1/pool/history":
		js(200, map[string]any{"points": []any{
			map[string]any{"time": now.Add(-72 * time.Hour), "stored": 1 << 20, "apparent": 1 << 20, "objects": 10, "snapshots": 0},
			map[string]any{"time": now.Add(-24 * time.Hour), "stored": 4 << 20, "apparent": 2 << 20, "objects": 30, "snapshots": 1},
			map[string]any{"time": now, "stored": 5 << 20, "apparent": 3 << 20, "objects": 42, "snapshots": 1}}})
	case r.URL.Path == "/api/v1/pool":
		js(200, map[string]any{"id": "p", "location": "/srv/cairn/pool", "objects": 42, "bytes": 5 << 20, "snapshots": 1, "logical_bytes": 3 << 20})
	case r.URL.Path == "/api/v1/methods":
		// As the appliance (a subset of the sftp fields): the form is
		// built from these alone.
		f := func(name, label, typ string, more ...string) map[string]any {
			m := map[string]any{"name": name, "label": label, "type": typ}
			for i := 0; i+1 < len(more); i += 2 {
				m[more[i]] = more[i+1]
			}
			return m
		}
		sftp := []any{f("host", "Server", "string"), f("user", "SSH user", "string"), f("port", "Port", "number", "default", "22"),
			f("host_key", "Pinned SSH host key", "text", "group", "advanced"), f("full", "Full run", "bool", "group", "advanced"),
			f("password", "Password", "string"), f("private_key", "Private key", "text"), f("passphrase", "Key passphrase", "string"),
			f("snapshot", "Snapshot preset", "choice", "group", "snapshot")}
		sftp[1].(map[string]any)["required"] = true
		for _, i := range []int{5, 6, 7} {
			sftp[i].(map[string]any)["secret"] = true
		}
		sftp[8].(map[string]any)["choices"] = []string{"", "zfs", "lvm"}
		js(200, []any{
			map[string]any{"name": "local", "title": "Local directory", "path_label": "Directory on the appliance",
				"options": []any{f("one_file_system", "Stay on one file system", "bool", "group", "advanced")}},
			map[string]any{"name": "sftp", "title": "SFTP", "options": sftp}})
	case r.URL.Path == "/api/v1/events":
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		fmt.Fprint(w, ": hi\n\n")
		w.(http.Flusher).Flush()
		ch := make(chan string, 16)
		s.mu.Lock()
		s.subs[ch] = true
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(s.subs, ch)
			s.mu.Unlock()
		}()
		for {
			select {
			case <-r.Context().Done():
				return
			case e := <-ch:
				fmt.Fprintf(w, "data: %s\n\n", e)
				w.(http.Flusher).Flush()
			}
		}
	default:
		io.Copy(io.Discard, r.Body)
		js(404, map[string]string{"error": "no such endpoint"})
	}
}

// unlabelled lists the visible form controls of the page without a label.
func unlabelled(b *browser) string {
	return b.evalString(`[...document.querySelectorAll("input:not([type=hidden]),select,textarea")].filter(e => !e.labels || e.labels.length === 0).map(e => e.id || e.name).join(",")`)
}

// push sends an event to every open stream.
func (s *stubAPI) push(e string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		ch <- e
	}
}

func TestBrowserSetupLoginDashboard(t *testing.T) {
	e := newEnv(t)
	stub := &stubAPI{ui: e.ui, subs: map[chan string]bool{}}
	srv := httptest.NewServer(stub)
	t.Cleanup(srv.Close)
	b := startBrowser(t) // cleaned up first: its streams end before srv.Close

	// Every page leads to setup while no admin exists.
	b.navigate(srv.URL + "/hosts")
	if p := b.path(); p != "/setup" {
		t.Fatalf("at %s, want /setup", p)
	}
	b.screenshot("01-setup")
	if u := unlabelled(b); u != "" {
		t.Fatalf("setup: controls without a label: %s", u)
	}
	// Setup without the token is refused.
	b.setValue("#password", goodPassword)
	b.setValue("#password2", goodPassword)
	b.setValue("#token", "not-the-token")
	b.submit("#setup-form")
	if txt := b.evalString("document.body.innerText"); !strings.Contains(txt, "Wrong setup token") {
		t.Fatalf("setup with a wrong token:\n%s", txt)
	}
	b.consoleErrors() // the 403 of the refused post is logged; expected
	// A weak password is refused next to its field.
	b.setValue("#token", e.ui.SetupToken())
	b.setValue("#password", "short")
	b.setValue("#password2", "short")
	b.eval(`document.querySelector("#password").removeAttribute("minlength")`)
	b.submit("#setup-form")
	if txt := b.evalString(`document.querySelector("#password-err").innerText`); !strings.Contains(txt, "at least 12") {
		t.Fatalf("weak password error: %q", txt)
	}
	b.consoleErrors()
	b.setValue("#password", goodPassword)
	b.setValue("#password2", goodPassword)
	b.submit("#setup-form")
	if p := b.path(); p != "/setup/storage" {
		t.Fatalf("after setup at %s", p)
	}
	b.waitFor("storage step", `document.body.dataset.ready === "1" && document.querySelector("#st-dir-free").textContent !== ""`)
	if txt := b.evalString("document.body.innerText"); !strings.Contains(txt, "/srv/cairn/pool (not encrypted), 3.0 GiB free of 8.0 GiB") ||
		!strings.Contains(txt, "Free space there: 3.0 GiB of 8.0 GiB.") {
		t.Fatalf("storage step:\n%s", txt)
	}
	if u := unlabelled(b); u != "" {
		t.Fatalf("storage step: controls without a label: %s", u)
	}
	// S3: the fields show, and a failed test says why.
	b.eval(`document.querySelector("#st-kind-s3").click()`)
	b.waitFor("s3 fields", `!document.querySelector("#st-s3-box").hidden && document.querySelector("#st-dir-box").hidden`)
	b.eval(`document.querySelector("#st-test").click()`)
	b.waitFor("s3 test result", `document.querySelector("#st-test-result").textContent.includes("access denied")`)
	b.eval(`document.querySelector("#st-kind-dir").click()`)
	// An encrypted pool in a new directory: its key is shown once, and
	// the next step waits until the admin says it is saved.
	b.setValue("#st-dir", "/srv/backup/pool")
	b.eval(`document.querySelector("#st-encrypt").click(); document.querySelector("#storage-form").requestSubmit()`)
	b.waitFor("key shown", `!document.querySelector("#st-key-box").hidden`)
	if k := b.evalString(`document.querySelector("#st-key").value + "|" + document.querySelector("#st-key-dl").download + "|" + document.querySelector("#st-key-dl").href.slice(0, 5)`); k != "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff|cairn-pool-p2.key|blob:" {
		t.Fatalf("key box %q", k)
	}
	stub.mu.Lock()
	got, _ := json.Marshal(stub.storage)
	stub.mu.Unlock()
	if string(got) != `{"dir":"/srv/backup/pool","encrypt":true,"kind":"dir"}` {
		t.Fatalf("POST /api/v1/storage %s", got)
	}
	b.screenshot("02-setup-storage")
	b.eval(`document.querySelector("#st-next").click()`)
	if p := b.path(); p != "/setup/storage" {
		t.Fatalf("left the storage step before the key was saved: %s", p)
	}
	b.eval(`document.querySelector("#st-key-saved").click()`)
	b.eval(`document.querySelector("#st-next").click()`)
	b.waitFor("timezone step", `location.pathname === "/setup/timezone" && document.readyState === "complete"`)
	b.setValue("#timezone", "Europe/Berlin")
	b.submit("form[action='/setup/timezone']")
	// The HTTPS step follows the timezone; its link leads to the schedule.
	b.waitFor("HTTPS step", `location.pathname === "/setup/tls" && document.body.dataset.ready === "1"`)
	if txt := b.evalString(`document.querySelector("#tls-fpr").textContent + "|" + document.querySelector("#tls-names").textContent`); txt != stubTLSFingerprint+"|cairn.local, 127.0.0.1" {
		t.Fatalf("HTTPS step shows %q", txt)
	}
	if u := unlabelled(b); u != "" {
		t.Fatalf("HTTPS step: controls without a label: %s", u)
	}
	b.eval(`document.querySelector("#tls-next").click()`)
	// Defaults: prefilled on a fresh appliance; a bad cron shows at its
	// field; the PUT carries the form.
	b.waitFor("defaults step", `location.pathname === "/setup/defaults" && document.body.dataset.ready === "1"`)
	if v := b.evalString(`["schedule","jitter","keep_daily","keep_weekly","keep_monthly"].map(k => document.querySelector("#d-" + k).value).join("|")`); v != "0 2 * * *|30m|7|4|6" {
		t.Fatalf("defaults prefilled %q", v)
	}
	if u := unlabelled(b); u != "" {
		t.Fatalf("defaults: controls without a label: %s", u)
	}
	b.setValue("#d-schedule", "99 2 * * *")
	b.eval(`document.querySelector("#defaults-form").requestSubmit()`)
	b.waitFor("cron error at its field", `!document.querySelector('.field-error[data-for="schedule"]').hidden`)
	b.consoleErrors()
	b.setValue("#d-schedule", "15 1 * * *")
	b.eval(`document.querySelector("#defaults-form").requestSubmit()`)
	b.waitFor("first host step", `location.pathname === "/setup/host"`)
	stub.mu.Lock()
	got, _ = json.Marshal(stub.defaults)
	stub.mu.Unlock()
	if string(got) != `{"settings":{"jitter":"30m","keep_daily":"7","keep_monthly":"6","keep_weekly":"4","schedule":"15 1 * * *"}}` {
		t.Fatalf("PUT /api/v1/defaults %s", got)
	}
	b.submit("form[action='/setup/done']")
	if p := b.path(); p != "/" {
		t.Fatalf("after setup at %s", p)
	}
	b.waitFor("dashboard data", `document.body.dataset.ready === "1"`)

	// Log out, then in again.
	b.submit("form.logout")
	if p := b.path(); p != "/login" {
		t.Fatalf("after logout at %s", p)
	}
	b.screenshot("03-login")
	b.setValue("#username", "admin")
	b.setValue("#password", goodPassword)
	b.submit("#login-form")
	if p := b.path(); p != "/" {
		t.Fatalf("after login at %s", p)
	}
	b.waitFor("dashboard data", `document.body.dataset.ready === "1"`)
	b.waitFor("live updates", `document.querySelector("#live-status").textContent === "Live"`)
	row := `document.querySelector('#running tr[data-job="7"]')`
	b.waitFor("running job row", row)
	if txt := b.evalString(`document.querySelector("#queue tbody").innerText`); !strings.Contains(txt, "#8") || !strings.Contains(txt, "db1") {
		t.Fatalf("queue: %q", txt)
	}
	if txt := b.evalString(`document.querySelector("#host-status tbody").innerText`); !strings.Contains(txt, "web1") || !strings.Contains(txt, "stale: last backup") || !strings.Contains(txt, "3.0 MiB") {
		t.Fatalf("host status: %q", txt)
	}
	// web1 is scheduled and its last backup is long past: stale.
	if txt := b.evalString(`document.querySelector("#attention").innerText`); !strings.Contains(txt, "web1 is stale") {
		t.Fatalf("attention: %q", txt)
	}
	if txt := b.evalString(`document.querySelector("#pool").innerText`); !strings.Contains(txt, "5.0 MiB in 42 objects") ||
		!strings.Contains(txt, "Apparent size\n3.0 MiB") || !strings.Contains(txt, "0.6× (dedup and compression)") {
		t.Fatalf("pool: %q", txt)
	}
	// The usage chart: one polyline per series, a point per sample, the
	// newest stored value at the top of the scale.
	if got := b.evalString(`[...document.querySelectorAll("#pool-chart polyline")].map(p => p.dataset.series + ":" + p.getAttribute("points")).join(" | ")`); got !=
		"apparent:64.0,126.4 442.7,96.8 632.0,67.2 | stored:64.0,126.4 442.7,37.6 632.0,8.0" {
		t.Fatalf("chart %q", got)
	}
	// Live progress over SSE: files, bytes, rate, ETA, path.
	stub.push(`{"type":"progress","job_id":7,"host":"web1","data":{"phase":"pulling","files":1234,"bytes":524288,"bytes_total":1048576,"rate":2097152,"eta_seconds":95,"path":"etc/ssh/sshd_config"}}`)
	b.waitFor("progress 50%", row+`.innerText.includes("50%")`)
	txt := b.evalString(row + ".innerText")
	for _, want := range []string{"1234", "512.0 KiB", "2.0 MiB/s", "1m 35s", "etc/ssh/sshd_config"} {
		if !strings.Contains(txt, want) {
			t.Errorf("running row %q lacks %q", txt, want)
		}
	}
	stub.push(`{"type":"progress","job_id":7,"host":"web1","data":{"phase":"pulling","files":2000,"bytes":1048576,"bytes_total":1048576,"rate":2097152}}`)
	b.waitFor("progress 100%", row+`.innerText.includes("100%")`)
	b.screenshot("04-dashboard")

	// The host form builds itself from GET /api/v1/methods.
	b.navigate(srv.URL + "/hosts/new")
	b.waitFor("host form", `document.body.dataset.ready === "1"`)
	b.setValue("#f-method", "sftp")
	b.waitFor("sftp fields", `document.querySelector("#f-opt-user") && document.querySelector("#f-opt-private_key")`)
	if u := unlabelled(b); u != "" {
		t.Fatalf("host form: controls without a label: %s", u)
	}
	if l := b.evalString(`document.querySelector('label[for="f-opt-user"]').textContent + "|" + document.querySelector('label[for="f-opt-password"]').textContent`); l != "SSH user (required)|Password" {
		t.Fatalf("sftp labels %q", l)
	}
	// Another method drops the sftp fields.
	b.setValue("#f-method", "local")
	b.waitFor("local has no sftp fields", `!document.querySelector("#f-opt-user")`)
	b.setValue("#f-method", "sftp")
	b.waitFor("sftp fields again", `document.querySelector("#f-opt-user")`)
	b.setValue("#f-name", "bad name")
	b.setValue("#f-path", "/etc")
	b.eval(`document.querySelector("#host-form").requestSubmit()`)
	b.waitFor("name error next to the field", `!document.querySelector('.field-error[data-for="name"]').hidden`)
	b.consoleErrors() // the 400 is logged; expected
	b.setValue("#f-name", "web2")
	b.setValue("#f-address", "10.0.0.6")
	b.setValue("#f-opt-port", "2222")
	b.setValue("#f-opt-password", "s3cret-pw")
	b.setValue("#f-cron", "30 1 * * *")
	b.waitFor("cron preview", `document.querySelector("#cron-preview").textContent.startsWith("Next runs: ")`)
	if txt := b.evalString(`document.querySelector("#cron-preview").textContent`); !strings.HasSuffix(txt, "(the appliance runs schedules in UTC).") || strings.Count(txt, ",") < 2 {
		t.Fatalf("cron preview %q", txt)
	}
	b.setValue("#f-keep_daily", "14")
	// Without a user the API answers 400; its message shows at the user field.
	b.eval(`document.querySelector("#host-form").requestSubmit()`)
	b.waitFor("user error next to the user field", `!document.querySelector('.field-error[data-for="opt-user"]').hidden && document.activeElement.id === "f-opt-user"`)
	if m := b.evalString(`document.querySelector('.field-error[data-for="opt-user"]').textContent`); !strings.Contains(m, `needs the option "user"`) {
		t.Fatalf("user field error %q", m)
	}
	b.consoleErrors()
	b.setValue("#f-opt-user", "backup")
	b.eval(`window.__cairnOld = true; document.querySelector("#host-form").requestSubmit()`)
	b.waitFor("host page", `!window.__cairnOld && location.pathname === "/hosts/web2" && document.body.dataset.ready === "1"`)
	stub.mu.Lock()
	got, _ = json.Marshal(stub.posted)
	csrfOK := stub.csrfOK
	stub.mu.Unlock()
	want := `{"address":"10.0.0.6","groups":[],"name":"web2","retention":{"keep_daily":14},"schedules":[{"cron":"30 1 * * *"}],` +
		`"sources":[{"excludes":[],"method":"sftp","name":"main","options":{"port":"2222","user":"backup"},"path":"/etc","secret":{"password":"s3cret-pw"}}]}`
	if string(got) != want || !csrfOK {
		t.Fatalf("POST /api/v1/hosts body\n got %s\nwant %s (csrf header sent: %v)", got, want, csrfOK)
	}
	if txt := b.evalString("document.body.innerText"); !strings.Contains(txt, "0 2 * * *") || !strings.Contains(txt, "daily 7") ||
		!strings.Contains(txt, "would keep 1, would remove 1") {
		t.Fatalf("host page:\n%s", txt)
	}
	b.screenshot("05-host")

	// Test connection: the key changed, and the admin accepts the new one.
	b.eval(`document.querySelector("#test-conn").click()`)
	b.waitFor("test result with accept button", `document.querySelector("#accept-key")`)
	if txt := b.evalString(`document.querySelector("#test-results").innerText`); !strings.Contains(txt, "host key changed") || !strings.Contains(txt, "SHA256:old") {
		t.Fatalf("test result: %q", txt)
	}
	b.eval(`document.querySelector("#accept-key").click()`)
	b.waitFor("accepted", `document.querySelector("#test-results").innerText.includes("Pinned now")`)
	txt = b.evalString(`document.querySelector("#test-results").innerText`)
	for _, want := range []string{"connected", "SHA256:new", "SSH-2.0-OpenSSH_9.2", "/etc", "42"} {
		if !strings.Contains(txt, want) {
			t.Errorf("accepted test result %q lacks %q", txt, want)
		}
	}
	if b.evalString(`String(!!document.querySelector("#accept-key"))`) != "false" {
		t.Error("accept button still shown after accepting")
	}
	stub.mu.Lock()
	tests := strings.Join(stub.tests, "|")
	stub.mu.Unlock()
	if tests != "|accept=true" {
		t.Fatalf("test requests %q, want a plain one then accept=true", tests)
	}
	b.screenshot("06-host-test")

	// Editing keeps the stored password when its field is left empty:
	// the PATCH sends it as "" (the API then keeps the stored value).
	b.navigate(srv.URL + "/hosts/web1/edit")
	b.waitFor("edit form", `document.body.dataset.ready === "1" && document.querySelector("#f-opt-password")`)
	if txt := b.evalString(`document.querySelector("#f-opt-password").parentElement.innerText + "|" + document.querySelector("#secret-note").innerText`); !strings.Contains(txt, "Stored; leave empty to keep it.") ||
		!strings.Contains(txt, "Leave a field empty to keep its stored value") {
		t.Fatalf("edit form credential notes: %q", txt)
	}
	// Fields outside the main group sit in closed sections.
	if g := b.evalString(`[...document.querySelectorAll("#method-fields details.opt-group")].map(d => d.dataset.group + ":" + d.open).join(",")`); g != "advanced:false,snapshot:false" {
		t.Fatalf("option groups %q", g)
	}
	b.setValue("#f-opt-user", "backup2")
	b.eval(`window.__cairnOld = true; document.querySelector("#host-form").requestSubmit()`)
	b.waitFor("host page after edit", `!window.__cairnOld && location.pathname === "/hosts/web1" && document.body.dataset.ready === "1"`)
	stub.mu.Lock()
	got, _ = json.Marshal(stub.patched["sources"])
	stub.mu.Unlock()
	if want := `[{"excludes":[],"method":"sftp","name":"etc","options":{"user":"backup2"},"path":"/etc","secret":{"password":""}}]`; string(got) != want {
		t.Fatalf("PATCH sources\n got %s\nwant %s", got, want)
	}
	if errs := b.consoleErrors(); len(errs) > 0 {
		t.Fatalf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}
