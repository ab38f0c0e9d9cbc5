package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// addDirUntil adds dir's walk to w and stops (as a killed process would)
// after stop entries; stop < 0 adds everything.
func addDirUntil(ctx context.Context, w *Writer, dir string, stop int) error {
	n := 0
	errStop := errors.New("stop")
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n == stop {
			return errStop
		}
		n++
		rel, _ := filepath.Rel(dir, path)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := entryFor(nil, path, fi)
		if e.Type != TypeFile {
			return w.Add(ctx, filepath.ToSlash(rel), e, nil)
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return w.Add(ctx, filepath.ToSlash(rel), e, f)
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// checkPartialAgainst checks that every entry of the checkpoint's tree
// exists in dir with the same type, mode and content, and returns how
// many non-directory entries it has.
func checkPartialAgainst(t *testing.T, ctx context.Context, p *Pool, d Digest, dir, rel string) int {
	t.Helper()
	es, err := p.ReadTree(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		path := filepath.Join(dir, rel, e.Name)
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatalf("checkpoint has %s, source not: %v", filepath.Join(rel, e.Name), err)
		}
		want := entryFor(t, path, fi)
		if want.Type != e.Type || want.Mode != e.Mode || want.Size != e.Size {
			t.Fatalf("%s: checkpoint %+v, source %+v", path, e, want)
		}
		switch e.Type {
		case TypeDir:
			n += checkPartialAgainst(t, ctx, p, e.Subtree, dir, filepath.Join(rel, e.Name))
		case TypeFile:
			n++
			cr, err := p.OpenContent(ctx, &e)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(cr)
			if err != nil {
				t.Fatal(err)
			}
			if w, _ := os.ReadFile(path); !bytes.Equal(got, w) {
				t.Fatalf("%s: checkpoint content differs", path)
			}
		default:
			n++
		}
	}
	return n
}

// TestWriterCheckpointSurvivesCrash: a writer that stops mid-walk after
// checkpoints (its process killed) leaves a partial snapshot that another
// process reads, checks and GCs without losing an object.
func TestWriterCheckpointSurvivesCrash(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "pool")
	b, err := CreateDirBackend(root)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Init(ctx, b, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	genTree(t, dir, 11, 300, 3<<20)
	var seen []*Manifest
	w, err := p.NewWriterWith(ctx, SnapshotMeta{Host: "h", Source: "s"}, WriterOptions{Checkpoint: CheckpointOptions{
		Files: 40, OnCheckpoint: func(m *Manifest) { seen = append(seen, m) }}})
	if err != nil {
		t.Fatal(err)
	}
	if err := addDirUntil(ctx, w, dir, 250); err != nil {
		t.Fatal(err)
	}
	if len(seen) < 3 {
		t.Fatalf("%d checkpoints after 250 entries every 40 files", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i].ID != w.ID() || seen[i].Files <= seen[i-1].Files {
			t.Fatalf("checkpoint %d: %+v after %+v", i, seen[i], seen[i-1])
		}
	}
	// "Kill": the writer is simply never finished. A new process (a fresh
	// Pool on the same directory) sees one snapshot: the last checkpoint.
	last := seen[len(seen)-1]
	b2, err := NewDirBackend(root)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Open(ctx, b2, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := p2.SnapshotIDs(ctx)
	if err != nil || len(ids) != 1 || ids[0] != w.ID() {
		t.Fatalf("snapshots after the kill: %v %v", ids, err)
	}
	m, err := p2.Snapshot(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != StatusPartial || !m.Checkpoint || m.Root != last.Root || m.Files != last.Files {
		t.Fatalf("checkpoint manifest %+v, last callback %+v", m, last)
	}
	if n := checkPartialAgainst(t, ctx, p2, m.Root, dir, "."); int64(n) != m.Files {
		t.Fatalf("checkpoint tree has %d files, manifest says %d", n, m.Files)
	}
	// The dead writer's lock goes stale; GC with no grace then sweeps all
	// it can and the checkpoint loses nothing.
	if err := b.Delete(ctx, lockNameOf(w)); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.GC(ctx, GCOptions{Grace: -1}); err != nil {
		t.Fatal(err)
	}
	rep, err := p2.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("check after GC: %+v %v", rep, err)
	}
	if n := checkPartialAgainst(t, ctx, p2, m.Root, dir, "."); int64(n) != m.Files {
		t.Fatalf("after GC the checkpoint tree has %d files, manifest says %d", n, m.Files)
	}
}

func lockNameOf(w *Writer) string { return w.lock.name }

// TestWriterCheckpointFinishReplaces: the final manifest replaces the
// checkpoints (one snapshot, same ID, complete) and equals the source.
func TestWriterCheckpointFinishReplaces(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	dir := t.TempDir()
	genTree(t, dir, 12, 200, 5<<20)
	n := 0
	w, err := p.NewWriterWith(ctx, SnapshotMeta{Host: "h", Source: "s"}, WriterOptions{Checkpoint: CheckpointOptions{
		Files: 25, Bytes: 1 << 20, OnCheckpoint: func(*Manifest) { n++ }}})
	if err != nil {
		t.Fatal(err)
	}
	if err := addDirUntil(ctx, w, dir, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := w.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("only %d checkpoints", n)
	}
	ids, _ := p.SnapshotIDs(ctx)
	if len(ids) != 1 || ids[0] != m.ID {
		t.Fatalf("snapshots %v, want only %s", ids, m.ID)
	}
	got, err := p.Snapshot(ctx, m.ID)
	if err != nil || got.Status != StatusComplete || got.Checkpoint || got.Root != m.Root {
		t.Fatalf("final manifest %+v %v", got, err)
	}
	compareSnapshot(t, ctx, p, got, dir)
	// Same tree as a writer without checkpoints: checkpoints change
	// nothing in the result.
	plain := backupDir(t, ctx, p, dir, "h", "plain")
	if plain.Root != m.Root {
		t.Fatalf("root with checkpoints %s, without %s", m.Root, plain.Root)
	}
	if _, err := p.GC(ctx, GCOptions{Grace: -1}); err != nil {
		t.Fatal(err)
	}
	if rep, err := p.Check(ctx, CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check: %+v %v", rep, err)
	}
}

// TestWriterCheckpointAbort: Abort removes the checkpoint manifest.
func TestWriterCheckpointAbort(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	dir := t.TempDir()
	genTree(t, dir, 13, 30)
	w, err := p.NewWriter(ctx, SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Checkpoint(ctx); err == nil || !strings.Contains(err.Error(), "nothing to checkpoint") {
		t.Fatalf("checkpoint before the root: %v", err)
	}
	if err := addDirUntil(ctx, w, dir, 20); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if !w.Checkpointed() {
		t.Fatal("Checkpointed is false after a checkpoint")
	}
	if ids, _ := p.SnapshotIDs(ctx); len(ids) != 1 {
		t.Fatalf("snapshots after a checkpoint: %v", ids)
	}
	w.Abort()
	if ids, _ := p.SnapshotIDs(ctx); len(ids) != 0 {
		t.Fatalf("snapshots after Abort: %v", ids)
	}
	if _, err := w.Checkpoint(ctx); err == nil {
		t.Fatal("checkpoint after Abort succeeded")
	}
}

// patReader yields n bytes of a repeating, poorly compressible pattern
// without holding them in memory.
type patReader struct {
	n, off int64
	fail   error // returned instead of EOF, when set
}

func (r *patReader) Read(b []byte) (int, error) {
	if r.off >= r.n {
		if r.fail != nil {
			return 0, r.fail
		}
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), r.n-r.off)]
	for i := range b {
		x := uint64(r.off+int64(i)) * 0x9e3779b97f4a7c15
		b[i] = byte(x>>56) ^ byte(x>>17)
	}
	r.off += int64(len(b))
	return len(b), nil
}

// TestWriterAddStream: a stream stores exactly what Add stores for the
// same bytes, at every size class, and a failed stream stores nothing.
func TestWriterAddStream(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	sizes := []int{0, 1, 100, 256 << 10, SmallFileMax - 1, SmallFileMax, SmallFileMax + 1, 3 << 20, 9<<20 + 77}
	w, err := p.NewWriter(ctx, SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(ctx, ".", Entry{Type: TypeDir, Mode: 0o755}, nil); err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		data := cdcRand(uint64(i)+100, n)
		if err := w.Add(ctx, fmt.Sprintf("add%02d", i), Entry{Type: TypeFile, Mode: 0o644, Size: int64(n)}, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		got, err := w.AddStream(ctx, fmt.Sprintf("str%02d", i), Entry{Type: TypeFile, Mode: 0o644, Size: 12345}, io.MultiReader(bytes.NewReader(data)))
		if err != nil || got != int64(n) {
			t.Fatalf("AddStream of %d bytes: %d, %v", n, got, err)
		}
	}
	// Much bigger than the writer's 16 MiB in-flight budget and its
	// chunking buffer: memory stays bounded, content intact.
	const big = 80 << 20
	if got, err := w.AddStream(ctx, "zbig", Entry{Type: TypeFile, Mode: 0o600}, &patReader{n: big}); err != nil || got != big {
		t.Fatalf("big stream: %d %v", got, err)
	}
	// A stream that fails mid-way (a dump tool exiting non-zero) is
	// rejected and leaves nothing; the writer goes on.
	boom := errors.New("pg_dump: exit status 1")
	_, err = w.AddStream(ctx, "zfail", Entry{Type: TypeFile}, &patReader{n: 6 << 20, fail: boom})
	if !errors.Is(err, ErrEntry) || !errors.Is(err, boom) {
		t.Fatalf("failing stream: %v", err)
	}
	_, err = w.AddStream(ctx, "zfail2", Entry{Type: TypeFile}, &patReader{n: 1000, fail: boom})
	if !errors.Is(err, ErrEntry) || !errors.Is(err, boom) {
		t.Fatalf("failing small stream: %v", err)
	}
	if _, err := w.AddStream(ctx, "zdir", Entry{Type: TypeDir}, bytes.NewReader(nil)); !errors.Is(err, ErrEntry) {
		t.Fatalf("AddStream of a directory: %v", err)
	}
	if err := w.Add(ctx, "zneg", Entry{Type: TypeFile, Size: -1}, bytes.NewReader(nil)); !errors.Is(err, ErrEntry) {
		t.Fatalf("Add with size -1: %v", err)
	}
	m, err := w.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		a := mustLookup(t, p, m.Root, fmt.Sprintf("add%02d", i))
		s := mustLookup(t, p, m.Root, fmt.Sprintf("str%02d", i))
		if a.Content != s.Content || a.Chunked != s.Chunked || s.Size != int64(n) {
			t.Fatalf("%d bytes: Add %v/%v, AddStream %v/%v size %d", n, a.Content, a.Chunked, s.Content, s.Chunked, s.Size)
		}
	}
	e := mustLookup(t, p, m.Root, "zbig")
	cr, err := p.OpenContent(ctx, &e)
	if err != nil {
		t.Fatal(err)
	}
	want, got := make([]byte, 1<<20), make([]byte, 1<<20)
	src := &patReader{n: big}
	for off := int64(0); off < big; off += 1 << 20 {
		io.ReadFull(src, want)
		if _, err := io.ReadFull(cr, got); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("big stream differs at %d: %v", off, err)
		}
	}
	for _, name := range []string{"zfail", "zfail2", "zdir", "zneg"} {
		if _, err := p.Lookup(ctx, m.Root, name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s stored after its failure: %v", name, err)
		}
	}
	if m.Files != int64(2*len(sizes)+1) {
		t.Fatalf("manifest counts %d files", m.Files)
	}
	if _, err := p.GC(ctx, GCOptions{Grace: -1}); err != nil {
		t.Fatal(err)
	}
	if rep, err := p.Check(ctx, CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check: %+v %v", rep, err)
	}
}

// TestWriterStoreContent: contents stored first (in any order) and added
// later by digest survive a GC in between and read back intact; the
// totals count each file once.
func TestWriterStoreContent(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	w, err := p.NewWriter(ctx, SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{0, 10, SmallFileMax, 6<<20 + 3}
	var stored []Entry
	var total int64
	for i, n := range sizes {
		e, err := w.StoreContent(ctx, bytes.NewReader(cdcRand(uint64(i)+7, n)))
		if err != nil || e.Size != int64(n) || (n > 0) == e.Content.IsZero() {
			t.Fatalf("StoreContent(%d bytes) = %+v, %v", n, e, err)
		}
		stored = append(stored, e)
		total += int64(n)
	}
	if _, err := w.StoreContent(ctx, &patReader{n: 3 << 20, fail: io.ErrClosedPipe}); !errors.Is(err, ErrEntry) {
		t.Fatalf("failing content: %v", err)
	}
	if st := w.Stats(); st.Bytes != 0 || st.Files != 0 {
		t.Fatalf("stored contents counted before their entries: %+v", st)
	}
	if _, err := p.GC(ctx, GCOptions{Grace: -1}); err != nil {
		t.Fatal(err)
	}
	// Add's reuse checks that the content is in the pool: wait for it.
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(ctx, ".", Entry{Type: TypeDir, Mode: 0o755}, nil); err != nil {
		t.Fatal(err)
	}
	for i := len(stored) - 1; i >= 0; i-- {
		e := stored[i]
		e.Mode = 0o644
		if err := w.Add(ctx, fmt.Sprintf("f%d", i), e, nil); err != nil {
			t.Fatal(err)
		}
	}
	m, err := w.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Bytes != total || m.Files != int64(len(sizes)) {
		t.Fatalf("manifest totals %d bytes %d files, want %d and %d", m.Bytes, m.Files, total, len(sizes))
	}
	for i, n := range sizes {
		e := mustLookup(t, p, m.Root, fmt.Sprintf("f%d", i))
		cr, err := p.OpenContent(ctx, &e)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(cr)
		if !bytes.Equal(got, cdcRand(uint64(i)+7, n)) {
			t.Fatalf("f%d differs", i)
		}
	}
	if rep, err := p.Check(ctx, CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check: %+v %v", rep, err)
	}
}
