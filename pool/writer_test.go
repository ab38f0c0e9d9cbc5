package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// structPool makes a fresh unencrypted pool in a temporary directory.
func structPool(t testing.TB) (*Pool, *DirBackend) {
	t.Helper()
	b, err := CreateDirBackend(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Init(context.Background(), b, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p, b
}

// genTree writes a deterministic test tree under dir: small text files,
// empty files, a few multi-chunk files, symlinks, a hard link, nested
// and empty directories.
func genTree(t testing.TB, dir string, seed uint64, nSmall int, bigSizes ...int) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < nSmall; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%02d", i%7), fmt.Sprintf("e%d", i%3))
		must(os.MkdirAll(sub, 0o755))
		var content []byte
		switch i % 5 {
		case 0:
			content = nil
		case 1:
			content = cdcRand(seed+uint64(i), 1+r.IntN(9000))
		default:
			content = []byte(strings.Repeat(fmt.Sprintf("line %d of file %d seed %d\n", r.IntN(100), i, seed), 1+r.IntN(200)))
		}
		must(os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%04d.txt", i)), content, 0o640))
	}
	for i, n := range bigSizes {
		data := cdcRand(seed*1000+uint64(i), n)
		must(os.WriteFile(filepath.Join(dir, fmt.Sprintf("big%d.bin", i)), data, 0o600))
	}
	must(os.MkdirAll(filepath.Join(dir, "empty", "deeper"), 0o700))
	must(os.Symlink("d00/e0", filepath.Join(dir, "link-rel")))
	must(os.Symlink("/etc/passwd", filepath.Join(dir, "link-abs")))
	must(os.WriteFile(filepath.Join(dir, "hard1"), []byte("hard linked\n"), 0o644))
	must(os.Link(filepath.Join(dir, "hard1"), filepath.Join(dir, "hard2")))
}

// entryFor builds a pool Entry from a local file.
func entryFor(t testing.TB, path string, fi fs.FileInfo) Entry {
	e := Entry{Mode: fi.Mode() & modeBits, ModTime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.UID, e.GID = st.Uid, st.Gid
		if st.Nlink > 1 && !fi.IsDir() {
			e.HardLink = st.Ino
		}
	}
	switch {
	case fi.IsDir():
		e.Type = TypeDir
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Type = TypeSymlink
		tgt, err := os.Readlink(path)
		if err != nil {
			t.Fatal(err)
		}
		e.Target = tgt
	default:
		e.Type = TypeFile
		e.Size = fi.Size()
	}
	return e
}

// backupDir snapshots dir with a minimal walk (a stand-in for the local
// puller, which lives in another package).
func backupDir(t testing.TB, ctx context.Context, p *Pool, dir, host, source string) *Manifest {
	t.Helper()
	w, err := p.NewWriter(ctx, SnapshotMeta{Host: host, Source: source})
	if err != nil {
		t.Fatal(err)
	}
	if err := addDir(ctx, w, dir); err != nil {
		w.Abort()
		t.Fatal(err)
	}
	m, err := w.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func addDir(ctx context.Context, w *Writer, dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
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
}

// compareSnapshot checks every file, dir and symlink of dir against the
// snapshot (content, mode, mtime, link target) and that nothing is extra.
func compareSnapshot(t testing.TB, ctx context.Context, p *Pool, m *Manifest, dir string) {
	t.Helper()
	seen := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		seen++
		fi, _ := d.Info()
		want := entryFor(t, path, fi)
		got, err := p.Lookup(ctx, m.Root, rel)
		if err != nil {
			return fmt.Errorf("lookup %s: %w", rel, err)
		}
		if rel == "." {
			return nil
		}
		if got.Type != want.Type || got.Mode != want.Mode || got.ModTime != want.ModTime || got.Target != want.Target || got.Size != want.Size || got.HardLink != want.HardLink {
			return fmt.Errorf("%s: got %+v, want %+v", rel, got, want)
		}
		if got.Type == TypeFile {
			wantData, _ := os.ReadFile(path)
			cr, err := p.OpenContent(ctx, &got)
			if err != nil {
				return err
			}
			gotData, err := io.ReadAll(cr)
			if err != nil {
				return fmt.Errorf("%s: read: %w", rel, err)
			}
			if !bytes.Equal(gotData, wantData) {
				return fmt.Errorf("%s: content differs (%d vs %d bytes)", rel, len(gotData), len(wantData))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	total := countTree(t, ctx, p, m.Root) + 1
	if total != seen {
		t.Fatalf("snapshot has %d entries, source %d", total, seen)
	}
}

func countTree(t testing.TB, ctx context.Context, p *Pool, d Digest) int {
	es, err := p.ReadTree(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	n := len(es)
	for _, e := range es {
		if e.Type == TypeDir {
			n += countTree(t, ctx, p, e.Subtree)
		}
	}
	return n
}

func TestWriterRoundTrip(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	src := t.TempDir()
	genTree(t, src, 1, 200, 3<<20, 9<<20+123)
	p.SetWriterConcurrency(1) // one worker: the pipeline must not deadlock
	m := backupDir(t, ctx, p, src, "web1", "data")
	if m.Status != StatusComplete || m.Files == 0 || m.Dirs == 0 || m.Bytes == 0 || m.BytesNew == 0 {
		t.Fatalf("manifest %+v", m)
	}
	compareSnapshot(t, ctx, p, m, src)
	m2, err := p.Snapshot(ctx, m.ID)
	if err != nil || m2.Root != m.Root || m2.Files != m.Files {
		t.Fatalf("Snapshot(%s) = %+v, %v", m.ID, m2, err)
	}
	// The 9 MiB file is chunked; the 3 MiB one may be one chunk or more.
	e, err := p.Lookup(ctx, m.Root, "big1.bin")
	if err != nil || !e.Chunked {
		t.Fatalf("big1.bin: %+v, %v", e, err)
	}
}

func TestWriterRandomReads(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	src := t.TempDir()
	data := cdcRand(42, 11<<20+5)
	os.WriteFile(filepath.Join(src, "f"), data, 0o644)
	m := backupDir(t, ctx, p, src, "h", "s")
	e, err := p.Lookup(ctx, m.Root, "f")
	if err != nil {
		t.Fatal(err)
	}
	cr, err := p.OpenContent(ctx, &e)
	if err != nil {
		t.Fatal(err)
	}
	if cr.Size() != int64(len(data)) {
		t.Fatalf("size %d", cr.Size())
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		off := r.Int64N(int64(len(data)))
		n := r.IntN(3 << 20)
		buf := make([]byte, n)
		got, err := cr.ReadAt(buf, off)
		want := min(n, len(data)-int(off))
		if got != want || (got < n && err != io.EOF) || (got == n && err != nil && err != io.EOF) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v; want %d", n, off, got, err, want)
		}
		if !bytes.Equal(buf[:got], data[off:off+int64(got)]) {
			t.Fatalf("ReadAt(%d, %d): wrong data", n, off)
		}
	}
	if pos, err := cr.Seek(-10, io.SeekEnd); err != nil || pos != int64(len(data))-10 {
		t.Fatalf("Seek = %d, %v", pos, err)
	}
	tail, _ := io.ReadAll(cr)
	if !bytes.Equal(tail, data[len(data)-10:]) {
		t.Fatal("tail after Seek differs")
	}
	// WriteTo (io.Copy) from the middle of a chunk, with read-ahead.
	for _, off := range []int64{0, 1234567, int64(len(data)) - 1, int64(len(data))} {
		cr.Seek(off, io.SeekStart)
		var out bytes.Buffer
		n, err := io.Copy(&out, cr)
		if err != nil || n != int64(len(data))-off || !bytes.Equal(out.Bytes(), data[off:]) {
			t.Fatalf("WriteTo from %d: %d, %v", off, n, err)
		}
	}
}

func TestWriterDedupUnchanged(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	src := t.TempDir()
	genTree(t, src, 2, 100, 5<<20)
	m1 := backupDir(t, ctx, p, src, "h", "s")
	m2 := backupDir(t, ctx, p, src, "h", "s")
	if m1.Root != m2.Root {
		t.Fatal("unchanged tree: root digests differ")
	}
	if m2.BytesNew != 0 {
		t.Fatalf("unchanged tree stored %d new bytes", m2.BytesNew)
	}
	before, _ := p.Lookup(ctx, m1.Root, "d01")
	os.WriteFile(filepath.Join(src, "d03", "e0", "new.txt"), []byte("new"), 0o644)
	m3 := backupDir(t, ctx, p, src, "h", "s")
	if m3.Root == m1.Root {
		t.Fatal("changed tree, same root")
	}
	after, _ := p.Lookup(ctx, m3.Root, "d01")
	if before.Subtree != after.Subtree || before.Subtree.IsZero() {
		t.Fatal("unchanged subtree d01 got a new digest")
	}
	c1, _ := p.Lookup(ctx, m1.Root, "d03")
	c3, _ := p.Lookup(ctx, m3.Root, "d03")
	if c1.Subtree == c3.Subtree {
		t.Fatal("changed subtree d03 kept its digest")
	}
	compareSnapshot(t, ctx, p, m3, src)
}

func TestWriterRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	w, err := p.NewWriter(ctx, SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	dir := Entry{Type: TypeDir, Mode: 0o755}
	file := func(s string) (Entry, io.Reader) {
		return Entry{Type: TypeFile, Mode: 0o644, Size: int64(len(s))}, strings.NewReader(s)
	}
	if err := w.Add(ctx, "a", dir, nil); !errors.Is(err, ErrEntry) {
		t.Fatalf("entry before root: %v", err)
	}
	if err := w.Add(ctx, ".", dir, nil); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"..", "../x", "/abs", "a//b", "a/", "./a", "a/./b", "nul\x00", "", "a/../../b"} {
		e, r := file("x")
		if err := w.Add(ctx, path, e, r); !errors.Is(err, ErrEntry) {
			t.Errorf("Add(%q) = %v, want ErrEntry", path, err)
		}
	}
	if err := w.Add(ctx, "a", dir, nil); err != nil {
		t.Fatal(err)
	}
	e, r := file("hello")
	if err := w.Add(ctx, "a/f", e, r); err != nil {
		t.Fatal(err)
	}
	e, r = file("again")
	if err := w.Add(ctx, "a/f", e, r); !errors.Is(err, ErrEntry) {
		t.Errorf("duplicate: %v", err)
	}
	if err := w.Add(ctx, "b", dir, nil); err != nil {
		t.Fatal(err)
	}
	// a is closed now: going back into it is out of walk order.
	e, r = file("late")
	if err := w.Add(ctx, "a/g", e, r); !errors.Is(err, ErrEntry) || !strings.Contains(err.Error(), "walk order") {
		t.Errorf("out of order: %v", err)
	}
	e, r = file("x")
	if err := w.Add(ctx, "nodir/f", e, r); !errors.Is(err, ErrEntry) {
		t.Errorf("missing parent: %v", err)
	}
	// Short and long reads are per-entry errors, not truncation.
	e = Entry{Type: TypeFile, Size: 10}
	if err := w.Add(ctx, "b/short", e, strings.NewReader("12345")); !errors.Is(err, ErrEntry) || !strings.Contains(err.Error(), "shorter") {
		t.Errorf("short read: %v", err)
	}
	e = Entry{Type: TypeFile, Size: 3}
	if err := w.Add(ctx, "b/long", e, strings.NewReader("12345")); !errors.Is(err, ErrEntry) || !strings.Contains(err.Error(), "longer") {
		t.Errorf("long read: %v", err)
	}
	big := cdcRand(5, 3<<20)
	e = Entry{Type: TypeFile, Size: int64(len(big)) + 100}
	if err := w.Add(ctx, "b/shortbig", e, bytes.NewReader(big)); !errors.Is(err, ErrEntry) {
		t.Errorf("short big read: %v", err)
	}
	e = Entry{Type: TypeFile, Size: int64(len(big)) - 100}
	if err := w.Add(ctx, "b/longbig", e, bytes.NewReader(big)); !errors.Is(err, ErrEntry) {
		t.Errorf("long big read: %v", err)
	}
	e = Entry{Type: TypeFile, Size: 4, Content: Digest{1, 2, 3}}
	if err := w.Add(ctx, "b/reused-missing", e, nil); !errors.Is(err, ErrContentMissing) || !errors.Is(err, ErrEntry) {
		t.Errorf("reuse of missing content: %v", err)
	}
	if err := w.Add(ctx, "b/badtype", Entry{Type: 42}, nil); !errors.Is(err, ErrEntry) {
		t.Errorf("bad type: %v", err)
	}
	w.RecordError("b/vanished", errors.New("no such file"))
	m, err := w.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != StatusPartial || m.ErrorCount != 1 || len(m.Errors) != 1 || !strings.Contains(m.Errors[0], "b/vanished") {
		t.Fatalf("manifest status %q errors %d %q", m.Status, m.ErrorCount, m.Errors)
	}
	es, _ := p.ReadTree(ctx, m.Root)
	if len(es) != 2 || es[0].Name != "a" || es[1].Name != "b" {
		t.Fatalf("root entries %+v", es)
	}
	ea, _ := p.Lookup(ctx, m.Root, "a/f")
	cr, _ := p.OpenContent(ctx, &ea)
	if b, _ := io.ReadAll(cr); string(b) != "hello" {
		t.Fatalf("a/f = %q", b)
	}
	if bs, _ := p.ReadTree(ctx, mustLookup(t, p, m.Root, "b").Subtree); len(bs) != 0 {
		t.Fatalf("b has %d entries; rejected ones leaked", len(bs))
	}
}

func mustLookup(t testing.TB, p *Pool, root Digest, path string) Entry {
	t.Helper()
	e, err := p.Lookup(context.Background(), root, path)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestWriterReuse(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	src := t.TempDir()
	genTree(t, src, 3, 20, 6<<20)
	m1 := backupDir(t, ctx, p, src, "h", "s")
	// Second snapshot reuses every file's content without reading it.
	w, err := p.NewWriter(ctx, SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(src, path)
		rel = filepath.ToSlash(rel)
		fi, _ := d.Info()
		e := entryFor(t, path, fi)
		if e.Type == TypeFile {
			prev := mustLookup(t, p, m1.Root, rel)
			e.Content, e.Chunked = prev.Content, prev.Chunked
		}
		return w.Add(ctx, rel, e, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := w.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Root != m1.Root || m2.Bytes != m1.Bytes {
		t.Fatalf("reused snapshot differs: %+v vs %+v", m2, m1)
	}
}

func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	p.SetWriterConcurrency(16)
	srcs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	for i, s := range srcs {
		genTree(t, s, uint64(10+i%2), 60, 2<<20) // two sources share content
	}
	ms := make([]*Manifest, len(srcs))
	errc := make(chan error, len(srcs))
	for i, s := range srcs {
		go func() {
			w, err := p.NewWriter(ctx, SnapshotMeta{Host: fmt.Sprintf("host%d", i), Source: "s"})
			if err == nil {
				stop := make(chan struct{})
				defer close(stop)
				go func() { // progress polling, as a UI does
					for {
						select {
						case <-stop:
							return
						default:
							_ = w.Stats()
						}
					}
				}()
				err = addDir(ctx, w, s)
				if err == nil {
					ms[i], err = w.Finish(ctx)
				} else {
					w.Abort()
				}
			}
			errc <- err
		}()
	}
	for range srcs {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range srcs {
		compareSnapshot(t, ctx, p, ms[i], s)
	}
	a, b := mustLookup(t, p, ms[0].Root, "big0.bin"), mustLookup(t, p, ms[2].Root, "big0.bin")
	if a.Content != b.Content || !a.Chunked {
		t.Fatal("identical content written concurrently has different digests")
	}
}

func TestWriterEncryptedPool(t *testing.T) {
	ctx := context.Background()
	b, err := CreateDirBackend(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Init(ctx, b, InitOptions{Encrypt: true, KeyFile: filepath.Join(t.TempDir(), "key")})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	genTree(t, src, 8, 30, 3<<20)
	m := backupDir(t, ctx, p, src, "h", "s")
	compareSnapshot(t, ctx, p, m, src)
	if rep, err := p.Check(ctx, CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check: %s, %v", rep.String(), err)
	}
	// Names on disk are keyed digests: the plain digest of a file is not there.
	data, _ := os.ReadFile(filepath.Join(src, "hard1"))
	if _, err := os.Stat(objectFile(b, plainSum(data))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("plain digest visible in an encrypted pool: %v", err)
	}
}

func TestWriterLockHeartbeat(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	saved := lockRefresh
	lockRefresh = 5 * time.Millisecond
	defer func() { lockRefresh = saved }()
	w, err := p.NewWriter(ctx, SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	stat := func() (ObjectInfo, error) { return p.Backend().Stat(ctx, w.lock.name) }
	first, err := stat()
	if err != nil {
		t.Fatalf("writer lock %s: %v", w.lock.name, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		oi, err := stat()
		if err == nil && oi.ModTime.After(first.ModTime) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writer lock never refreshed")
		}
		time.Sleep(time.Millisecond)
	}
	w.Abort()
	if _, err := stat(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lock after Abort: %v", err)
	}
}

func TestNewWriterRejectsBadNames(t *testing.T) {
	p, _ := structPool(t)
	for _, m := range []SnapshotMeta{{Host: "", Source: "s"}, {Host: "h", Source: ""}, {Host: "a/b", Source: "s"}, {Host: "h", Source: ".."}} {
		if w, err := p.NewWriter(context.Background(), m); err == nil {
			w.Abort()
			t.Errorf("NewWriter(%+v) accepted", m)
		}
	}
}
