package appliance

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/appliance/schedule"
	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pool/backendtest"
)

func noMaint() Config { return Config{GCSchedule: "-", CheckSchedule: "-"} }

// targetStatus returns a target's status from the API.
func (e *testEnv) targetStatus(name string) ReplicaTargetStatus {
	e.t.Helper()
	var ts []ReplicaTargetStatus
	e.must("socket", "GET", "/api/v1/replicas", nil, &ts)
	for _, t := range ts {
		if t.Name == name {
			return t
		}
	}
	e.t.Fatalf("no target %s in %+v", name, ts)
	return ReplicaTargetStatus{}
}

// waitReplicated waits until the target lists n snapshots after a
// successful run.
func (e *testEnv) waitReplicated(name string, n int) ReplicaTargetStatus {
	e.t.Helper()
	var st ReplicaTargetStatus
	waitFor(e.t, fmt.Sprintf("%d snapshots on %s", n, name), func() bool {
		st = e.targetStatus(name)
		return !st.Running && st.LastError == "" && len(st.Snapshots) == n
	})
	return st
}

// openReplica opens and fully checks a replica on b.
func openReplica(t *testing.T, b pool.Backend, id string, snaps int) *pool.Pool {
	t.Helper()
	ctx := context.Background()
	p, err := pool.Open(ctx, b, pool.OpenOptions{ExpectID: id})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := p.Check(ctx, pool.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() || rep.Snapshots != snaps {
		t.Fatalf("replica check: %s, %v; want %d snapshots", rep.String(), err, snaps)
	}
	return p
}

// fileIn reads path from snapshot id of p.
func fileIn(t *testing.T, p *pool.Pool, id, path string) string {
	t.Helper()
	ctx := context.Background()
	m, err := p.Snapshot(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	e, err := p.Lookup(ctx, m.Root, path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.OpenContent(ctx, &e)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	return string(b)
}

func TestReplicationEventDrivenAndDisaster(t *testing.T) {
	resetFake(t)
	e := newEnv(t, noMaint())
	replica := filepath.Join(t.TempDir(), "replica")
	var st ReplicaTargetStatus
	w := e.do("socket", "POST", "/api/v1/replicas", ReplicaTargetInput{ReplicaTarget: ReplicaTarget{Name: "nas", Kind: KindPool,
		Retention: ReplicaRetention{Last: 2}}, Location: replica})
	if w.Code != 201 {
		t.Fatalf("add target: %d %s", w.Code, w.Body)
	}
	// Bad input is refused with the reason.
	for _, in := range []ReplicaTargetInput{
		{ReplicaTarget: ReplicaTarget{Name: "x", Kind: KindPool}, Location: "relative/dir"},
		{ReplicaTarget: ReplicaTarget{Name: "x", Kind: "ftp"}, Location: "/x"},
		{ReplicaTarget: ReplicaTarget{Name: "x", Kind: KindCairn}, Location: "https://other:8443"},
		{ReplicaTarget: ReplicaTarget{Name: "x", Kind: KindRclone}, Location: "b2:bucket", RcloneConf: "[s3x]\ntype = s3\n"},
		{ReplicaTarget: ReplicaTarget{Name: "nas", Kind: KindPool}, Location: "/y"},
	} {
		if w := e.do("socket", "POST", "/api/v1/replicas", in); w.Code != 400 && w.Code != 409 {
			t.Fatalf("bad target %+v: %d %s", in, w.Code, w.Body)
		}
	}
	e.addHost("h1", map[string]string{"seed": "one", "files": "20"})
	// Each committed snapshot is copied without any poll or request.
	var ids []string
	for i := range 3 {
		if i > 0 {
			e.must("socket", "PATCH", "/api/v1/hosts/h1", HostInput{Sources: []SourceInput{{Name: "data", Method: fakeMethod, Path: "/fake",
				Options: map[string]string{"seed": fmt.Sprint(i), "files": "20"}}}}, nil)
		}
		j := e.backup("h1")
		if j = e.waitJob(j.ID); j.State != "done" {
			t.Fatalf("backup: %+v", j)
		}
		st = e.waitReplicated("nas", min(i+1, 2))
		snaps, _ := e.s.cat.Snapshots(context.Background(), "h1")
		ids = nil
		for _, sn := range snaps {
			ids = append(ids, sn.ID)
		}
		if i > 0 && (st.Copied != 1 || st.Objects == 0 || st.Objects > 25) {
			t.Fatalf("run %d: %+v: want one snapshot and only its new objects", i, st)
		}
		t.Logf("backup %d replicated: %d objects, %d bytes, pruned %d", i, st.Objects, st.Bytes, st.Pruned)
	}
	// keep_last 2 on the target: the oldest went, the primary keeps all.
	if st.Pruned != 1 || len(ids) != 3 {
		t.Fatalf("target retention: pruned %d, primary has %v", st.Pruned, ids)
	}
	b, err := pool.NewDirBackend(replica)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rp := openReplica(t, b, e.s.pool.ID(), 2)
	last, err := e.s.cat.LastSnapshot(context.Background(), "h1", "data", true)
	if err != nil {
		t.Fatal(err)
	}
	newest := last.ID // IDs of one second do not sort by time
	if !slices.Contains(st.Snapshots, newest) {
		t.Fatalf("newest snapshot %s not on the target: %v", newest, st.Snapshots)
	}
	want := fileIn(t, e.s.pool, newest, "f007.txt")
	if got := fileIn(t, rp, newest, "f007.txt"); got != want || !strings.Contains(want, "seed 2") {
		t.Fatalf("replica file %q, primary %q", got, want)
	}

	// Disaster: the primary pool and catalog are gone. A new appliance
	// adopts the replica and rebuilds its catalog from it.
	e.s.Close()
	os.RemoveAll(filepath.Join(e.dir, "pool"))
	e2 := newEnv(t, Config{Pool: replica, GCSchedule: "-", CheckSchedule: "-"})
	var rb RebuildBody
	e2.must("socket", "POST", "/api/v1/catalog/rebuild", nil, &rb)
	if rb.Snapshots != 2 || len(rb.Bad) != 0 {
		t.Fatalf("rebuild from replica: %+v", rb)
	}
	w = e2.do("socket", "GET", "/api/v1/snapshots/"+newest+"/file/f007.txt", nil)
	if w.Code != 200 || w.Body.String() != want {
		t.Fatalf("restore from the adopted replica: %d %q, want %q", w.Code, w.Body.String(), want)
	}
}

func TestReplicationToApplianceAppendOnly(t *testing.T) {
	resetFake(t)
	a := newEnv(t, noMaint())
	// The target's clock runs two hours ahead, past GC's grace period.
	b := newEnv(t, Config{GCSchedule: "-", CheckSchedule: "-", Clock: schedule.NewFakeClock(time.Now().Add(2 * time.Hour))})
	srv := httptest.NewServer(b.s.Handler())
	t.Cleanup(srv.Close)
	var tok ReplicaTokenCreated
	b.must("socket", "POST", "/api/v1/replica-tokens", map[string]string{"name": "from-a"}, &tok)
	if !strings.HasPrefix(tok.Token, "cairn_") {
		t.Fatalf("token: %+v", tok)
	}
	a.must("socket", "POST", "/api/v1/replicas", ReplicaTargetInput{ReplicaTarget: ReplicaTarget{Name: "site-b", Kind: KindCairn},
		Location: srv.URL, Token: tok.Token}, nil)
	// The token is never shown again.
	if w := a.do("socket", "GET", "/api/v1/replicas", nil); strings.Contains(w.Body.String(), tok.Token) {
		t.Fatalf("target listing shows the token: %s", w.Body)
	}
	a.addHost("h1", map[string]string{"seed": "x", "files": "5"})
	if j := a.waitJob(a.backup("h1").ID); j.State != "done" {
		t.Fatalf("backup: %+v", j)
	}
	st := a.waitReplicated("site-b", 1)
	id := st.Snapshots[0]
	dir := filepath.Join(b.dir, "replicas", a.s.pool.ID())
	db, err := pool.NewDirBackend(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rp := openReplica(t, db, a.s.pool.ID(), 1)
	if got, want := fileIn(t, rp, id, "f001.txt"), fileIn(t, a.s.pool, id, "f001.txt"); got != want {
		t.Fatalf("replica %q, primary %q", got, want)
	}

	// What a stolen append-only token cannot do.
	base := "/api/v1/replica/" + a.s.pool.ID()
	manifest := base + "/object/snapshots/" + id
	var objName string
	db.List(context.Background(), "objects/", func(oi pool.ObjectInfo) error { objName = oi.Name; return nil })
	req := func(as, method, path string, body []byte) int {
		r := httptest.NewRequest(method, path, bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+as)
		w := httptest.NewRecorder()
		b.s.Handler().ServeHTTP(w, r)
		return w.Code
	}
	if c := req(tok.Token, "DELETE", manifest, nil); c != http.StatusForbidden {
		t.Fatalf("append-only delete of a manifest: %d", c)
	}
	if c := req(tok.Token, "DELETE", base+"/object/"+objName, nil); c != http.StatusForbidden {
		t.Fatalf("append-only delete of an object: %d", c)
	}
	if c := req(tok.Token, "PUT", manifest, []byte("CRNO overwritten")); c != http.StatusConflict {
		t.Fatalf("overwrite of a manifest: %d", c)
	}
	if c := req(tok.Token, "PUT", base+"/object/"+objName, []byte("CRNO overwritten")); c != http.StatusConflict {
		t.Fatalf("overwrite of an object: %d", c)
	}
	if c := req(tok.Token, "PUT", base+"/object/locks/x", []byte("CRNO")); c != http.StatusBadRequest {
		t.Fatalf("put outside objects/ and snapshots/: %d", c)
	}
	// Nor plant an object that does not match its name (which would make
	// the sender skip the real one) or a manifest that does not decode.
	fakeD := strings.Repeat("ab", 32)
	planted := base + "/object/objects/ab/ab/" + fakeD
	if c := req(tok.Token, "PUT", planted, []byte("CRNO\x01\x01\x00\x00garbage garbage")); c != http.StatusBadRequest {
		t.Fatalf("planted object: %d", c)
	}
	if _, err := db.Stat(context.Background(), "objects/ab/ab/"+fakeD); err == nil {
		t.Fatal("the planted object was kept")
	}
	if c := req(tok.Token, "PUT", base+"/object/snapshots/20300101T000000Z-deadbeef", []byte("CRNO not a manifest")); c != http.StatusBadRequest {
		t.Fatalf("planted manifest: %d", c)
	}
	// It is bound to the replica it first wrote: another pool is refused.
	other := "/api/v1/replica/" + "0b5e3c9a-1d2f-4e6a-8b7c-9d0e1f2a3b4c"
	if c := req(tok.Token, "GET", other+"/list", nil); c != http.StatusUnauthorized {
		t.Fatalf("append-only token on another pool: %d", c)
	}
	if c := req(tok.Token, "PUT", other+"/object/cairn-pool.json", []byte("{}")); c != http.StatusUnauthorized {
		t.Fatalf("append-only token writes another pool: %d", c)
	}
	var toks []ReplicaToken
	b.must("socket", "GET", "/api/v1/replica-tokens", nil, &toks)
	if len(toks) != 1 || toks[0].Pool != a.s.pool.ID() {
		t.Fatalf("token listing: %+v", toks)
	}
	// Nothing else of the appliance is open to it.
	for _, p := range []string{"/api/v1/hosts", "/api/v1/snapshots", "/api/v1/replica-tokens"} {
		if c := req(tok.Token, "GET", p, nil); c != http.StatusUnauthorized {
			t.Fatalf("append-only token on %s: %d", p, c)
		}
	}
	// The replica is intact.
	openReplica(t, db, a.s.pool.ID(), 1)
	// Nor change the target's retention for its replica.
	if c := req(tok.Token, "PUT", base+"/retention", []byte(`{"keep_last": 0}`)); c != http.StatusForbidden {
		t.Fatalf("append-only token sets retention: %d", c)
	}

	// The target's own retention prunes: keep the last snapshot only.
	b.must("socket", "PUT", base+"/retention", ReplicaRetention{Last: 1}, nil)
	a.must("socket", "PATCH", "/api/v1/hosts/h1", HostInput{Sources: []SourceInput{{Name: "data", Method: fakeMethod, Path: "/fake",
		Options: map[string]string{"seed": "y", "files": "5"}}}}, nil)
	if j := a.waitJob(a.backup("h1").ID); j.State != "done" {
		t.Fatalf("backup: %+v", j)
	}
	snaps, _ := a.s.cat.Snapshots(context.Background(), "h1")
	newest := snaps[0].ID
	for _, sn := range snaps {
		if sn.ID != id {
			newest = sn.ID
		}
	}
	waitFor(t, "the second snapshot on site-b", func() bool {
		st := a.targetStatus("site-b")
		return !st.Running && st.LastError == "" && len(st.Snapshots) == 1 && st.Snapshots[0] == newest
	})
	rp = openReplica(t, db, a.s.pool.ID(), 1)
	rep, err := rp.Check(context.Background(), pool.CheckOptions{})
	if err != nil || rep.Objects != rep.Referenced {
		t.Fatalf("after the target's retention and GC: %s (%d stored, %d referenced), %v", rep.String(), rep.Objects, rep.Referenced, err)
	}
	if got, want := fileIn(t, rp, newest, "f001.txt"), fileIn(t, a.s.pool, newest, "f001.txt"); got != want {
		t.Fatalf("replica %q, primary %q", got, want)
	}
	// An admin of the target may delete.
	if w := b.do("socket", "DELETE", base+"/object/snapshots/"+newest, nil); w.Code != http.StatusNoContent {
		t.Fatalf("admin delete: %d %s", w.Code, w.Body)
	}
}

func TestReplicationRcloneRemote(t *testing.T) {
	testenv.Need(t, "rclone")
	resetFake(t)
	e := newEnv(t, noMaint())
	dir := filepath.Join(t.TempDir(), "offsite")
	os.MkdirAll(dir, 0o700)
	conf := "# imported\n[offsite]\ntype = local\n\n[unused]\ntype = webdav\nurl = http://127.0.0.1:1/\npass = c2VjcmV0\n"
	e.must("socket", "POST", "/api/v1/replicas", ReplicaTargetInput{ReplicaTarget: ReplicaTarget{Name: "rc", Kind: KindRclone, Concurrency: 2},
		Location: "offsite:" + dir, RcloneConf: conf}, nil)
	if w := e.do("socket", "GET", "/api/v1/replicas", nil); strings.Contains(w.Body.String(), "c2VjcmV0") {
		t.Fatalf("listing shows the rclone.conf: %s", w.Body)
	}
	e.addHost("h1", map[string]string{"seed": "rc", "files": "8"})
	if j := e.waitJob(e.backup("h1").ID); j.State != "done" {
		t.Fatalf("backup: %+v", j)
	}
	st := e.waitReplicated("rc", 1)
	b, err := pool.NewDirBackend(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rp := openReplica(t, b, e.s.pool.ID(), 1)
	id := st.Snapshots[0]
	if got, want := fileIn(t, rp, id, "f003.txt"), fileIn(t, e.s.pool, id, "f003.txt"); got != want {
		t.Fatalf("replica %q, primary %q", got, want)
	}
	// A manual sync with nothing new sends nothing.
	var again ReplicaTargetStatus
	e.must("socket", "POST", "/api/v1/replicas/rc/sync", nil, &again)
	if again.Objects != 0 || again.Copied != 0 || len(again.Snapshots) != 1 || again.LastError != "" {
		t.Fatalf("second sync: %+v", again)
	}
}

func TestReplicationS3Target(t *testing.T) {
	s3 := testenv.S3(t)
	resetFake(t)
	e := newEnv(t, noMaint())
	loc := fmt.Sprintf("s3://%s:%s@%s/%s/offsite?insecure=1&region=%s", s3.AccessKey, s3.SecretKey, s3.Endpoint, s3.Bucket, s3.Region)
	e.must("socket", "POST", "/api/v1/replicas", ReplicaTargetInput{ReplicaTarget: ReplicaTarget{Name: "s3", Kind: KindPool, RPS: 500, Burst: 50},
		Location: loc}, nil)
	if w := e.do("socket", "GET", "/api/v1/replicas", nil); strings.Contains(w.Body.String(), s3.SecretKey) {
		t.Fatalf("listing shows the S3 secret: %s", w.Body)
	}
	e.addHost("h1", map[string]string{"seed": "s3", "files": "6"})
	if j := e.waitJob(e.backup("h1").ID); j.State != "done" {
		t.Fatalf("backup: %+v", j)
	}
	st := e.waitReplicated("s3", 1)
	b, err := pool.OpenBackend(context.Background(), loc, pool.OpenBackendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rp := openReplica(t, b, e.s.pool.ID(), 1)
	if got, want := fileIn(t, rp, st.Snapshots[0], "f002.txt"), fileIn(t, e.s.pool, st.Snapshots[0], "f002.txt"); got != want {
		t.Fatalf("replica %q, primary %q", got, want)
	}
}

// TestRcloneWebDAVBackendConformance runs the backend conformance suite
// against the WebDAV client over a real `rclone serve webdav` of a
// local remote.
func TestRcloneWebDAVBackendConformance(t *testing.T) {
	testenv.Need(t, "rclone")
	conf := "[loc]\ntype = local\n"
	n := 0
	backendtest.Run(t, func(t *testing.T) pool.Backend {
		n++
		dir := filepath.Join(t.TempDir(), fmt.Sprint("b", n))
		os.MkdirAll(dir, 0o700)
		rs, err := startRclone(context.Background(), t.TempDir(), conf, "loc:"+dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rs.stop)
		return rs.backend()
	})
}

func TestParseRcloneConf(t *testing.T) {
	good := "# comment\n[b2-off]\ntype = b2\naccount = 123\nkey = s=cr=t\n\n[dav]\ntype = webdav\nurl = https://x/y\n"
	conf, err := parseRcloneConf(good)
	if err != nil {
		t.Fatal(err)
	}
	if conf["b2-off"]["key"] != "s=cr=t" || conf["dav"]["url"] != "https://x/y" {
		t.Fatalf("parsed %v", conf)
	}
	env := strings.Join(rcloneEnv(conf), "\n")
	for _, want := range []string{"RCLONE_CONFIG_B2_OFF_TYPE=b2", "RCLONE_CONFIG_B2_OFF_KEY=s=cr=t", "RCLONE_CONFIG_DAV_URL=https://x/y"} {
		if !strings.Contains(env, want) {
			t.Errorf("environment lacks %s:\n%s", want, env)
		}
	}
	for in, want := range map[string]string{
		"":                            "no [remote] section",
		"type = local\n":              "line 1: want [remote]",
		"[a b]\ntype = local\n":       "remote name",
		"[x]\nurl = http://h/\n":      "has no type",
		"[x]\ntype = local\nnoeq\n":   "line 3",
		"[x]\ntype = local\nk$ = v\n": "key",
	} {
		if _, err := parseRcloneConf(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parse %q: %v, want %q", in, err, want)
		}
	}
}

// TestReplicationResumesAfterRestart: the appliance stops in the middle
// of a (bandwidth-limited) copy; after a restart the catch-up run sends
// only what is missing and the replica checks clean.
func TestReplicationResumesAfterRestart(t *testing.T) {
	resetFake(t)
	dir := t.TempDir()
	e := newEnv(t, Config{DataDir: dir, GCSchedule: "-", CheckSchedule: "-"})
	e.addHost("h1", map[string]string{"seed": "slow", "files": "40"})
	if j := e.waitJob(e.backup("h1").ID); j.State != "done" {
		t.Fatalf("backup: %+v", j)
	}
	total := 0
	e.s.pool.ListObjects(context.Background(), func(pool.Digest, pool.ObjectInfo) error { total++; return nil })
	replica := filepath.Join(t.TempDir(), "replica")
	// About 40 bytes a second, one object at a time: the copy takes
	// over a minute unless interrupted.
	e.must("socket", "POST", "/api/v1/replicas", ReplicaTargetInput{ReplicaTarget: ReplicaTarget{Name: "slow", Kind: KindPool,
		Concurrency: 1, BytesPerSecond: 40}, Location: replica}, nil)
	count := func() int {
		n := 0
		filepath.WalkDir(filepath.Join(replica, "objects"), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
		return n
	}
	waitFor(t, "a few objects on the target", func() bool { return count() >= 3 })
	e.s.Close() // interrupts the copy
	before := count()
	if before >= total {
		t.Fatalf("the copy was not interrupted: %d of %d objects", before, total)
	}
	if ids, _ := os.ReadDir(filepath.Join(replica, "snapshots")); len(ids) != 0 {
		t.Fatalf("a manifest before its objects: %v", ids)
	}
	// Lift the limit in the stopped appliance's catalog, then restart:
	// the catch-up run finishes the copy.
	cat, err := catalog.Open(context.Background(), filepath.Join(dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	off := &Server{cat: cat}
	ts, err := off.loadTargets(context.Background())
	if err != nil || len(ts) != 1 {
		t.Fatalf("targets: %v %v", ts, err)
	}
	ts[0].BytesPerSecond = 0
	if err := off.saveTargets(context.Background(), ts); err != nil {
		t.Fatal(err)
	}
	cat.Close()
	e2 := newEnv(t, Config{DataDir: dir, GCSchedule: "-", CheckSchedule: "-"})
	e2.must("socket", "POST", "/api/v1/replicas/slow/sync", nil, nil)
	st := e2.waitReplicated("slow", 1)
	t.Logf("interrupted after %d of %d objects; after the restart %d more sent", before, total, st.ObjectsTotal)
	if st.ObjectsTotal != total-before {
		t.Fatalf("after the restart %d objects sent, want the %d missing", st.ObjectsTotal, total-before)
	}
	b, _ := pool.NewDirBackend(replica)
	defer b.Close()
	openReplica(t, b, e2.s.pool.ID(), 1)
}

// TestReplicationRetriesAfterFailure: a run that fails (the target's
// path is blocked) is retried after a backoff on the clock, without
// waiting for the next snapshot.
func TestReplicationRetriesAfterFailure(t *testing.T) {
	resetFake(t)
	releaseFake()
	clock := schedule.NewFakeClock(time.Date(2030, 1, 1, 3, 0, 0, 0, time.Local))
	e := newEnv(t, Config{Clock: clock, GCSchedule: "-", CheckSchedule: "-"})
	e.addHost("h1", map[string]string{"files": "3"})
	if j := e.waitJob(e.backup("h1").ID); j.State != "done" {
		t.Fatalf("backup: %+v", j)
	}
	blocked := filepath.Join(t.TempDir(), "nas")
	os.WriteFile(blocked, []byte("a file where the replica should go"), 0o600)
	e.must("socket", "POST", "/api/v1/replicas", ReplicaTargetInput{ReplicaTarget: ReplicaTarget{Name: "nas", Kind: KindPool},
		Location: blocked}, nil)
	waitFor(t, "the failed run", func() bool {
		st := e.targetStatus("nas")
		return !st.Running && st.LastError != ""
	})
	os.Remove(blocked)
	waitFor(t, "the retry", func() bool {
		clock.Advance(10 * time.Second)
		st := e.targetStatus("nas")
		return !st.Running && st.LastError == "" && len(st.Snapshots) == 1
	})
	if clock.Now().Sub(time.Date(2030, 1, 1, 3, 0, 0, 0, time.Local)) < time.Minute {
		t.Fatalf("retried before the backoff: %v", clock.Now())
	}
}

// TestReplicationPinnedTLS: an appliance target over HTTPS with a
// self-signed certificate works when its fingerprint is pinned, and a
// wrong fingerprint fails at once with the reason.
func TestReplicationPinnedTLS(t *testing.T) {
	resetFake(t)
	a := newEnv(t, noMaint())
	b := newEnv(t, noMaint())
	srv := httptest.NewTLSServer(b.s.Handler())
	t.Cleanup(srv.Close)
	var tok ReplicaTokenCreated
	b.must("socket", "POST", "/api/v1/replica-tokens", map[string]string{"name": "a"}, &tok)
	fpr := Fingerprint(srv.Certificate().Raw)
	a.must("socket", "POST", "/api/v1/replicas", ReplicaTargetInput{ReplicaTarget: ReplicaTarget{Name: "pinned", Kind: KindCairn, TLSFingerprint: fpr},
		Location: srv.URL, Token: tok.Token}, nil)
	wrong := strings.Repeat("ab", 32)
	a.must("socket", "POST", "/api/v1/replicas", ReplicaTargetInput{ReplicaTarget: ReplicaTarget{Name: "wrong", Kind: KindCairn, TLSFingerprint: wrong},
		Location: srv.URL, Token: tok.Token}, nil)
	if w := a.do("socket", "POST", "/api/v1/replicas", ReplicaTargetInput{ReplicaTarget: ReplicaTarget{Name: "bad", Kind: KindCairn, TLSFingerprint: "12:34"},
		Location: srv.URL, Token: tok.Token}); w.Code != 400 || !strings.Contains(w.Body.String(), "fingerprint") {
		t.Fatalf("bad fingerprint: %d %s", w.Code, w.Body)
	}
	a.addHost("h1", map[string]string{"files": "2"})
	if j := a.waitJob(a.backup("h1").ID); j.State != "done" {
		t.Fatalf("backup: %+v", j)
	}
	a.waitReplicated("pinned", 1)
	var st ReplicaTargetStatus
	waitFor(t, "the failed run of wrong", func() bool {
		st = a.targetStatus("wrong")
		return !st.Running && st.LastError != ""
	})
	if !strings.Contains(st.LastError, "not the pinned") {
		t.Fatalf("wrong fingerprint: %s", st.LastError)
	}
}
