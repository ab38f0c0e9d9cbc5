package pool

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// objectSet lists the digests stored in a pool.
func objectSet(t *testing.T, p *Pool) map[Digest]bool {
	t.Helper()
	m := map[Digest]bool{}
	if err := p.ListObjects(context.Background(), func(d Digest, _ ObjectInfo) error { m[d] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

// sameFile asserts that path in snapshot id reads the same from both pools.
func sameFile(t *testing.T, a, b *Pool, id, path string) {
	t.Helper()
	ctx := context.Background()
	read := func(p *Pool) []byte {
		m, err := p.Snapshot(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		e := mustLookup(t, p, m.Root, path)
		r, err := p.OpenContent(ctx, &e)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	x, y := read(a), read(b)
	if !bytes.Equal(x, y) || len(x) == 0 {
		t.Fatalf("%s in %s: primary %d bytes, replica %d bytes, equal=%v", path, id, len(x), len(y), bytes.Equal(x, y))
	}
}

func checkReplica(t *testing.T, b Backend, id string, snaps int) *Pool {
	t.Helper()
	ctx := context.Background()
	r, err := Open(ctx, b, OpenOptions{ExpectID: id})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || !rep.OK() || rep.Snapshots != snaps || rep.ReadObjects != rep.Objects {
		t.Fatalf("replica check: %s, %v (want %d snapshots)", rep.String(), err, snaps)
	}
	return r
}

func TestReplicateDirIncremental(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	src := t.TempDir()
	genTree(t, src, 11, 60, 3<<20)
	m1 := backupDir(t, ctx, p, src, "h", "s")
	dst, err := CreateDirBackend(filepath.Join(t.TempDir(), "replica"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := p.Replicate(ctx, dst, ReplicateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	all := objectSet(t, p)
	if !rep.NewReplica || len(rep.Copied) != 1 || rep.Objects != len(all) || rep.Reused != 0 {
		t.Fatalf("first replication: %+v (pool has %d objects)", rep, len(all))
	}
	r := checkReplica(t, dst, p.ID(), 1)
	sameFile(t, p, r, m1.ID, "big0.bin")
	sameFile(t, p, r, m1.ID, "d01/e1/f0001.txt")

	// A second snapshot with one changed file and one new one: only the
	// new objects travel.
	if err := os.WriteFile(filepath.Join(src, "d02", "e2", "f0002.txt"), []byte("changed content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "new.txt"), bytes.Repeat([]byte("new file\n"), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	m2 := backupDir(t, ctx, p, src, "h", "s")
	after := objectSet(t, p)
	added := 0
	for d := range after {
		if !all[d] {
			added++
		}
	}
	rep2, err := p.Replicate(ctx, dst, ReplicateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second replication: %s (pool grew by %d objects)", rep2, added)
	if len(rep2.Copied) != 1 || rep2.Copied[0] != m2.ID || rep2.Present != 1 || rep2.Objects != added || rep2.NewReplica {
		t.Fatalf("second replication: %+v, want only the %d new objects of %s", rep2, added, m2.ID)
	}
	r = checkReplica(t, dst, p.ID(), 2)
	sameFile(t, p, r, m2.ID, "d02/e2/f0002.txt")
	sameFile(t, p, r, m2.ID, "new.txt")
	// Nothing to do a third time.
	rep3, err := p.Replicate(ctx, dst, ReplicateOptions{})
	if err != nil || rep3.Objects != 0 || len(rep3.Copied) != 0 || rep3.Present != 2 {
		t.Fatalf("third replication: %+v, %v", rep3, err)
	}
}

// failAfter fails every Put after n objects have been written, like a
// copy killed halfway; the snapshot manifest never gets written.
type failAfter struct {
	Backend
	n    int64
	puts atomic.Int64
}

var errKilled = errors.New("killed")

func (f *failAfter) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if f.puts.Add(1) > f.n {
		return errKilled
	}
	return f.Backend.Put(ctx, name, r, size)
}

func TestReplicateResume(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	src := t.TempDir()
	genTree(t, src, 12, 80, 5<<20)
	m := backupDir(t, ctx, p, src, "h", "s")
	total := len(objectSet(t, p))
	dir, err := CreateDirBackend(filepath.Join(t.TempDir(), "replica"))
	if err != nil {
		t.Fatal(err)
	}
	half := int64(total / 2)
	killed := &failAfter{Backend: dir, n: half + 1} // +1: the identity file
	if _, err := p.Replicate(ctx, killed, ReplicateOptions{Concurrency: 1}); !errors.Is(err, errKilled) {
		t.Fatalf("interrupted copy: %v", err)
	}
	// The replica lists no snapshot yet, and its partial objects are fine.
	if ids, err := ReplicaSnapshots(ctx, dir); err != nil || len(ids) != 0 {
		t.Fatalf("snapshots after the interruption: %v, %v", ids, err)
	}
	checkReplica(t, dir, p.ID(), 0)
	// Resume: only the rest travels.
	rep, err := p.Replicate(ctx, dir, ReplicateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("resumed: %s (pool %d objects, %d sent before the kill)", rep, total, half)
	if rep.Objects != total-int(half) || rep.Reused != int(half) || len(rep.Copied) != 1 {
		t.Fatalf("resume sent %d objects, reused %d; want %d and %d", rep.Objects, rep.Reused, total-int(half), half)
	}
	r := checkReplica(t, dir, p.ID(), 1)
	sameFile(t, p, r, m.ID, "big0.bin")

	// Cancelling the context halfway behaves the same.
	dir2, _ := CreateDirBackend(filepath.Join(t.TempDir(), "replica2"))
	cctx, cancel := context.WithCancel(ctx)
	n := 0
	_, err = p.Replicate(cctx, dir2, ReplicateOptions{Concurrency: 1, Progress: func(pr ReplicateProgress) {
		if n++; n == total/3 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled copy: %v", err)
	}
	rep, err = p.Replicate(ctx, dir2, ReplicateOptions{})
	if err != nil || rep.Objects >= total || rep.Reused < total/3 || len(rep.Copied) != 1 {
		t.Fatalf("resume after cancel: %+v, %v", rep, err)
	}
	checkReplica(t, dir2, p.ID(), 1)
}

func TestReplicateRefuses(t *testing.T) {
	ctx := context.Background()
	p, b := structPool(t)
	src := t.TempDir()
	genTree(t, src, 13, 10)
	m := backupDir(t, ctx, p, src, "h", "s")
	// Another pool is not a replica target.
	other, _ := structPool(t)
	if _, err := p.Replicate(ctx, other.Backend(), ReplicateOptions{}); !errors.Is(err, ErrNotReplica) {
		t.Fatalf("replicate onto another pool: %v", err)
	}
	// Nor is a non-empty directory without a pool.
	junk, _ := CreateDirBackend(filepath.Join(t.TempDir(), "junk"))
	junk.Put(ctx, "notes.txt", bytes.NewReader([]byte("x")), 1)
	if _, err := p.Replicate(ctx, junk, ReplicateOptions{}); !errors.Is(err, ErrNotReplica) {
		t.Fatalf("replicate onto a non-empty dir: %v", err)
	}
	// A corrupt source object is never sent, and the manifest is not
	// written.
	e := mustLookup(t, p, m.Root, "d01/e1/f0001.txt")
	flipByte(t, objectFile(b, e.Content), -2)
	dst, _ := CreateDirBackend(filepath.Join(t.TempDir(), "replica"))
	if _, err := p.Replicate(ctx, dst, ReplicateOptions{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("replicate a corrupt pool: %v", err)
	}
	if _, err := dst.Stat(ctx, ObjectName(e.Content)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("corrupt object was copied: %v", err)
	}
	if ids, _ := ReplicaSnapshots(ctx, dst); len(ids) != 0 {
		t.Fatalf("manifest written despite a missing object: %v", ids)
	}
}

func TestReplicateEncryptedBandwidth(t *testing.T) {
	ctx := context.Background()
	b, _ := CreateDirBackend(filepath.Join(t.TempDir(), "pool"))
	kf := filepath.Join(t.TempDir(), "key")
	p, err := Init(ctx, b, InitOptions{Encrypt: true, KeyFile: kf})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	genTree(t, src, 14, 20, 2<<20)
	m := backupDir(t, ctx, p, src, "h", "s")
	dst, _ := CreateDirBackend(filepath.Join(t.TempDir(), "replica"))
	// A fake clock: the limiter's requested sleeps add up to bytes/rate.
	now := time.Unix(1e9, 0)
	var slept time.Duration
	o := ReplicateOptions{BytesPerSecond: 1 << 20, Concurrency: 1,
		Now: func() time.Time { return now },
		Sleep: func(_ context.Context, d time.Duration) error {
			slept += max(d, 0)
			now = now.Add(max(d, 0))
			return nil
		}}
	rep, err := p.Replicate(ctx, dst, o)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Duration(float64(rep.Bytes) / (1 << 20) * float64(time.Second))
	if slept < want/2 || slept > want+time.Second {
		t.Fatalf("bandwidth limit: slept %v for %d bytes at 1 MiB/s (want about %v)", slept, rep.Bytes, want)
	}
	// The replica is encrypted too and opens only with the key.
	if _, err := Open(ctx, dst, OpenOptions{}); !errors.Is(err, ErrNoKey) {
		t.Fatalf("open encrypted replica without key: %v", err)
	}
	r, err := Open(ctx, dst, OpenOptions{KeyFile: kf, ExpectID: p.ID()})
	if err != nil {
		t.Fatal(err)
	}
	if crep, err := r.Check(ctx, CheckOptions{ReadData: true}); err != nil || !crep.OK() {
		t.Fatalf("encrypted replica check: %v %v", crep.String(), err)
	}
	sameFile(t, p, r, m.ID, "big0.bin")
}

func TestReplicateS3(t *testing.T) {
	s := testenv.S3(t)
	ctx := context.Background()
	p, _ := structPool(t)
	src := t.TempDir()
	genTree(t, src, 15, 30, 3<<20)
	m := backupDir(t, ctx, p, src, "h", "s")
	s3, err := NewS3Backend(ctx, S3Config{Endpoint: s.Endpoint, Bucket: s.Bucket, Prefix: "replica", Region: s.Region,
		AccessKey: s.AccessKey, SecretKey: s.SecretKey, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	dst := Decorate(s3, DecorateOptions{Retries: 3, Concurrency: 2, RateLimit: 1000, RateBurst: 50})
	rep, err := p.Replicate(ctx, dst, ReplicateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Objects != len(objectSet(t, p)) {
		t.Fatalf("s3 replication: %+v", rep)
	}
	r := checkReplica(t, dst, p.ID(), 1)
	sameFile(t, p, r, m.ID, "big0.bin")
	if rep2, err := p.Replicate(ctx, dst, ReplicateOptions{}); err != nil || rep2.Objects != 0 || rep2.Present != 1 {
		t.Fatalf("second s3 replication: %+v, %v", rep2, err)
	}
}
