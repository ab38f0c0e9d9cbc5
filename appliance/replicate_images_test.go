package appliance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/images"
	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pool/backendtest"
)

// imageHost adds host name with one image-sftp source reading img.
func (e *testEnv) imageHost(srv *testenv.SSHServer, name, img string) {
	e.t.Helper()
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{imageSource(e.t, srv, "disk", MethodImageSFTP, img)}}, nil)
}

// replicaImage reads the image of snapshot id from a replica on b with
// no catalog — the file pool's placeholder names the version, the image
// pool nested at images/ holds it — and returns its SHA-256.
func replicaImage(t *testing.T, b pool.Backend, o pool.OpenOptions, imagesKey, id string) [32]byte {
	t.Helper()
	ctx := context.Background()
	p, err := pool.Open(ctx, b, o)
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Snapshot(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	name, vid, ok := images.Placeholder(m)
	if !ok {
		t.Fatalf("snapshot %s on the replica is not an image snapshot: %v", id, m.Labels)
	}
	st, err := images.Open(ctx, pool.Sub(b, "images"), pool.OpenOptions{KeyFile: imagesKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	im, err := st.OpenVersion(ctx, name, vid)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(im, 0, im.Size())); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// checkReplicaImages fully checks the image pool of a replica and
// returns its versions.
func checkReplicaImages(t *testing.T, b pool.Backend, id, keyFile string) map[string]bool {
	t.Helper()
	ctx := context.Background()
	st, err := images.Open(ctx, pool.Sub(b, "images"), pool.OpenOptions{ExpectID: id, KeyFile: keyFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := st.Check(ctx, pool.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("replica image pool check: %s, %v", rep.String(), err)
	}
	vs, err := images.ReplicaVersions(ctx, pool.Sub(b, "images"))
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func countFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".tmp-") {
			n++
		}
		return nil
	})
	return n
}

// TestReplicationImagesDirResume: image snapshots go to a directory
// target like file snapshots. The first copy (bandwidth-limited) is
// interrupted after a few blocks and no manifest; after a restart the
// catch-up run sends only the missing blocks; the replica checks clean
// and its image reads back identical with no catalog. A second version
// sends only its changed block, the target's retention removes the
// first version with its placeholder, and the audit shows image
// snapshots per target — one whose image is gone from the target counts
// as missing.
func TestReplicationImagesDirResume(t *testing.T) {
	srv := testenv.SSHD(t)
	dir := t.TempDir()
	e := newEnv(t, Config{DataDir: dir, GCSchedule: "-", CheckSchedule: "-"})
	img := filepath.Join(srv.Dir, "vm.img")
	v1 := smallImage(41)
	os.WriteFile(img, v1, 0o600)
	e.imageHost(srv, "vm", img)
	e.jobOK(e.backup("vm"))
	store, err := e.s.imageStore(context.Background(), false)
	if err != nil || store == nil {
		t.Fatalf("image store: %v", err)
	}
	blocks := 0
	store.Pool().ListObjects(context.Background(), func(pool.Digest, pool.ObjectInfo) error { blocks++; return nil })
	if blocks != 4 {
		t.Fatalf("image pool holds %d blocks, want 4", blocks)
	}
	replica := filepath.Join(t.TempDir(), "nas")
	// 1 MiB/s, one block at a time: each 4 MiB block takes seconds.
	e.must("socket", "POST", "/api/v1/replicas", ReplicaTargetInput{ReplicaTarget: ReplicaTarget{Name: "nas", Kind: KindPool,
		Concurrency: 1, BytesPerSecond: 1 << 20, Retention: ReplicaRetention{Last: 1}}, Location: replica}, nil)
	imgObjects := filepath.Join(replica, "images", "objects")
	waitFor(t, "a first block on the target", func() bool { return countFiles(imgObjects) >= 1 })
	e.s.Close() // interrupts the copy
	before := countFiles(imgObjects)
	if before >= blocks {
		t.Fatalf("the copy was not interrupted: %d of %d blocks", before, blocks)
	}
	if n := countFiles(filepath.Join(replica, "images", "images")) + countFiles(filepath.Join(replica, "snapshots")); n != 0 {
		t.Fatalf("%d manifests on the target before their blocks", n)
	}
	cat, err := catalog.Open(context.Background(), filepath.Join(dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	off := &Server{cat: cat}
	ts, _ := off.loadTargets(context.Background())
	ts[0].BytesPerSecond = 0
	if err := off.saveTargets(context.Background(), ts); err != nil {
		t.Fatal(err)
	}
	cat.Close()

	e = newEnv(t, Config{DataDir: dir, GCSchedule: "-", CheckSchedule: "-"})
	var st ReplicaTargetStatus
	e.must("socket", "POST", "/api/v1/replicas/nas/sync", nil, &st)
	st = e.waitReplicated("nas", 1)
	// The file pool's objects of a placeholder: its empty tree only.
	t.Logf("interrupted after %d of %d blocks; after the restart %d objects sent (%d images)", before, blocks, st.ObjectsTotal, st.ImagesCopied)
	if st.ObjectsTotal > blocks-before+1 || st.ObjectsTotal < blocks-before || len(st.ImageVersions) != 1 {
		t.Fatalf("after the restart: %+v; want the %d missing blocks", st, blocks-before)
	}
	b, err := pool.NewDirBackend(replica)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	openReplica(t, b, e.s.pool.ID(), 1)
	store, _ = e.s.imageStore(context.Background(), false)
	if vs := checkReplicaImages(t, b, store.Pool().ID(), ""); len(vs) != 1 {
		t.Fatalf("replica image versions: %v", vs)
	}
	p1 := st.Snapshots[0]
	if got := replicaImage(t, b, pool.OpenOptions{}, "", p1); got != sha256.Sum256(v1) {
		t.Fatal("the image read from the replica differs from the original")
	}

	// A second version: only its changed block travels, and the target
	// keeps the last snapshot only, its image with it.
	v2 := append([]byte(nil), v1...)
	copy(v2[2*images.BlockSize:], randBytes(images.BlockSize, 99))
	os.WriteFile(img, v2, 0o600)
	e.jobOK(e.backup("vm"))
	var p2 string
	waitFor(t, "the second image snapshot on nas", func() bool {
		st = e.targetStatus("nas")
		if st.Running || st.LastError != "" || len(st.Snapshots) != 1 || st.Snapshots[0] == p1 {
			return false
		}
		p2 = st.Snapshots[0]
		return true
	})
	if st.ImagesCopied != 1 || st.Objects > 3 || st.Pruned != 1 {
		t.Fatalf("second run: %+v; want one image version, its one new block and the placeholder's objects, one pruned", st)
	}
	vs := checkReplicaImages(t, b, store.Pool().ID(), "")
	if len(vs) != 1 || !slices.Equal(st.ImageVersions, sortedKeys(vs)) {
		t.Fatalf("replica versions after retention: %v, status %v", vs, st.ImageVersions)
	}
	if got := replicaImage(t, b, pool.OpenOptions{}, "", p2); got != sha256.Sum256(v2) {
		t.Fatal("the second image read from the replica differs")
	}

	// The audit: image snapshots per target.
	var a AuditBody
	e.must("socket", "GET", "/api/v1/audit", nil, &a)
	if len(a.Hosts) != 1 || len(a.Hosts[0].Targets) != 2 {
		t.Fatalf("audit: %+v", a)
	}
	prim, nas := a.Hosts[0].Targets[0], a.Hosts[0].Targets[1]
	if len(prim.Images) != 2 || !slices.Equal(nas.Images, []string{p2}) || nas.NewestComplete != p2 || len(nas.Missing) != 0 {
		t.Fatalf("audit: primary %+v, nas %+v", prim, nas)
	}
	if w := e.do("socket", "GET", "/metrics", nil); !strings.Contains(w.Body.String(), `cairn_replication_lag_seconds{target="nas",host="vm"} 0`) {
		t.Fatalf("lag metric of an image snapshot on its target:\n%s", w.Body)
	}
	// Its image gone from the target, the image snapshot is missing there.
	for v := range vs {
		os.Remove(filepath.Join(replica, "images", "images", v))
	}
	e.must("socket", "GET", "/api/v1/audit", nil, &a)
	nas = a.Hosts[0].Targets[1]
	if len(nas.Images) != 0 || slices.Contains(nas.Snapshots, p2) || !slices.Contains(nas.Missing, p2) {
		t.Fatalf("audit with the image gone from the target: %+v", nas)
	}
	// The next run puts it back.
	e.must("socket", "POST", "/api/v1/replicas/nas/sync", nil, &st)
	if st.ImagesCopied != 1 || st.LastError != "" {
		t.Fatalf("repair run: %+v", st)
	}
	if got := replicaImage(t, b, pool.OpenOptions{}, "", p2); got != sha256.Sum256(v2) {
		t.Fatal("the repaired image differs")
	}
}

// TestReplicationImagesS3: image snapshots to the real S3 server.
func TestReplicationImagesS3(t *testing.T) {
	s3 := testenv.S3(t)
	srv := testenv.SSHD(t)
	e := newEnv(t, noMaint())
	img := filepath.Join(srv.Dir, "vm.img")
	raw := smallImage(43)
	os.WriteFile(img, raw, 0o600)
	e.imageHost(srv, "vm", img)
	e.jobOK(e.backup("vm"))
	prefix := fmt.Sprintf("img-%d", os.Getpid())
	loc := fmt.Sprintf("s3://%s:%s@%s/%s/%s?insecure=1&region=%s", s3.AccessKey, s3.SecretKey, s3.Endpoint, s3.Bucket, prefix, s3.Region)
	e.must("socket", "POST", "/api/v1/replicas", ReplicaTargetInput{ReplicaTarget: ReplicaTarget{Name: "s3", Kind: KindPool},
		Location: loc}, nil)
	st := e.waitReplicated("s3", 1)
	if st.ImagesCopied != 1 {
		t.Fatalf("status: %+v", st)
	}
	b, err := pool.OpenBackend(context.Background(), loc, pool.OpenBackendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	openReplica(t, b, e.s.pool.ID(), 1)
	store, _ := e.s.imageStore(context.Background(), false)
	checkReplicaImages(t, b, store.Pool().ID(), "")
	if got := replicaImage(t, b, pool.OpenOptions{}, "", st.Snapshots[0]); got != sha256.Sum256(raw) {
		t.Fatal("the image read from the S3 replica differs")
	}
	// The nested image pool is also a plain s3:// location of its own.
	u := fmt.Sprintf("s3://%s:%s@%s/%s/%s/images?insecure=1&region=%s", s3.AccessKey, s3.SecretKey, s3.Endpoint, s3.Bucket, prefix, s3.Region)
	ib, err := pool.OpenBackend(context.Background(), u, pool.OpenBackendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := images.Open(context.Background(), ib, pool.OpenOptions{ExpectID: store.Pool().ID()}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestReplicationImagesApplianceEncrypted: an encrypted primary's image
// snapshots go to another appliance through an append-only token. The
// token cannot delete or overwrite image objects. The receiving
// appliance holds ciphertext only until its admin imports the keys
// (checked, sealed); then its own retention prunes images with their
// placeholders.
func TestReplicationImagesApplianceEncrypted(t *testing.T) {
	srv := testenv.SSHD(t)
	adir := t.TempDir()
	a := newEnv(t, Config{DataDir: adir, GCSchedule: "-", CheckSchedule: "-"})
	a.must("socket", "POST", "/api/v1/storage", StorageInput{Kind: "dir", Dir: filepath.Join(t.TempDir(), "pool"), Encrypt: true}, nil)
	b := newEnv(t, noMaint())
	hs := httptest.NewServer(b.s.Handler())
	t.Cleanup(hs.Close)
	var tok ReplicaTokenCreated
	b.must("socket", "POST", "/api/v1/replica-tokens", map[string]string{"name": "from-a"}, &tok)
	a.must("socket", "POST", "/api/v1/replicas", ReplicaTargetInput{ReplicaTarget: ReplicaTarget{Name: "site-b", Kind: KindCairn},
		Location: hs.URL, Token: tok.Token}, nil)
	img := filepath.Join(srv.Dir, "vm.img")
	v1 := smallImage(45)
	os.WriteFile(img, v1, 0o600)
	a.imageHost(srv, "vm", img)
	a.jobOK(a.backup("vm"))
	st := a.waitReplicated("site-b", 1)
	p1 := st.Snapshots[0]
	if st.ImagesCopied != 1 {
		t.Fatalf("status: %+v", st)
	}
	poolID := a.s.pool.ID()
	dir := filepath.Join(b.dir, "replicas", poolID)
	db, err := pool.NewDirBackend(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	poolKey, imagesKey := filepath.Join(adir, poolKeyName), filepath.Join(adir, imagesKeyName)
	if got := replicaImage(t, db, pool.OpenOptions{KeyFile: poolKey}, imagesKey, p1); got != sha256.Sum256(v1) {
		t.Fatal("the image read from the received replica differs")
	}
	// Ciphertext: no plaintext block is on the receiving side.
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if data, _ := os.ReadFile(p); bytes.Contains(data, v1[:64]) {
				t.Errorf("%s holds plaintext", p)
			}
		}
		return nil
	})

	// What the append-only token cannot do to image objects.
	base := "/api/v1/replica/" + poolID
	var block, manifest string
	db.List(context.Background(), "images/objects/", func(oi pool.ObjectInfo) error { block = oi.Name; return nil })
	db.List(context.Background(), "images/images/", func(oi pool.ObjectInfo) error { manifest = oi.Name; return nil })
	if block == "" || manifest == "" {
		t.Fatalf("no image block or manifest received: %q %q", block, manifest)
	}
	req := func(as, method, path string, body []byte) (int, string) {
		r := httptest.NewRequest(method, path, bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+as)
		w := httptest.NewRecorder()
		b.s.Handler().ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	for _, name := range []string{block, manifest, "images/cairn-pool.json", "images/cairn-images.json"} {
		if c, body := req(tok.Token, "DELETE", base+"/object/"+name, nil); c != http.StatusForbidden {
			t.Fatalf("append-only delete of %s: %d %s", name, c, body)
		}
		if c, body := req(tok.Token, "PUT", base+"/object/"+name, []byte("CRNO overwritten")); c != http.StatusConflict {
			t.Fatalf("overwrite of %s: %d %s", name, c, body)
		}
	}
	if c, _ := req(tok.Token, "PUT", base+"/object/images/locks/x", []byte("CRNO")); c != http.StatusBadRequest {
		t.Fatalf("put outside the image pool's names: %d", c)
	}
	// Nor read or import keys.
	if c, _ := req(tok.Token, "GET", base+"/key", nil); c != http.StatusForbidden {
		t.Fatalf("append-only key status: %d", c)
	}
	if c, _ := req(tok.Token, "PUT", base+"/key", []byte(`{"key":"00"}`)); c != http.StatusForbidden {
		t.Fatalf("append-only key import: %d", c)
	}

	// By default the key stays on the primary: B cannot prune.
	var ks ReplicaKeyStatus
	b.must("socket", "GET", base+"/key", nil, &ks)
	if !ks.Encrypted || ks.Key || !ks.Images || !ks.ImagesEncrypted || ks.ImagesKey {
		t.Fatalf("key status before the import: %+v", ks)
	}
	b.must("socket", "PUT", base+"/retention", ReplicaRetention{Last: 1}, nil)
	err = b.s.pruneReceived(context.Background(), poolID, db)
	if err == nil || !strings.Contains(err.Error(), "cairn replica key import "+poolID) || !strings.Contains(err.Error(), "DATA/pool.key") {
		t.Fatalf("prune without the key: %v", err)
	}
	// A wrong key is refused with the reason; the right ones are sealed.
	pk, _ := os.ReadFile(poolKey)
	ik, _ := os.ReadFile(imagesKey)
	if w := b.do("socket", "PUT", base+"/key", ReplicaKeyInput{Key: string(ik)}); w.Code != 400 || !strings.Contains(w.Body.String(), "does not belong") {
		t.Fatalf("wrong key: %d %s", w.Code, w.Body)
	}
	if w := b.do("socket", "PUT", base+"/key", ReplicaKeyInput{Key: "zz"}); w.Code != 400 || !strings.Contains(w.Body.String(), "hex") {
		t.Fatalf("not a key: %d %s", w.Code, w.Body)
	}
	b.must("socket", "PUT", base+"/key", ReplicaKeyInput{Key: string(pk), ImagesKey: string(ik)}, &ks)
	if !ks.Key || !ks.ImagesKey {
		t.Fatalf("key status after the import: %+v", ks)
	}
	v, _, _ := b.s.cat.Setting(context.Background(), receivedKeysSetting(poolID))
	if strings.Contains(v, strings.TrimSpace(string(pk))) || strings.Contains(v, strings.TrimSpace(string(ik))) || v == "" {
		t.Fatalf("keys stored in the clear: %s", v)
	}
	if logs := b.logs.String(); strings.Contains(logs, strings.TrimSpace(string(pk))) {
		t.Fatal("a key in the logs")
	}

	// Now B's retention (keep the last) removes the first image with its
	// placeholder when the second arrives.
	v2 := append([]byte(nil), v1...)
	copy(v2[3*images.BlockSize:], randBytes(images.BlockSize, 46))
	os.WriteFile(img, v2, 0o600)
	a.jobOK(a.backup("vm"))
	var p2 string
	waitFor(t, "the second image snapshot on site-b", func() bool {
		st = a.targetStatus("site-b")
		if st.Running || st.LastError != "" || len(st.Snapshots) != 1 || st.Snapshots[0] == p1 {
			return false
		}
		p2 = st.Snapshots[0]
		return true
	})
	vs, err := images.ReplicaVersions(context.Background(), pool.Sub(db, "images"))
	if err != nil || len(vs) != 1 || !slices.Equal(st.ImageVersions, sortedKeys(vs)) {
		t.Fatalf("received image versions after B's retention: %v %v (status %v)", vs, err, st.ImageVersions)
	}
	if got := replicaImage(t, db, pool.OpenOptions{KeyFile: poolKey}, imagesKey, p2); got != sha256.Sum256(v2) {
		t.Fatal("the second image read from the received replica differs")
	}
	// Forgetting the keys makes it ciphertext again.
	b.must("socket", "DELETE", base+"/key", nil, nil)
	b.must("socket", "GET", base+"/key", nil, &ks)
	if ks.Key || ks.ImagesKey {
		t.Fatalf("key status after rm: %+v", ks)
	}
}

// TestSubBackendConformance: a nested pool's view of a backend passes
// the backend conformance suite.
func TestSubBackendConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) pool.Backend {
		b, err := pool.CreateDirBackend(filepath.Join(t.TempDir(), "outer"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return pool.Sub(b, "images")
	})
}

// TestReplicationImagesRclone: image snapshots to an rclone remote (a
// local one, served by Debian's rclone over WebDAV), with the target's
// retention pruning the older image.
func TestReplicationImagesRclone(t *testing.T) {
	testenv.Need(t, "rclone")
	srv := testenv.SSHD(t)
	e := newEnv(t, noMaint())
	dir := filepath.Join(t.TempDir(), "offsite")
	os.MkdirAll(dir, 0o700)
	e.must("socket", "POST", "/api/v1/replicas", ReplicaTargetInput{ReplicaTarget: ReplicaTarget{Name: "rc", Kind: KindRclone,
		Retention: ReplicaRetention{Last: 1}}, Location: "offsite:" + dir, RcloneConf: "[offsite]\ntype = local\n"}, nil)
	img := filepath.Join(srv.Dir, "vm.img")
	v1 := smallImage(47)
	os.WriteFile(img, v1, 0o600)
	e.imageHost(srv, "vm", img)
	e.jobOK(e.backup("vm"))
	st := e.waitReplicated("rc", 1)
	p1 := st.Snapshots[0]
	v2 := append([]byte(nil), v1...)
	copy(v2[0:], randBytes(images.BlockSize, 48))
	os.WriteFile(img, v2, 0o600)
	e.jobOK(e.backup("vm"))
	waitFor(t, "the second image snapshot on rc", func() bool {
		st = e.targetStatus("rc")
		return !st.Running && st.LastError == "" && len(st.Snapshots) == 1 && st.Snapshots[0] != p1
	})
	b, err := pool.NewDirBackend(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	openReplica(t, b, e.s.pool.ID(), 1)
	store, _ := e.s.imageStore(context.Background(), false)
	if vs := checkReplicaImages(t, b, store.Pool().ID(), ""); len(vs) != 1 || !slices.Equal(sortedKeys(vs), st.ImageVersions) {
		t.Fatalf("rclone replica versions %v, status %v", vs, st.ImageVersions)
	}
	if got := replicaImage(t, b, pool.OpenOptions{}, "", st.Snapshots[0]); got != sha256.Sum256(v2) {
		t.Fatal("the image read from the rclone replica differs")
	}
}
