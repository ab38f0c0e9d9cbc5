package appliance

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/jackc/pgx/v5"
)

// TestRestoreTestPostgresDump: the restore test of a database source
// loads the newest dump into a scratch database on the real server,
// compares every table's rows and checksum with the sums recorded at dump
// time, and drops the scratch database again.
func TestRestoreTestPostgresDump(t *testing.T) {
	testenv.Need(t, "pg_dump", "psql")
	pg := testenv.Postgres(t)
	dsn := pg.CreateDB(t, "appdb")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE items (id int PRIMARY KEY, name text, price numeric)`,
		`INSERT INTO items SELECT i, 'item ' || i, i * 1.5 FROM generate_series(1, 500) i`,
		`CREATE TABLE notes (id serial PRIMARY KEY, body text)`,
		`INSERT INTO notes (body) VALUES ('first'), ('second')`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	conn.Close(ctx)

	resetFake(t)
	e := newEnv(t, noMaint())
	name := "db"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{{Name: "pg", Method: "postgres", Path: "/",
		Options: map[string]string{"host": pg.Host, "port": strconv.Itoa(pg.Port), "user": pg.User, "databases": "appdb",
			"globals": "false", "record_sums": "true"},
		Secret: map[string]string{"password": "x-trust-auth"}}}}, nil)
	if j := e.waitJob(e.backup("db").ID); j.State != "done" {
		t.Fatalf("postgres backup: %s %s", j.State, j.Error)
	}
	var res []RestoreTestResult
	e.must("socket", "POST", "/api/v1/verify/restore-test", RestoreTestParams{Host: "db"}, &res)
	if len(res) != 1 || !res[0].OK || res[0].Dumps != 1 || res[0].Files < 2 {
		t.Fatalf("restore test of the postgres source: %+v", res)
	}
	// The scratch database is gone.
	conn, err = pgx.Connect(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		rows.Scan(&n)
		if strings.HasPrefix(n, "cairn_restoretest_") {
			t.Fatalf("scratch database %s left behind", n)
		}
	}
	if v := e.metric("cairn_restore_test_status", "host", "db"); v != 1 {
		t.Fatalf("cairn_restore_test_status{db} = %v", v)
	}
}
