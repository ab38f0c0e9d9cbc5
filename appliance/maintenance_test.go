package appliance

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestMaintenanceMode: new backups are refused with the reason, restores
// keep working, the mode survives a restart, and turning it off lets
// backups run again.
func TestMaintenanceMode(t *testing.T) {
	resetFake(t)
	releaseFake()
	dir := t.TempDir()
	e := newEnv(t, Config{DataDir: dir})
	e.addHost("h", nil)
	e.waitJob(e.backup("h").ID)
	var m MaintenanceBody
	e.must("socket", "PUT", "/api/v1/maintenance", MaintenanceBody{On: true, Reason: "disk swap"}, &m)
	if !m.On || m.By != "root@socket" || m.Since.IsZero() {
		t.Fatalf("maintenance = %+v", m)
	}
	w := e.do("socket", "POST", "/api/v1/hosts/h/backup", nil)
	if w.Code != 503 || !strings.Contains(w.Body.String(), "disk swap") {
		t.Fatalf("backup in maintenance: %d %s", w.Code, w.Body)
	}
	if w := e.do("socket", "POST", "/api/v1/pool/gc", nil); w.Code != 503 {
		t.Fatalf("gc in maintenance: %d %s", w.Code, w.Body)
	}
	var j JobBody
	e.must("socket", "POST", "/api/v1/restores", RestoreInput{Host: "h", Snapshot: "latest", Source: "data",
		To: filepath.Join(dir, "restores", "m")}, &j)
	if j = e.waitJob(j.ID); j.State != "done" {
		t.Fatalf("restore in maintenance: %+v", j)
	}
	if !strings.Contains(e.do("socket", "GET", "/metrics", nil).Body.String(), "cairn_maintenance 1") {
		t.Fatal("metrics do not show maintenance")
	}
	e.s.Close()
	e2 := newEnv(t, Config{DataDir: dir})
	var st StatusBody
	e2.must("", "GET", "/api/v1/status", nil, &st)
	if !st.Maintenance {
		t.Fatal("maintenance mode lost across a restart")
	}
	e2.must("socket", "PUT", "/api/v1/maintenance", MaintenanceBody{On: false}, &m)
	if j := e2.waitJob(e2.backup("h").ID); j.State != "done" {
		t.Fatalf("backup after maintenance: %+v", j)
	}
}
