package images

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/cairn-backup/cairn/pool"
)

// failAfter fails every Put of a block after the first n.
type failAfter struct {
	pool.Backend
	n, puts atomic.Int64
}

var errCut = errors.New("link cut")

func (f *failAfter) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if len(name) > 8 && name[:8] == "objects/" && f.puts.Add(1) > f.n.Load() {
		return errCut
	}
	return f.Backend.Put(ctx, name, r, size)
}

func (f *failAfter) Sync(ctx context.Context) error { return pool.SyncBackend(ctx, f.Backend) }

func countBlocks(t *testing.T, b pool.Backend) int {
	t.Helper()
	m, err := pool.ReplicaObjects(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// TestReplicateStore: an encrypted image pool to a directory: a copy cut
// after a few blocks leaves no manifest; the next run sends only the
// missing blocks; the replica opens with the same key, checks clean and
// reads both versions back; a run with nothing new sends nothing; a
// version can be left out (Select); a corrupt block is never sent.
func TestReplicateStore(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, true)
	keyFile := filepath.Join(filepath.Dir(s.p.Location()), "key")
	v1, v2, _ := testImages()
	m1, _ := ingest(t, s, v1, nil)
	m2, _ := ingest(t, s, v2, m1)
	total := 0
	s.p.ListObjects(ctx, func(pool.Digest, pool.ObjectInfo) error { total++; return nil })

	dst, err := pool.CreateDirBackend(filepath.Join(t.TempDir(), "replica"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	cut := &failAfter{Backend: dst}
	cut.n.Store(3)
	if _, err := s.Replicate(ctx, cut, ReplicateOptions{Concurrency: 1}); !errors.Is(err, errCut) {
		t.Fatalf("cut copy: %v", err)
	}
	if vs, _ := ReplicaVersions(ctx, dst); len(vs) != 0 {
		t.Fatalf("versions listed before their blocks: %v", vs)
	}
	before := countBlocks(t, dst)
	rep, err := s.Replicate(ctx, dst, ReplicateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep.String())
	if len(rep.Copied) != 2 || rep.Objects != total-before || before != 3 || rep.NewReplica {
		t.Fatalf("resumed copy: %+v; %d of %d blocks were there", rep, before, total)
	}
	r, err := Open(ctx, dst, pool.OpenOptions{ExpectID: s.p.ID(), KeyFile: keyFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := r.Check(ctx, pool.CheckOptions{ReadData: true}); err != nil || !c.OK() || c.Versions != 2 || c.ReadObjects != total {
		t.Fatalf("replica check: %s, %v", c.String(), err)
	}
	checkRead(t, r, m1, v1, false)
	checkRead(t, r, m2, v2, false)
	if rep, err := s.Replicate(ctx, dst, ReplicateOptions{}); err != nil || rep.Objects != 0 || rep.Present != 2 || len(rep.Copied) != 0 {
		t.Fatalf("nothing new: %+v, %v", rep, err)
	}

	// Select: only the second version, to a new target.
	dst2, _ := pool.CreateDirBackend(filepath.Join(t.TempDir(), "r2"))
	defer dst2.Close()
	rep, err = s.Replicate(ctx, dst2, ReplicateOptions{Select: func(m *Manifest) bool { return m.ID == m2.ID }})
	if err != nil || len(rep.Copied) != 1 || rep.Copied[0] != m2.Name+"/"+m2.ID || !rep.NewReplica {
		t.Fatalf("selected copy: %+v, %v", rep, err)
	}
	r2, _ := Open(ctx, dst2, pool.OpenOptions{KeyFile: keyFile}, nil)
	checkRead(t, r2, m2, v2, false)

	// A corrupt block at the source stops the copy and is named.
	d, _, _ := m1.Block(0)
	path := filepath.Join(s.p.Location(), filepath.FromSlash(pool.ObjectName(d)))
	raw, _ := os.ReadFile(path)
	raw[len(raw)-3] ^= 1
	os.WriteFile(path, raw, 0o600)
	dst3, _ := pool.CreateDirBackend(filepath.Join(t.TempDir(), "r3"))
	defer dst3.Close()
	_, err = s.Replicate(ctx, dst3, ReplicateOptions{})
	if !errors.Is(err, pool.ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte(d.String())) {
		t.Fatalf("corrupt source block: %v", err)
	}
	if _, err := dst3.Stat(ctx, pool.ObjectName(d)); !errors.Is(err, pool.ErrNotFound) {
		t.Fatalf("the corrupt block reached the replica: %v", err)
	}
	// Another pool is not a replica of this one.
	other := newStore(t, false)
	if _, err := other.Replicate(ctx, dst, ReplicateOptions{}); !errors.Is(err, pool.ErrNotReplica) {
		t.Fatalf("another pool's replica: %v", err)
	}
}

// TestDeleteVersionsOf: a replica's retention removes the versions of the
// placeholder snapshots it removed, and keeps versions naming none.
func TestDeleteVersionsOf(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, false)
	v1, _, _ := testImages()
	var ids []string
	for _, snap := range []string{"snap-a", "snap-b", ""} {
		m, _, err := s.IngestReaderAt(ctx, "vm1.disk", bytes.NewReader(v1), int64(len(v1)),
			IngestOptions{VersionOptions: VersionOptions{Snapshot: snap}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	gone, err := s.DeleteVersionsOf(ctx, func(snap string) bool { return snap == "snap-a" })
	if err != nil || len(gone) != 1 || gone[0] != "vm1.disk/"+ids[0] {
		t.Fatalf("deleted %v, %v", gone, err)
	}
	vs, _ := ReplicaVersions(ctx, s.p.Backend())
	if len(vs) != 2 || !vs["vm1.disk/"+ids[1]] || !vs["vm1.disk/"+ids[2]] {
		t.Fatalf("left %v", vs)
	}
}
