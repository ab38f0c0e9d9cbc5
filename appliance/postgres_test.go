package appliance

import (
	"os"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.KillLeftovers()
	os.Exit(m.Run())
}

// TestOnPostgres runs the appliance with its catalog on PostgreSQL
// (`cairn serve --db postgres://…`): a backup, a restart that finds the
// same pool, and the snapshot index rebuilt from the pool.
func TestOnPostgres(t *testing.T) {
	pg := testenv.Postgres(t)
	dsn := pg.CreateDB(t, "appliance")
	resetFake(t)
	releaseFake()
	dir := t.TempDir()
	e := newEnv(t, Config{DataDir: dir, DB: dsn})
	var st StatusBody
	e.must("", "GET", "/api/v1/status", nil, &st)
	if st.Catalog != "postgres" {
		t.Fatalf("status %+v", st)
	}
	e.addHost("h", nil)
	if j := e.waitJob(e.backup("h").ID); j.State != "done" {
		t.Fatalf("backup on postgres: %+v", j)
	}
	e.s.Close()
	e2 := newEnv(t, Config{DataDir: dir, DB: dsn})
	var snaps []SnapshotBody
	e2.must("socket", "GET", "/api/v1/snapshots", nil, &snaps)
	if len(snaps) != 1 || snaps[0].Status != "complete" {
		t.Fatalf("snapshots after restart: %+v", snaps)
	}
	var rb RebuildBody
	e2.must("socket", "POST", "/api/v1/catalog/rebuild", nil, &rb)
	if rb.Snapshots != 1 {
		t.Fatalf("rebuild: %+v", rb)
	}
	w := e2.do("socket", "GET", "/api/v1/snapshots/"+snaps[0].ID+"/file/f000.txt", nil)
	if w.Code != 200 || w.Body.String() != "file 0 of h/data seed \n" {
		t.Fatalf("file after rebuild: %d %q", w.Code, w.Body)
	}
}
