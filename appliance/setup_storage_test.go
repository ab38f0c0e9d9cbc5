package appliance

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
)

// The setup chooses a new local directory with encryption: the unused
// pool is replaced, the key is answered once, backups land in the new
// pool, and a restart opens it (with the key) and refuses a change.
func TestStorageChooseDirEncrypted(t *testing.T) {
	data := t.TempDir()
	e := newEnv(t, Config{DataDir: data})
	var st StorageBody
	e.must("socket", "GET", "/api/v1/storage", nil, &st)
	if !st.Changeable || st.Kind != "dir" || st.Location != filepath.Join(data, "pool") || st.Encrypted || st.Free == 0 || st.Total < st.Free {
		t.Fatalf("fresh storage %+v", st)
	}
	target := filepath.Join(t.TempDir(), "new", "pool")
	var tb StorageTestBody
	e.must("socket", "POST", "/api/v1/storage/test", StorageInput{Kind: "dir", Dir: target}, &tb)
	if !tb.OK || tb.Free == 0 {
		t.Fatalf("test of a new dir %+v", tb)
	}
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), []byte("x"), 0o600)
	e.must("socket", "POST", "/api/v1/storage/test", StorageInput{Kind: "dir", Dir: full}, &tb)
	if tb.OK || !strings.Contains(tb.Error, "is not empty") {
		t.Fatalf("test of a non-empty dir %+v", tb)
	}
	if w := e.do("socket", "POST", "/api/v1/storage", StorageInput{Kind: "dir", Dir: "rel/path"}); w.Code != 400 || !strings.Contains(w.Body.String(), "absolute path") {
		t.Fatalf("relative dir: %d %s", w.Code, w.Body.String())
	}
	old := e.s.pool.ID()
	e.must("socket", "POST", "/api/v1/storage", StorageInput{Kind: "dir", Dir: target, Encrypt: true}, &st)
	if st.PoolID == old || st.Location != target || !st.Encrypted || !st.Changeable {
		t.Fatalf("after choosing %+v", st)
	}
	key, err := hex.DecodeString(strings.TrimSpace(st.Key))
	if err != nil || len(key) != pool.KeySize {
		t.Fatalf("key answered %q: %v", st.Key, err)
	}
	if b, err := os.ReadFile(filepath.Join(data, "pool.key")); err != nil || string(b) != st.Key {
		t.Fatalf("key file %q %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(data, "pool.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v %v", fi, err)
	}
	// The key is not answered again.
	var st2 StorageBody
	e.must("socket", "GET", "/api/v1/storage", nil, &st2)
	if st2.Key != "" || st2.PoolID != st.PoolID {
		t.Fatalf("GET after choosing %+v", st2)
	}
	var hz healthBody
	e.must("socket", "GET", "/healthz", nil, &hz)
	// A backup goes to the new pool, after which storage is fixed.
	e.addHost("h1", nil)
	j := e.backup("h1")
	if j = e.waitJob(j.ID); j.State != "done" {
		t.Fatalf("backup %+v", j)
	}
	ids, err := e.s.pool.SnapshotIDs(context.Background())
	if err != nil || len(ids) != 1 {
		t.Fatalf("snapshots in the new pool %v %v", ids, err)
	}
	if w := e.do("socket", "POST", "/api/v1/storage", StorageInput{Kind: "dir", Dir: filepath.Join(t.TempDir(), "p2")}); w.Code != 409 ||
		!strings.Contains(w.Body.String(), "holds 1 snapshots") {
		t.Fatalf("change after a backup: %d %s", w.Code, w.Body.String())
	}
	// A restart opens the chosen, encrypted pool.
	e.s.Close()
	e2 := newEnv(t, Config{DataDir: data})
	if e2.s.pool.ID() != st.PoolID || !e2.s.pool.Encrypted() || e2.s.pool.Location() != target {
		t.Fatalf("after restart: %s %v %s", e2.s.pool.ID(), e2.s.pool.Encrypted(), e2.s.pool.Location())
	}
	// Without its key it does not open.
	e2.s.Close()
	os.Rename(filepath.Join(data, "pool.key"), filepath.Join(data, "pool.key.away"))
	if _, err := New(context.Background(), Config{DataDir: data}); err == nil || !strings.Contains(err.Error(), "key") {
		t.Fatalf("open without the key: %v", err)
	}
}

// Re-initialising the default directory in place turns on encryption.
func TestStorageReinitInPlace(t *testing.T) {
	data := t.TempDir()
	e := newEnv(t, Config{DataDir: data})
	dir := filepath.Join(data, "pool")
	var st StorageBody
	e.must("socket", "POST", "/api/v1/storage", StorageInput{Kind: "dir", Dir: dir, Encrypt: true}, &st)
	if st.Location != dir || !st.Encrypted || st.Key == "" {
		t.Fatalf("in place %+v", st)
	}
	es, _ := os.ReadDir(data)
	for _, de := range es {
		if strings.Contains(de.Name(), ".unused-") {
			t.Fatalf("the old pool was left: %s", de.Name())
		}
	}
	if _, err := pool.Open(context.Background(), mustDir(t, dir), pool.OpenOptions{ExpectID: st.PoolID, KeyFile: filepath.Join(data, "pool.key")}); err != nil {
		t.Fatal(err)
	}
}

func mustDir(t *testing.T, dir string) pool.Backend {
	b, err := pool.NewDirBackend(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// S3 storage against the real S3 test server: the test reports a wrong
// key, the choice stores the keys sealed (never answered), backups land
// in the bucket and a restart reopens it.
func TestStorageChooseS3(t *testing.T) {
	srv := testenv.S3(t)
	data := t.TempDir()
	e := newEnv(t, Config{DataDir: data})
	in := StorageInput{Kind: "s3", S3: &StorageS3{Endpoint: srv.Endpoint, Bucket: srv.Bucket, Prefix: "cairn", Region: srv.Region, Insecure: true,
		AccessKey: srv.AccessKey, SecretKey: "wrong-" + srv.SecretKey}}
	var tb StorageTestBody
	e.must("socket", "POST", "/api/v1/storage/test", in, &tb)
	if tb.OK || tb.Error == "" || strings.Contains(tb.Error, srv.SecretKey) {
		t.Fatalf("test with a wrong key %+v", tb)
	}
	in.S3.SecretKey = srv.SecretKey
	e.must("socket", "POST", "/api/v1/storage/test", in, &tb)
	if !tb.OK || tb.Location != "s3://"+srv.Endpoint+"/"+srv.Bucket+"/cairn" {
		t.Fatalf("test %+v", tb)
	}
	var st StorageBody
	w := e.do("socket", "POST", "/api/v1/storage", in)
	if w.Code != 200 || strings.Contains(w.Body.String(), srv.SecretKey) || strings.Contains(w.Body.String(), srv.AccessKey) {
		t.Fatalf("choose s3: %d %s", w.Code, w.Body.String())
	}
	e.must("socket", "GET", "/api/v1/storage", nil, &st)
	if st.Kind != "s3" || st.S3 == nil || st.S3.Bucket != srv.Bucket || st.S3.SecretKey != "" || st.S3.AccessKey != "" || st.Encrypted {
		t.Fatalf("storage %+v %+v", st, st.S3)
	}
	v, _, _ := e.s.cat.Setting(context.Background(), settingStorage)
	if strings.Contains(v, srv.SecretKey) || strings.Contains(v, srv.AccessKey) {
		t.Fatalf("keys in clear in the catalog: %s", v)
	}
	e.addHost("h1", nil)
	if j := e.waitJob(e.backup("h1").ID); j.State != "done" {
		t.Fatalf("backup %+v", j)
	}
	// The identity and the snapshot are objects in the bucket.
	if _, err := os.Stat(filepath.Join(srv.Dir, srv.Bucket, "cairn", pool.IdentityName)); err != nil {
		t.Fatalf("identity in the bucket: %v", err)
	}
	// The bucket is now not empty: a second appliance cannot take it.
	e.s.Close()
	e2 := newEnv(t, Config{DataDir: data})
	if e2.s.pool.ID() != st.PoolID || !strings.HasPrefix(e2.s.pool.Location(), "s3://") {
		t.Fatalf("after restart %s %s", e2.s.pool.ID(), e2.s.pool.Location())
	}
	ids, err := e2.s.pool.SnapshotIDs(context.Background())
	if err != nil || len(ids) != 1 {
		t.Fatalf("snapshots after restart %v %v", ids, err)
	}
	other := newEnv(t, Config{})
	if w := other.do("socket", "POST", "/api/v1/storage", in); w.Code != 400 || !strings.Contains(w.Body.String(), "is not empty") {
		t.Fatalf("a used bucket: %d %s", w.Code, w.Body.String())
	}
}
