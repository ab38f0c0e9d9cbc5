package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// orderBackend records the order of completed Puts and, at each manifest
// Put, which objects the remote already had.
type orderBackend struct {
	Backend
	mu      sync.Mutex
	order   []string
	present map[string]bool
	bad     []string // manifests put before an object staged before them
	expect  func(manifest string) []string
}

func (o *orderBackend) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if strings.HasPrefix(name, snapshotsPrefix) && o.expect != nil {
		o.mu.Lock()
		for _, obj := range o.expect(name) {
			if !o.present[obj] {
				o.bad = append(o.bad, name+" before "+obj)
			}
		}
		o.mu.Unlock()
	}
	if err := o.Backend.Put(ctx, name, r, size); err != nil {
		return err
	}
	o.mu.Lock()
	o.order = append(o.order, name)
	o.present[name] = true
	o.mu.Unlock()
	return nil
}

func s3Remote(t *testing.T, s *testenv.S3Server, prefix string) *S3Backend {
	t.Helper()
	b, err := NewS3Backend(context.Background(), S3Config{Endpoint: s.Endpoint, Bucket: s.Bucket, Prefix: prefix,
		Region: s.Region, AccessKey: s.AccessKey, SecretKey: s.SecretKey, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func listNames(t *testing.T, b Backend, prefix string) []string {
	t.Helper()
	var out []string
	if err := b.List(context.Background(), prefix, func(oi ObjectInfo) error { out = append(out, oi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStagingPoolOnS3: a pool on a staging cache over S3 writes two
// snapshots at disk speed; reads see staged data; after the drain a pool
// opened on S3 alone has both snapshots, passes Check, and every manifest
// went up after the objects staged before it.
func TestStagingPoolOnS3(t *testing.T) {
	s3 := testenv.S3(t)
	ctx := context.Background()
	rec := &orderBackend{Backend: s3Remote(t, s3, "staged"), present: map[string]bool{}}
	dir := t.TempDir()
	// Objects staged before each manifest: all of them, as seen at its Put.
	var stagedMu sync.Mutex
	var stagedObjs []string
	before := map[string][]string{} // manifest → objects staged before it
	st, err := NewStaging(rec, StagingOptions{Dir: filepath.Join(dir, "stage"), Uploaders: 3, Rate: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec.expect = func(m string) []string {
		stagedMu.Lock()
		defer stagedMu.Unlock()
		return before[m]
	}
	tracked := &trackPuts{Backend: st, onPut: func(name string) {
		stagedMu.Lock()
		defer stagedMu.Unlock()
		switch {
		case strings.HasPrefix(name, "objects/"):
			stagedObjs = append(stagedObjs, name)
		case strings.HasPrefix(name, snapshotsPrefix):
			before[name] = append([]string(nil), stagedObjs...)
		}
	}}
	p, err := Init(ctx, tracked, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src1, src2 := filepath.Join(dir, "src1"), filepath.Join(dir, "src2")
	genTree(t, src1, 1, 40, 3<<20)
	genTree(t, src2, 2, 40, 2<<20)
	m1 := backupDir(t, ctx, p, src1, "h1", "s")
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	compareSnapshot(t, ctx, p, m1, src1) // read back, partly from the stage
	m2 := backupDir(t, ctx, p, src2, "h2", "s")
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	stats := st.Stats()
	if stats.Entries != 0 || stats.Bytes != 0 || stats.Uploaded == 0 {
		t.Fatalf("after flush: %+v", stats)
	}
	if left := countFiles(t, filepath.Join(dir, "stage", stagingData)); left != 0 {
		t.Fatalf("%d files left in the stage", left)
	}
	if len(rec.bad) > 0 {
		t.Fatalf("manifests uploaded before their objects: %v", rec.bad)
	}
	direct, err := Open(ctx, s3Remote(t, s3, "staged"), OpenOptions{ExpectID: p.ID()})
	if err != nil {
		t.Fatal(err)
	}
	compareSnapshot(t, ctx, direct, m1, src1)
	compareSnapshot(t, ctx, direct, m2, src2)
	rep, err := direct.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || !rep.OK() || rep.Snapshots != 2 {
		t.Fatalf("check of the S3 pool: %v %s", err, rep.String())
	}
}

// trackPuts calls onPut before each Put.
type trackPuts struct {
	Backend
	onPut func(string)
}

func (t *trackPuts) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	t.onPut(name)
	return t.Backend.Put(ctx, name, r, size)
}

func (t *trackPuts) Sync(ctx context.Context) error { return t.Backend.(Syncer).Sync(ctx) }

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// TestStagingCap: with a small cap and a slow upload, Put waits; the
// stage never holds more than the cap, and everything arrives.
func TestStagingCap(t *testing.T) {
	s3 := testenv.S3(t)
	ctx := context.Background()
	remote := s3Remote(t, s3, "cap")
	st, err := NewStaging(remote, StagingOptions{Dir: t.TempDir(), MaxBytes: 64 << 10, Uploaders: 2, Rate: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	want := map[string][]byte{}
	for i := range 24 {
		name := fmt.Sprintf("objects/%02x/%02x/obj%04d", i, i, i)
		data := bytes.Repeat([]byte{byte(i)}, 16<<10)
		want[name] = data
		if err := st.Put(ctx, name, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		if got := st.Stats().Bytes; got > 64<<10 {
			t.Fatalf("staged %d bytes over the 64 KiB cap", got)
		}
	}
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if pk := st.Stats().Peak; pk > 64<<10 {
		t.Fatalf("peak %d over the cap", pk)
	}
	for name, data := range want {
		rc, err := remote.Get(ctx, name, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: %d bytes differ", name, len(got))
		}
	}
	// Deleting a staged entry removes it from the stage and the remote.
	st.Put(ctx, "objects/ff/ff/gone", strings.NewReader("x"), 1)
	if err := st.Delete(ctx, "objects/ff/ff/gone"); err != nil {
		t.Fatal(err)
	}
	st.Flush(ctx)
	if _, err := remote.Stat(ctx, "objects/ff/ff/gone"); err == nil {
		t.Fatal("deleted staged entry reached the remote")
	}
}

const stagingHelperEnv = "CAIRN_STAGING_HELPER"

// TestStagingHelper is the process TestStagingKillMidDrain kills: it
// stages objects and a manifest behind a slow uploader, says so, and
// waits to be killed.
func TestStagingHelper(t *testing.T) {
	args := os.Getenv(stagingHelperEnv)
	if args == "" {
		return // only as a subprocess
	}
	var dir, endpoint, bucket, region, ak, sk string
	fmt.Sscan(args, &dir, &endpoint, &bucket, &region, &ak, &sk)
	remote, err := NewS3Backend(context.Background(), S3Config{Endpoint: endpoint, Bucket: bucket, Prefix: "kill",
		Region: region, AccessKey: ak, SecretKey: sk, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewStaging(remote, StagingOptions{Dir: dir, Uploaders: 2, Rate: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 40 {
		data := killObject(i)
		if err := st.Put(ctx, fmt.Sprintf("objects/%02x/00/obj%04d", i, i), bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	st.Put(ctx, snapshotsPrefix+"snap1", strings.NewReader("manifest"), 8)
	st.Sync(ctx)
	os.WriteFile(filepath.Join(dir, "..", "ready"), nil, 0o644)
	time.Sleep(10 * time.Minute)
}

func killObject(i int) []byte { return bytes.Repeat([]byte{byte(i), 0x5a}, 16<<10) }

// TestStagingKillMidDrain: kill -9 the staging process mid-drain; the
// remote has no manifest yet (objects are missing); a new Staging on the
// directory resumes and uploads everything, the manifest last.
func TestStagingKillMidDrain(t *testing.T) {
	s3 := testenv.S3(t)
	ctx := context.Background()
	base := t.TempDir()
	dir := filepath.Join(base, "stage")
	cmd := exec.Command(os.Args[0], "-test.run=^TestStagingHelper$", "-test.v")
	cmd.Env = append(os.Environ(), stagingHelperEnv+"="+strings.Join([]string{dir, s3.Endpoint, s3.Bucket, s3.Region, s3.AccessKey, s3.SecretKey}, " "))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	remote := s3Remote(t, s3, "kill")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := os.Stat(filepath.Join(base, "ready"))
		if err == nil && len(listNames(t, remote, "objects/")) >= 4 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("helper exited early: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("helper did not stage and start uploading:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	up := listNames(t, remote, "objects/")
	if len(up) >= 40 {
		t.Fatalf("all %d objects were up before the kill: slow the helper down", len(up))
	}
	if snaps := listNames(t, remote, snapshotsPrefix); len(snaps) != 0 {
		t.Fatalf("manifest %v uploaded with only %d of 40 objects", snaps, len(up))
	}
	t.Logf("killed with %d of 40 objects uploaded", len(up))
	rec := &orderBackend{Backend: remote, present: map[string]bool{}}
	for _, n := range up {
		rec.present[n] = true
	}
	rec.expect = func(string) []string {
		var all []string
		for i := range 40 {
			all = append(all, fmt.Sprintf("objects/%02x/00/obj%04d", i, i))
		}
		return all
	}
	st, err := NewStaging(rec, StagingOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(rec.bad) > 0 {
		t.Fatalf("after resume, manifest before objects: %v", rec.bad)
	}
	for i := range 40 {
		rc, err := remote.Get(ctx, fmt.Sprintf("objects/%02x/00/obj%04d", i, i), 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, killObject(i)) {
			t.Fatalf("object %d: content differs after resume", i)
		}
	}
	if snaps := listNames(t, remote, snapshotsPrefix); len(snaps) != 1 {
		t.Fatalf("manifests after resume: %v", snaps)
	}
}

// statCounter counts the remote's Stat calls.
type statCounter struct {
	Backend
	mu    sync.Mutex
	stats int
}

func (c *statCounter) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	c.mu.Lock()
	c.stats++
	c.mu.Unlock()
	return c.Backend.Stat(ctx, name)
}

// TestStagingKnownIndex: an object the remote did not have at start is
// absent without a remote round trip; one it had, or that was uploaded
// since, is asked (and found).
func TestStagingKnownIndex(t *testing.T) {
	s3 := testenv.S3(t)
	ctx := context.Background()
	raw := s3Remote(t, s3, "known")
	if err := raw.Put(ctx, "objects/ee/ee/pre", strings.NewReader("pre"), 3); err != nil {
		t.Fatal(err)
	}
	remote := &statCounter{Backend: raw}
	st, err := NewStaging(remote, StagingOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		st.mu.Lock()
		loaded := st.known != nil
		st.mu.Unlock()
		if loaded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("index of remote objects not loaded")
		}
	}
	if _, err := st.Stat(ctx, "objects/dd/dd/none"); !errorsIsNotFound(err) {
		t.Fatalf("absent object: %v", err)
	}
	if remote.stats != 0 {
		t.Fatalf("absent object asked the remote %d times", remote.stats)
	}
	if oi, err := st.Stat(ctx, "objects/ee/ee/pre"); err != nil || oi.Size != 3 || remote.stats != 1 {
		t.Fatalf("object present at start: %+v %v (remote stats %d)", oi, err, remote.stats)
	}
	st.Put(ctx, "objects/cc/cc/new", strings.NewReader("new!"), 4)
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if oi, err := st.Stat(ctx, "objects/cc/cc/new"); err != nil || oi.Size != 4 {
		t.Fatalf("uploaded object: %+v %v", oi, err)
	}
	if err := st.Delete(ctx, "objects/cc/cc/new"); err != nil {
		t.Fatal(err)
	}
	n := remote.stats
	if _, err := st.Stat(ctx, "objects/cc/cc/new"); !errorsIsNotFound(err) || remote.stats != n {
		t.Fatalf("deleted object: %v, remote asked %d times", err, remote.stats-n)
	}
}

func errorsIsNotFound(err error) bool { return err != nil && errors.Is(err, ErrNotFound) }
