package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.KillLeftovers()
	os.Exit(m.Run())
}

// cases is the catalog suite; every case runs on SQLite and PostgreSQL.
var cases = []struct {
	name string
	fn   func(t *testing.T, db *DB)
}{
	{"Migrations", testMigrations},
	{"Settings", testSettings},
	{"Hosts", testHosts},
	{"Sources", testSources},
	{"SchedulesRetention", testSchedulesRetention},
	{"Snapshots", testSnapshots},
	{"Jobs", testJobs},
	{"RecoverJobs", testRecoverJobs},
	{"UsersGroupsTokens", testUsersGroupsTokens},
	{"TokenExpiry", testTokenExpiry},
	{"BackupStatus", testBackupStatus},
	{"Concurrent", testConcurrent},
}

func TestCatalog(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				db, err := Open(context.Background(), filepath.Join(t.TempDir(), "catalog.db"))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				if db.Driver() != "sqlite" {
					t.Fatalf("driver %s", db.Driver())
				}
				c.fn(t, db)
			})
		}
	})
	t.Run("postgres", func(t *testing.T) {
		pg := testenv.Postgres(t)
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				dsn := pg.CreateDB(t, fmt.Sprintf("cat%d", i))
				db, err := Open(context.Background(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				if db.Driver() != "postgres" {
					t.Fatalf("driver %s", db.Driver())
				}
				c.fn(t, db)
			})
		}
	})
}

var ctx = context.Background()

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testMigrations(t *testing.T, db *DB) {
	ms, err := migrations()
	must(t, err)
	v, err := db.SchemaVersion(ctx)
	must(t, err)
	if v != len(ms) || v < 1 {
		t.Fatalf("schema version %d, want %d", v, len(ms))
	}
	// Migrating again is a no-op.
	must(t, db.migrate(ctx))
	// A catalog from a newer cairn is refused, not scribbled on.
	_, err = db.exec(ctx, "INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, ?)", 999, "future", 0)
	must(t, err)
	if err := db.migrate(ctx); err == nil || !contains(err.Error(), "newer than this binary") {
		t.Fatalf("migrate over a newer schema: %v", err)
	}
	if got := splitSQL("CREATE TABLE a (x TEXT);\n\nCREATE TABLE b (y TEXT);\n"); len(got) != 2 {
		t.Fatalf("splitSQL: %q", got)
	}
	if redactDSN("postgres://u:hunter2@h:5/db") != "postgres://u:xxxxx@h:5/db" {
		t.Fatalf("redact: %s", redactDSN("postgres://u:hunter2@h:5/db"))
	}
}

func contains(s, sub string) bool { return bytes.Contains([]byte(s), []byte(sub)) }

func testSettings(t *testing.T, db *DB) {
	if _, ok, err := db.Setting(ctx, SettingPoolID); err != nil || ok {
		t.Fatalf("unset setting: %v %v", ok, err)
	}
	must(t, db.SetSetting(ctx, SettingPoolID, "a"))
	must(t, db.SetSetting(ctx, SettingPoolID, "b"))
	if v, ok, err := db.Setting(ctx, SettingPoolID); err != nil || !ok || v != "b" {
		t.Fatalf("setting = %q %v %v", v, ok, err)
	}
}

func testHosts(t *testing.T, db *DB) {
	_, err := db.CreateGroup(ctx, "web")
	must(t, err)
	h := &Host{Name: "web1", Address: "10.0.0.1", Enabled: true, Settings: map[string]string{"k": "v"}, Groups: []string{"web"}}
	must(t, db.CreateHost(ctx, h))
	if h.ID == 0 {
		t.Fatal("no id")
	}
	if err := db.CreateHost(ctx, &Host{Name: "web1"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate host: %v", err)
	}
	if err := db.CreateHost(ctx, &Host{Name: "x", Groups: []string{"nosuch"}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown group: %v", err)
	}
	got, err := db.Host(ctx, "web1")
	must(t, err)
	if got.Address != "10.0.0.1" || !got.Enabled || got.Settings["k"] != "v" || len(got.Groups) != 1 || got.Groups[0] != "web" ||
		got.Created.IsZero() {
		t.Fatalf("host = %+v", got)
	}
	got.Name, got.Enabled, got.Groups = "web2", false, nil
	must(t, db.UpdateHost(ctx, got))
	if _, err := db.Host(ctx, "web1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old name still there: %v", err)
	}
	g2, err := db.Host(ctx, "web2")
	must(t, err)
	if g2.Enabled || len(g2.Groups) != 0 {
		t.Fatalf("updated host = %+v", g2)
	}
	must(t, db.CreateHost(ctx, &Host{Name: "a-first", Enabled: true}))
	hs, err := db.Hosts(ctx)
	must(t, err)
	if len(hs) != 2 || hs[0].Name != "a-first" {
		t.Fatalf("hosts = %+v", hs)
	}
	must(t, db.PutSource(ctx, &Source{HostID: g2.ID, Name: "etc", Method: "sftp", Path: "/etc"}))
	must(t, db.PutSchedule(ctx, &Schedule{HostID: g2.ID, Cron: "@daily"}))
	must(t, db.SetRetention(ctx, g2.ID, Retention{Daily: 7}))
	must(t, db.DeleteHost(ctx, "web2"))
	if err := db.DeleteHost(ctx, "web2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	// Cascade: nothing of the host is left.
	for _, tbl := range []string{"sources", "schedules", "retention", "host_groups"} {
		var n int
		must(t, db.queryRow(ctx, "SELECT COUNT(*) FROM "+tbl).Scan(&n))
		if n != 0 {
			t.Errorf("%s has %d rows after the host was removed", tbl, n)
		}
	}
}

func testSources(t *testing.T, db *DB) {
	h := &Host{Name: "h", Enabled: true}
	must(t, db.CreateHost(ctx, h))
	secret := []byte{1, 0, 2, 255, 0, 'x'}
	s := &Source{HostID: h.ID, Name: "home", Method: "sftp", Path: "/home", Excludes: []string{"*.tmp", ".cache"},
		Options: map[string]string{"port": "2222"}, Secret: secret}
	must(t, db.PutSource(ctx, s))
	must(t, db.PutSource(ctx, &Source{HostID: h.ID, Name: "etc", Method: "sftp", Path: "/etc"}))
	ss, err := db.Sources(ctx, h.ID)
	must(t, err)
	if len(ss) != 2 || ss[0].Name != "etc" || ss[1].Name != "home" {
		t.Fatalf("sources = %+v", ss)
	}
	if ss[0].Secret != nil || len(ss[0].Excludes) != 0 || len(ss[0].Options) != 0 {
		t.Fatalf("etc = %+v", ss[0])
	}
	if !bytes.Equal(ss[1].Secret, secret) || ss[1].Excludes[1] != ".cache" || ss[1].Options["port"] != "2222" {
		t.Fatalf("home = %+v", ss[1])
	}
	// Upsert by name replaces.
	must(t, db.PutSource(ctx, &Source{HostID: h.ID, Name: "home", Method: "rsync", Path: "/srv"}))
	ss, _ = db.Sources(ctx, h.ID)
	if len(ss) != 2 || ss[1].Method != "rsync" || ss[1].Secret != nil {
		t.Fatalf("after upsert = %+v", ss)
	}
	must(t, db.DeleteSource(ctx, h.ID, "home"))
	if err := db.DeleteSource(ctx, h.ID, "home"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func testSchedulesRetention(t *testing.T, db *DB) {
	h := &Host{Name: "h", Enabled: true}
	must(t, db.CreateHost(ctx, h))
	s := &Schedule{HostID: h.ID, Cron: "0 2 * * *", Jitter: 30 * time.Minute, Blackout: []string{"Mon-Fri 08:00-18:00"}}
	must(t, db.PutSchedule(ctx, s))
	must(t, db.PutSchedule(ctx, &Schedule{HostID: h.ID, Source: "db", Cron: "@hourly"}))
	last := time.Date(2026, 3, 4, 2, 0, 0, 0, time.UTC)
	must(t, db.SetScheduleRun(ctx, s.ID, last))
	ss, err := db.Schedules(ctx, h.ID)
	must(t, err)
	if len(ss) != 2 || ss[0].Cron != "0 2 * * *" || ss[0].Jitter != 30*time.Minute || ss[0].Blackout[0] != "Mon-Fri 08:00-18:00" ||
		!ss[0].LastRun.Equal(last) || ss[1].Source != "db" {
		t.Fatalf("schedules = %+v", ss)
	}
	all, err := db.Schedules(ctx, 0)
	must(t, err)
	if len(all) != 2 {
		t.Fatalf("all schedules = %d", len(all))
	}
	must(t, db.DeleteSchedules(ctx, h.ID))
	if ss, _ := db.Schedules(ctx, h.ID); len(ss) != 0 {
		t.Fatalf("after delete: %+v", ss)
	}
	if r, err := db.Retention(ctx, h.ID); err != nil || !r.IsZero() {
		t.Fatalf("default retention %+v %v", r, err)
	}
	want := Retention{Last: 3, Daily: 7, Weekly: 4, Monthly: 12, Yearly: 2}
	must(t, db.SetRetention(ctx, h.ID, want))
	must(t, db.SetRetention(ctx, h.ID, want))
	if r, err := db.Retention(ctx, h.ID); err != nil || r != want {
		t.Fatalf("retention %+v %v", r, err)
	}
}

func testSnapshots(t *testing.T, db *DB) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(id, src, status string, h int) Snapshot {
		return Snapshot{ID: id, Host: "h", Source: src, Started: t0.Add(time.Duration(h) * time.Hour),
			Finished: t0.Add(time.Duration(h)*time.Hour + time.Minute), Root: "ab", Status: status, Files: 1, Bytes: 10, JobID: 7}
	}
	for _, s := range []Snapshot{mk("s1", "etc", SnapshotComplete, 1), mk("s2", "etc", SnapshotPartial, 2), mk("s3", "home", SnapshotComplete, 3)} {
		must(t, db.PutSnapshot(ctx, &s))
	}
	last, err := db.LastSnapshot(ctx, "h", "etc", false)
	must(t, err)
	if last.ID != "s2" {
		t.Fatalf("last any = %s", last.ID)
	}
	last, err = db.LastSnapshot(ctx, "h", "etc", true)
	must(t, err)
	if last.ID != "s1" || !last.Finished.Equal(t0.Add(time.Hour+time.Minute)) || last.JobID != 7 {
		t.Fatalf("last complete = %+v", last)
	}
	if _, err := db.LastSnapshot(ctx, "h", "nosuch", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no snapshot: %v", err)
	}
	ss, err := db.Snapshots(ctx, "")
	must(t, err)
	if len(ss) != 3 || ss[0].ID != "s1" || ss[2].ID != "s3" {
		t.Fatalf("snapshots = %+v", ss)
	}
	must(t, db.ReplaceSnapshots(ctx, []Snapshot{mk("r1", "etc", SnapshotComplete, 5)}))
	ss, _ = db.Snapshots(ctx, "h")
	if len(ss) != 1 || ss[0].ID != "r1" {
		t.Fatalf("after replace = %+v", ss)
	}
	must(t, db.DeleteSnapshot(ctx, "r1"))
	if _, err := db.Snapshot(ctx, "r1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted snapshot: %v", err)
	}
}

func testJobs(t *testing.T, db *DB) {
	now := time.Now().UTC()
	a := &Job{Kind: "backup", Host: "a"}
	b := &Job{Kind: "backup", Host: "b"}
	m := &Job{Kind: "backup", Host: "c", Manual: true, Params: []byte(`{"sources":["x"]}`)}
	for _, j := range []*Job{a, b, m} {
		must(t, db.CreateJob(ctx, j))
	}
	q, err := db.QueuedJobs(ctx)
	must(t, err)
	if len(q) != 3 || q[0].ID != m.ID || q[1].ID != a.ID || q[2].ID != b.ID {
		t.Fatalf("queue order %v %v %v", q[0].ID, q[1].ID, q[2].ID)
	}
	if string(q[0].Params) != `{"sources":["x"]}` {
		t.Fatalf("params %s", q[0].Params)
	}
	must(t, db.StartJob(ctx, a.ID, now))
	if err := db.StartJob(ctx, a.ID, now); !errors.Is(err, ErrJobState) {
		t.Fatalf("start twice: %v", err)
	}
	if err := db.StartJob(ctx, 9999, now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("start unknown: %v", err)
	}
	must(t, db.SetJobProgress(ctx, a.ID, []byte(`{"files":3}`)))
	if err := db.FinishJob(ctx, a.ID, JobRunning, "", now); err == nil {
		t.Fatal("finish into a non-final state")
	}
	must(t, db.FinishJob(ctx, a.ID, JobFailed, "boom", now))
	must(t, db.CancelQueuedJob(ctx, b.ID, now))
	if err := db.CancelQueuedJob(ctx, a.ID, now); !errors.Is(err, ErrJobState) {
		t.Fatalf("cancel a finished job: %v", err)
	}
	j, err := db.Job(ctx, a.ID)
	must(t, err)
	if j.State != JobFailed || j.Error != "boom" || string(j.Progress) != `{"files":3}` || j.Started.IsZero() || j.Finished.IsZero() {
		t.Fatalf("job = %+v", j)
	}
	js, err := db.Jobs(ctx, JobFilter{States: []string{JobFailed, JobCancelled}})
	must(t, err)
	if len(js) != 2 || js[0].ID != b.ID {
		t.Fatalf("filtered jobs = %+v", js)
	}
	js, _ = db.Jobs(ctx, JobFilter{Host: "c", Kind: "backup", Limit: 1})
	if len(js) != 1 || js[0].ID != m.ID {
		t.Fatalf("host filter = %+v", js)
	}
	e := &JobEvent{JobID: a.ID, Level: "info", Message: "hello"}
	must(t, db.AddJobEvent(ctx, e))
	must(t, db.AddJobEvent(ctx, &JobEvent{JobID: a.ID, Level: "warn", Message: "second"}))
	evs, err := db.JobEvents(ctx, a.ID)
	must(t, err)
	if len(evs) != 2 || evs[0].Message != "hello" || evs[1].Level != "warn" {
		t.Fatalf("events = %+v", evs)
	}
}

func testRecoverJobs(t *testing.T, db *DB) {
	now := time.Now().UTC()
	run := &Job{Kind: "backup", Host: "a", Manual: true, Params: []byte(`{"x":1}`)}
	queued := &Job{Kind: "backup", Host: "b"}
	done := &Job{Kind: "backup", Host: "c"}
	for _, j := range []*Job{run, queued, done} {
		must(t, db.CreateJob(ctx, j))
	}
	must(t, db.StartJob(ctx, run.ID, now))
	must(t, db.StartJob(ctx, done.ID, now))
	must(t, db.FinishJob(ctx, done.ID, JobDone, "", now))
	again, err := db.RecoverJobs(ctx, now)
	must(t, err)
	if len(again) != 1 || again[0].RetryOf != run.ID || again[0].Host != "a" || !again[0].Manual || string(again[0].Params) != `{"x":1}` {
		t.Fatalf("re-queued = %+v", again)
	}
	r, _ := db.Job(ctx, run.ID)
	if r.State != JobInterrupted {
		t.Fatalf("running job after recover: %s", r.State)
	}
	// Idempotent: a second start re-queues nothing.
	again, err = db.RecoverJobs(ctx, now)
	must(t, err)
	if len(again) != 0 {
		t.Fatalf("second recover re-queued %+v", again)
	}
	q, _ := db.QueuedJobs(ctx)
	if len(q) != 2 {
		t.Fatalf("queued after recover: %d", len(q))
	}
}

func testUsersGroupsTokens(t *testing.T, db *DB) {
	if ok, err := db.AdminExists(ctx); err != nil || ok {
		t.Fatalf("admin exists in a new catalog: %v %v", ok, err)
	}
	if err := db.CreateUser(ctx, &User{Name: "x", Role: "root"}); err == nil {
		t.Fatal("unknown role accepted")
	}
	_, err := db.CreateGroup(ctx, "web")
	must(t, err)
	if _, err := db.CreateGroup(ctx, "web"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate group: %v", err)
	}
	u := &User{Name: "alice", PasswordHash: "$2a$...", Role: RoleUser, Groups: []string{"web"}}
	must(t, db.CreateUser(ctx, u))
	if err := db.CreateUser(ctx, &User{Name: "alice", Role: RoleUser}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate user: %v", err)
	}
	must(t, db.CreateUser(ctx, &User{Name: "root", PasswordHash: "h", Role: RoleAdmin}))
	if ok, _ := db.AdminExists(ctx); !ok {
		t.Fatal("no admin after creating one")
	}
	must(t, db.CreateHost(ctx, &Host{Name: "www", Groups: []string{"web"}}))
	must(t, db.CreateHost(ctx, &Host{Name: "pg"}))
	if ok, _ := db.UserSeesHost(ctx, u.ID, "www"); !ok {
		t.Fatal("alice does not see www")
	}
	if ok, _ := db.UserSeesHost(ctx, u.ID, "pg"); ok {
		t.Fatal("alice sees pg")
	}
	got, err := db.User(ctx, "alice")
	must(t, err)
	if got.PasswordHash != "$2a$..." || got.Groups[0] != "web" {
		t.Fatalf("user = %+v", got)
	}
	got.Role, got.Groups = RoleOperator, nil
	must(t, db.UpdateUser(ctx, got))
	got, _ = db.UserByID(ctx, u.ID)
	if got.Role != RoleOperator || len(got.Groups) != 0 {
		t.Fatalf("updated user = %+v", got)
	}
	tok := &Token{UserID: u.ID, Name: "ci", Hash: "deadbeef"}
	must(t, db.CreateToken(ctx, tok))
	found, err := db.TokenByHash(ctx, "deadbeef", time.Now())
	must(t, err)
	if found.User != "alice" || found.Name != "ci" {
		t.Fatalf("token = %+v", found)
	}
	if _, err := db.TokenByHash(ctx, "nope", time.Now()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown token: %v", err)
	}
	ts, _ := db.Tokens(ctx, u.ID)
	if len(ts) != 1 || ts[0].LastUsed.IsZero() {
		t.Fatalf("tokens = %+v", ts)
	}
	must(t, db.DeleteUser(ctx, "alice"))
	if _, err := db.TokenByHash(ctx, "deadbeef", time.Now()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("token of a deleted user: %v", err)
	}
	must(t, db.SetGroupSettings(ctx, "web", map[string]string{"schedule": "@daily"}))
	if err := db.SetGroupSettings(ctx, "nosuch", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("settings of an unknown group: %v", err)
	}
	gs, _ := db.Groups(ctx)
	if len(gs) != 1 || gs[0].Settings["schedule"] != "@daily" {
		t.Fatalf("groups = %+v", gs)
	}
	must(t, db.DeleteGroup(ctx, "web"))
	if h, _ := db.Host(ctx, "www"); len(h.Groups) != 0 {
		t.Fatalf("host still in a deleted group: %+v", h)
	}
}

func testBackupStatus(t *testing.T, db *DB) {
	t1 := time.Date(2026, 5, 1, 2, 0, 0, 0, time.UTC)
	must(t, db.PutBackupStatus(ctx, &BackupStatus{Host: "h", Source: "s", Status: SnapshotComplete, Attempt: t1, LastSuccess: t1,
		Duration: time.Minute, Files: 10, Bytes: 100, BytesNew: 5}))
	must(t, db.PutBackupStatus(ctx, &BackupStatus{Host: "h", Source: "s", Status: "failed", Error: "x", Attempt: t1.Add(time.Hour), Duration: time.Second}))
	ss, err := db.BackupStatuses(ctx)
	must(t, err)
	if len(ss) != 1 {
		t.Fatalf("statuses = %+v", ss)
	}
	s := ss[0]
	if s.Status != "failed" || !s.LastSuccess.Equal(t1) || s.Files != 10 || s.Bytes != 100 || !s.Attempt.Equal(t1.Add(time.Hour)) {
		t.Fatalf("after a failure the last success must stay: %+v", s)
	}
}

// testConcurrent: many writers at once do not trip over each other
// (SQLite's busy timeout, PostgreSQL's MVCC).
func testConcurrent(t *testing.T, db *DB) {
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				j := &Job{Kind: "backup", Host: fmt.Sprintf("h%d", g)}
				if err := db.CreateJob(ctx, j); err != nil {
					errs <- err
					return
				}
				if err := db.SetJobProgress(ctx, j.ID, []byte(fmt.Sprintf(`{"files":%d}`, i))); err != nil {
					errs <- err
					return
				}
				if err := db.AddJobEvent(ctx, &JobEvent{JobID: j.ID, Level: "info", Message: "x"}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	js, err := db.Jobs(ctx, JobFilter{})
	must(t, err)
	if len(js) != 8*15 {
		t.Fatalf("%d jobs, want %d", len(js), 8*15)
	}
}
