package web

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// applianceStub serves the appliance image's /api/v1/system… as
// appliance/system*.go answer them (shapes of SystemBody, Disk,
// DiskUseBody, UpdateBody), recording what the UI sends.
type applianceStub struct {
	stub     *stubAPI
	mu       sync.Mutex
	diskUse  []string // bodies of POST /api/v1/system/disks/use
	uploaded []byte
}

func (a *applianceStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	js := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	a.stub.mu.Lock()
	ram := a.stub.ram != nil && *a.stub.ram
	a.stub.mu.Unlock()
	switch {
	case r.URL.Path == "/api/v1/system":
		b := map[string]any{"version": "test", "data_dir": "/var/lib/cairn", "data_persistent": !ram, "urls": []string{"https://10.0.0.9/"},
			"tls_fingerprint": "AB:CD", "update": map[string]any{"running_slot": "A", "status": "none"}}
		if !ram {
			b["data_device"] = "/dev/vdc"
		}
		js(200, b)
	case r.URL.Path == "/api/v1/system/disks":
		js(200, []any{
			map[string]any{"name": "vda", "path": "/dev/vda", "size": 4 << 30, "empty": false, "fstype": "iso9660", "in_use": true, "in_use_by": "mounted on /run/cairn/boot"},
			map[string]any{"name": "vdb", "path": "/dev/vdb", "size": 8 << 30, "model": "QEMU HARDDISK", "empty": true, "in_use": false},
			map[string]any{"name": "vdc", "path": "/dev/vdc", "size": 16 << 30, "empty": false, "fstype": "gpt", "in_use": false,
				"partitions": []any{map[string]any{"name": "vdc1", "size": 16 << 30, "fstype": "ext4"}}}})
	case r.URL.Path == "/api/v1/system/disks/use":
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.diskUse = append(a.diskUse, string(b))
		a.mu.Unlock()
		var in map[string]string
		json.Unmarshal(b, &in)
		if in["disk"] == "vdc" && in["confirm"] != "vdc" {
			js(409, map[string]string{"error": `disk vdc is not empty (1 partition(s)): formatting erases it; send "confirm": "vdc" to do it anyway`})
			return
		}
		js(202, map[string]string{"disk": in["disk"], "path": "/dev/" + in["disk"], "label": "cairn-data", "status": "restarting"})
		f := false
		a.stub.mu.Lock()
		a.stub.ram = &f // the restart moved the data to the disk
		a.stub.mu.Unlock()
	case r.URL.Path == "/api/v1/system/update" && r.Method == "POST":
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.uploaded = b
		a.mu.Unlock()
		js(200, map[string]any{"running_slot": "A", "status": "pending", "version": "1.2.3", "sha256": "feedface"})
	default:
		js(404, map[string]string{"error": "no such endpoint"})
	}
}

// The appliance image's pages: the RAM banner on every page, the data
// disk step (an empty disk directly, a non-empty one only after typing its
// name, disks in use never), and the update upload.
func TestBrowserAppliancePages(t *testing.T) {
	e := newEnv(t)
	ram := true
	stub := &stubAPI{ui: e.ui, subs: map[chan string]bool{}, ram: &ram}
	as := &applianceStub{stub: stub}
	stub.system = as
	srv := httptest.NewServer(stub)
	t.Cleanup(srv.Close)
	b := startBrowser(t)

	// The banner shows already on the first setup page.
	b.navigate(srv.URL + "/setup")
	b.waitFor("RAM banner", `!document.querySelector("#ram-banner").hidden`)
	if txt := b.evalString(`document.querySelector("#ram-banner").innerText`); !strings.Contains(txt, "The data lives in RAM and is lost at reboot") {
		t.Fatalf("banner %q", txt)
	}
	b.setValue("#token", e.ui.SetupToken())
	b.setValue("#password", goodPassword)
	b.setValue("#password2", goodPassword)
	b.submit("#setup-form")
	// Storage sends the admin to the data disk first.
	b.waitFor("disk step", `location.pathname === "/setup/disk" && document.body.dataset.ready === "1"`)
	if u := unlabelled(b); u != "" {
		t.Fatalf("disk step: controls without a label: %s", u)
	}
	if got := b.evalString(`[...document.querySelectorAll('input[name="disk"]')].map(i => i.value + (i.disabled ? "(disabled)" : "")).join(",")`); got != "vda(disabled),vdb,vdc" {
		t.Fatalf("disks offered %q", got)
	}
	// The empty disk needs no confirmation; the other one does.
	b.eval(`document.querySelector("#disk-vdb").click()`)
	if b.evalString(`String(document.querySelector("#disk-confirm-box").hidden)`) != "true" {
		t.Fatal("confirmation asked for the empty disk")
	}
	b.eval(`document.querySelector("#disk-vdc").click()`)
	b.waitFor("confirmation box", `!document.querySelector("#disk-confirm-box").hidden`)
	if txt := b.evalString(`document.querySelector("#disk-warn").textContent`); !strings.Contains(txt, "vdc is not empty (1 partition(s): ext4). Everything on it is erased.") {
		t.Fatalf("warning %q", txt)
	}
	b.screenshot("20-setup-disk")
	b.eval(`document.querySelector("#disk-form").requestSubmit()`)
	b.waitFor("refused without the name", `!document.querySelector('.field-error[data-for="disk"]').hidden`)
	b.setValue("#disk-confirm", "vdb")
	b.eval(`document.querySelector("#disk-form").requestSubmit()`)
	if m := b.evalString(`document.querySelector('.field-error[data-for="disk"]').textContent`); !strings.Contains(m, "Type vdc to confirm") {
		t.Fatalf("wrong name: %q", m)
	}
	as.mu.Lock()
	if len(as.diskUse) != 0 {
		t.Fatalf("posted before the name was typed: %v", as.diskUse)
	}
	as.mu.Unlock()
	b.setValue("#disk-confirm", "vdc")
	b.eval(`document.querySelector("#disk-form").requestSubmit()`)
	b.waitFor("restarting message", `!document.querySelector("#disk-restart").hidden`)
	if txt := b.evalString(`document.querySelector("#disk-restart").textContent`); !strings.Contains(txt, "/dev/vdc is formatted (cairn-data)") {
		t.Fatalf("restart message %q", txt)
	}
	b.waitFor("back after the restart", `location.pathname !== "/setup/disk"`)
	as.mu.Lock()
	posted := strings.Join(as.diskUse, "|")
	as.mu.Unlock()
	if posted != `{"disk":"vdc","confirm":"vdc"}` {
		t.Fatalf("POST disks/use bodies %q", posted)
	}
	b.navigate(srv.URL + "/")
	b.waitFor("dashboard", `document.body.dataset.ready === "1"`)
	if b.evalString(`String(document.querySelector("#ram-banner").hidden)`) != "true" {
		t.Fatal("banner still shown with the data on a disk")
	}

	// System page: the update upload sends the file as the body.
	upd := filepath.Join(t.TempDir(), "cairn-1.2.3")
	content := bytes.Repeat([]byte("cairn update\x00"), 5000)
	if err := os.WriteFile(upd, content, 0o644); err != nil {
		t.Fatal(err)
	}
	b.navigate(srv.URL + "/system")
	b.waitFor("system page", `document.body.dataset.ready === "1"`)
	if txt := b.evalString(`document.querySelector("#sys-info").innerText`); !strings.Contains(txt, "on /dev/vdc") || !strings.Contains(txt, "AB:CD") {
		t.Fatalf("system info %q", txt)
	}
	if u := unlabelled(b); u != "" {
		t.Fatalf("system page: controls without a label: %s", u)
	}
	var obj struct {
		Result struct {
			ObjectID string `json:"objectId"`
		} `json:"result"`
	}
	b.call("Runtime.evaluate", map[string]any{"expression": `document.querySelector("#update-file")`}, &obj)
	b.call("DOM.setFileInputFiles", map[string]any{"files": []string{upd}, "objectId": obj.Result.ObjectID}, nil)
	b.eval(`document.querySelector("#update-form").requestSubmit()`)
	b.waitFor("update installed", `document.querySelector("#update-msg").textContent.includes("Installed version 1.2.3")`)
	as.mu.Lock()
	got := as.uploaded
	as.mu.Unlock()
	if !bytes.Equal(got, content) {
		t.Fatalf("uploaded %d bytes, want the file's %d", len(got), len(content))
	}
	b.screenshot("21-system")
	if errs := b.consoleErrors(); len(errs) > 0 {
		t.Fatalf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}
