package rsync_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers/pullertest"
	"github.com/cairn-backup/cairn/pullers/rsync"
)

// TestDelta changes 8 bytes of a 64 MiB file: the second pull, with the
// first snapshot as the basis, receives under 1 MiB and stores the new
// content.
func TestDelta(t *testing.T) {
	s := testenv.Rsyncd(t)
	data := make([]byte, 64<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(data); i += 8 {
		v := r.Uint64()
		for k := range 8 {
			data[i+k] = byte(v >> (8 * k))
		}
	}
	big := filepath.Join(s.Dir, "big")
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "small"), []byte("unchanged\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	os.Chtimes(big, old, old)
	ctx := context.Background()
	p := pullertest.NewPool(t)
	src := daemonSource(s, s.Module, "/")

	pl := rsync.New()
	m1, err := pullOnce(t, p, pl, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := pl.BytesReceived()
	t.Logf("first pull: %d bytes received", first)
	if first < 64<<20 {
		t.Fatalf("first pull received %d bytes, less than the file", first)
	}

	copy(data[40<<20+12345:], "CHANGED!")
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	newer := old.Add(time.Hour)
	os.Chtimes(big, newer, newer)

	pl = rsync.New()
	m2, err := pullOnce(t, p, pl, src, basisPrevious{pullertest.PoolPrevious{Pool: p, Root: m1.Root}})
	if err != nil {
		t.Fatal(err)
	}
	got := pl.BytesReceived()
	t.Logf("delta pull: %d bytes received for 8 changed bytes in 64 MiB", got)
	if got >= 1<<20 {
		t.Errorf("delta pull received %d bytes, want < 1 MiB", got)
	}
	if m2.ErrorCount != 0 {
		t.Fatalf("errors: %q", m2.Errors)
	}
	b, err := fs.ReadFile(p.SnapshotFS(ctx, m2), "big")
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(b) != sha256.Sum256(data) || !bytes.Equal(b[40<<20:40<<20+20000], data[40<<20:40<<20+20000]) {
		t.Fatal("the reconstructed file differs from the source")
	}
	st, _ := fs.Stat(p.SnapshotFS(ctx, m2), "big")
	if !st.ModTime().Equal(newer) {
		t.Errorf("mtime %v, want %v", st.ModTime(), newer)
	}

	// Without a basis the whole file crosses the wire again.
	copy(data[1000:], "AGAIN!!!")
	os.WriteFile(big, data, 0o644)
	os.Chtimes(big, old, old)
	pl = rsync.New()
	m3, err := pullOnce(t, p, pl, src, pullertest.PoolPrevious{Pool: p, Root: m2.Root})
	if err != nil {
		t.Fatal(err)
	}
	if pl.BytesReceived() < 64<<20 {
		t.Errorf("pull without a basis received only %d bytes", pl.BytesReceived())
	}
	b, _ = fs.ReadFile(p.SnapshotFS(ctx, m3), "big")
	if !bytes.Equal(b, data) {
		t.Fatal("whole-file pull differs from the source")
	}
	rep, err := p.Check(ctx, pool.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("pool check: %v %s", err, rep.String())
	}
}
