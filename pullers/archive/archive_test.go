package archive

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
)

type member struct {
	name, link string
	typ        byte
	data       []byte
	mode       int64
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mkTar(t testing.TB, ms []member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, m := range ms {
		h := &tar.Header{Name: m.name, Typeflag: m.typ, Mode: m.mode, Linkname: m.link, ModTime: mt, Uid: 1000, Gid: 1000, Uname: "alice", Gname: "staff"}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if m.typ == tar.TypeReg {
			h.Size = int64(len(m.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if m.typ == tar.TypeReg {
			tw.Write(m.data)
		}
	}
	tw.Close()
	return buf.Bytes()
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func zst(t testing.TB, b []byte) []byte {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeAll(b, nil)
}

func xzc(t testing.TB, b []byte) []byte {
	testenv.Need(t, "xz")
	cmd := exec.Command("xz", "-c", "-1")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mkZip(t testing.TB, ms []member) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range ms {
		h := &zip.FileHeader{Name: m.name, Method: zip.Deflate, Modified: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
		switch m.typ {
		case tar.TypeDir:
			h.SetMode(0o750 | 1<<31)
		case tar.TypeSymlink:
			h.SetMode(0o777 | 1<<27)
		default:
			h.SetMode(0o640)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if m.typ == tar.TypeSymlink {
			w.Write([]byte(m.link))
		} else {
			w.Write(m.data)
		}
	}
	zw.Close()
	return buf.Bytes()
}

func newWriter(t testing.TB) (*pool.Pool, *pool.Writer) {
	t.Helper()
	b, err := pool.CreateDirBackend(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.Init(context.Background(), b, pool.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := p.NewWriter(context.Background(), pool.SnapshotMeta{Host: "h", Source: "imported"})
	if err != nil {
		t.Fatal(err)
	}
	return p, w
}

func importBytes(t testing.TB, data []byte, o Options) (*pool.Pool, *pool.Manifest, Stats, error) {
	t.Helper()
	ctx := context.Background()
	p, w := newWriter(t)
	st, err := Import(ctx, bytes.NewReader(data), w, o)
	if err != nil {
		if s := w.Stats(); s.Files != 0 || s.Dirs != 0 {
			t.Errorf("a refused archive added %+v", s)
		}
		w.Abort()
		return p, nil, st, err
	}
	m, err := w.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return p, m, st, nil
}

func sum(b []byte) string { h := sha256.Sum256(b); return fmt.Sprintf("%x", h) }

// goodMembers: nested dirs given out of order and implied, a multi-chunk
// file, an empty file, a symlink inside the tree, a hard link.
func goodMembers() []member {
	return []member{
		{name: "./", typ: tar.TypeDir, mode: 0o750},
		{name: "./a/x.txt", typ: tar.TypeReg, data: []byte("x in a\n")},
		{name: "./b/", typ: tar.TypeDir, mode: 0o700},
		{name: "./b/big.bin", typ: tar.TypeReg, data: randBytes(3, 3<<20+17)},
		{name: "./a/", typ: tar.TypeDir, mode: 0o711}, // after its child
		{name: "./a/deep/er/y.txt", typ: tar.TypeReg, data: []byte("deep\n"), mode: 0o4755},
		{name: "./empty", typ: tar.TypeReg},
		{name: "./b/link", typ: tar.TypeSymlink, link: "../a/x.txt"},
		{name: "./a/hard", typ: tar.TypeLink, link: "./a/x.txt"},
	}
}

func readAt(t testing.TB, p *pool.Pool, m *pool.Manifest, path string) (pool.Entry, []byte) {
	t.Helper()
	ctx := context.Background()
	e, err := p.Lookup(ctx, m.Root, path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if e.Type != pool.TypeFile {
		return e, nil
	}
	cr, err := p.OpenContent(ctx, &e)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(cr)
	if err != nil {
		t.Fatal(err)
	}
	return e, b
}

// TestImportFormats: the same tree through tar, tar.gz, tar.zst, tar.xz
// and zip gives the same contents (by digest) and the metadata each
// format carries.
func TestImportFormats(t *testing.T) {
	ms := goodMembers()
	raw := mkTar(t, ms)
	var zipMs []member
	for _, m := range ms {
		if m.typ != tar.TypeLink && m.name != "./" {
			zipMs = append(zipMs, member{name: strings.TrimPrefix(m.name, "./"), typ: m.typ, data: m.data, link: m.link})
		}
	}
	for _, tc := range []struct {
		format string
		data   []byte
	}{
		{"tar", raw}, {"tar+gzip", gz(raw)}, {"tar+zstd", zst(t, raw)}, {"tar+xz", xzc(t, raw)}, {"zip", mkZip(t, zipMs)},
	} {
		t.Run(tc.format, func(t *testing.T) {
			p, m, st, err := importBytes(t, tc.data, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if st.Format != tc.format {
				t.Fatalf("format %q, want %q", st.Format, tc.format)
			}
			for _, mm := range zipMs {
				path := strings.TrimSuffix(mm.name, "/")
				e, data := readAt(t, p, m, path)
				switch mm.typ {
				case tar.TypeReg:
					if e.Type != pool.TypeFile || sum(data) != sum(mm.data) || e.Size != int64(len(mm.data)) {
						t.Errorf("%s: %v %d bytes sha %s, want %s", path, e.Type, len(data), sum(data), sum(mm.data))
					}
				case tar.TypeDir:
					if e.Type != pool.TypeDir {
						t.Errorf("%s: %v, want a directory", path, e.Type)
					}
				case tar.TypeSymlink:
					if e.Type != pool.TypeSymlink || e.Target != mm.link {
						t.Errorf("%s: %v -> %q", path, e.Type, e.Target)
					}
				}
			}
			if e, _ := readAt(t, p, m, "a/deep/er"); e.Type != pool.TypeDir || e.Mode != 0o755 {
				t.Errorf("implied directory: %+v", e)
			}
			if tc.format != "zip" {
				if e, _ := readAt(t, p, m, "a"); e.Mode != 0o711 {
					t.Errorf("a: mode %v, want the archive's 0711 (given after its child)", e.Mode)
				}
				if root := m.RootDir(); root.Mode != 0o750 {
					t.Errorf("root mode %v, want 0750", root.Mode)
				}
				if e, _ := readAt(t, p, m, "a/deep/er/y.txt"); e.Mode&0o4000 == 0 && e.Mode.String()[0:1] != "u" || e.UID != 1000 || e.User != "alice" {
					t.Errorf("y.txt metadata: %+v", e)
				}
				h, hd := readAt(t, p, m, "a/hard")
				x, _ := readAt(t, p, m, "a/x.txt")
				if string(hd) != "x in a\n" || h.HardLink == 0 || h.HardLink != x.HardLink {
					t.Errorf("hard link: %+v (target %+v)", h, x)
				}
			}
			if rep, err := p.Check(context.Background(), pool.CheckOptions{ReadData: true}); err != nil || !rep.OK() {
				t.Fatalf("check: %+v %v", rep, err)
			}
		})
	}
}

// TestImportHostile: every hostile archive is refused with a clear
// error and adds nothing.
func TestImportHostile(t *testing.T) {
	zeros := make([]byte, 64<<20)
	bombTar := mkTar(t, []member{{name: "zeros", typ: tar.TypeReg, data: zeros}})
	cases := []struct {
		name string
		data []byte
		o    Options
		want string
	}{
		{"dotdot", mkTar(t, []member{{name: "../evil", typ: tar.TypeReg, data: []byte("x")}}), Options{}, `"../evil" leaves the tree`},
		{"dotdot inside", mkTar(t, []member{{name: "a/../../evil", typ: tar.TypeReg, data: []byte("x")}}), Options{}, "leaves the tree"},
		{"absolute", mkTar(t, []member{{name: "/etc/cron.d/evil", typ: tar.TypeReg, data: []byte("x")}}), Options{}, `absolute path "/etc/cron.d/evil"`},
		{"backslash", mkTar(t, []member{{name: `..\..\evil`, typ: tar.TypeReg, data: []byte("x")}}), Options{}, "backslash"},
		{"empty element", mkTar(t, []member{{name: "a//b", typ: tar.TypeReg, data: []byte("x")}}), Options{}, "empty"},
		{"symlink out", mkTar(t, []member{{name: "a/l", typ: tar.TypeSymlink, link: "../../etc/shadow"}}), Options{}, "out of the tree"},
		{"symlink absolute", mkTar(t, []member{{name: "l", typ: tar.TypeSymlink, link: "/etc/shadow"}}), Options{}, "absolute path"},
		{"hard link out", mkTar(t, []member{{name: "h", typ: tar.TypeLink, link: "/etc/shadow"}}), Options{}, "hard link"},
		{"hard link missing", mkTar(t, []member{{name: "h", typ: tar.TypeLink, link: "nothere"}}), Options{}, "not a regular file of the archive"},
		{"duplicate", mkTar(t, []member{{name: "f", typ: tar.TypeReg, data: []byte("1")}, {name: "./f", typ: tar.TypeReg, data: []byte("2")}}), Options{}, `"f" appears twice`},
		{"file and dir", mkTar(t, []member{{name: "f", typ: tar.TypeReg, data: []byte("1")}, {name: "f/g", typ: tar.TypeReg, data: []byte("2")}}), Options{}, `inside "f"`},
		{"dir then file", mkTar(t, []member{{name: "d/g", typ: tar.TypeReg, data: []byte("2")}, {name: "d", typ: tar.TypeReg, data: []byte("1")}}), Options{}, `"d" appears twice`},
		{"gzip bomb", gz(bombTar), Options{}, "more than 200:1"},
		{"zstd bomb", zst(t, bombTar), Options{}, "more than 200:1"},
		{"zip bomb", mkZip(t, []member{{name: "zeros", typ: tar.TypeReg, data: zeros}}), Options{}, "zip bomb"},
		{"zip bomb lying header", lyingZip(t, zeros), Options{}, `member "zeros"`},
		{"total cap", mkTar(t, []member{{name: "r", typ: tar.TypeReg, data: randBytes(5, 3<<20)}}), Options{MaxBytes: 1 << 20}, "more than 1048576 bytes"},
		{"zip absolute", mkZip(t, []member{{name: "/abs", typ: tar.TypeReg, data: []byte("x")}}), Options{}, "absolute path"},
		{"zip dotdot", mkZip(t, []member{{name: "a/../../x", typ: tar.TypeReg, data: []byte("x")}}), Options{}, "leaves the tree"},
		{"zip symlink out", mkZip(t, []member{{name: "l", typ: tar.TypeSymlink, link: "../x"}}), Options{}, "out of the tree"},
		{"zip duplicate", mkZip(t, []member{{name: "f", typ: tar.TypeReg, data: []byte("1")}, {name: "f", typ: tar.TypeReg, data: []byte("2")}}), Options{}, "appears twice"},
		{"too many", mkTar(t, []member{{name: "a", typ: tar.TypeReg}, {name: "b", typ: tar.TypeReg}, {name: "c", typ: tar.TypeReg}}), Options{MaxEntries: 2}, "more than 2 members"},
		{"fifo root", mkTar(t, []member{{name: ".", typ: tar.TypeFifo}}), Options{}, "root"},
		{"empty", nil, Options{}, "empty input"},
		{"garbage", []byte("this is not an archive at all"), Options{}, "not a tar"},
		{"truncated gzip", gz(mkTar(t, goodMembers()))[:2000], Options{}, "archive refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := importBytes(t, tc.data, tc.o)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Import = %v, want ErrRefused mentioning %q", err, tc.want)
			}
		})
	}
}

// lyingZip is a zip whose headers claim a small uncompressed size.
func lyingZip(t testing.TB, data []byte) []byte {
	b := mkZip(t, []member{{name: "zeros", typ: tar.TypeReg, data: data}})
	// Patch the uncompressed size in the central directory header (at
	// offset 24 of the "PK\x01\x02" record) and the local header (22).
	n := uint32(1000)
	put := func(at int) { b[at], b[at+1], b[at+2], b[at+3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24) }
	put(22)
	if i := bytes.Index(b, []byte("PK\x01\x02")); i >= 0 {
		put(i + 24)
	}
	return b
}

// TestImportXZMissing: without the xz program the error says what to
// install.
func TestImportXZMissing(t *testing.T) {
	_, _, _, err := importBytes(t, []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 0}, Options{XZ: "/nonexistent/xz"})
	if err == nil || !strings.Contains(err.Error(), "xz-utils") {
		t.Fatalf("Import = %v", err)
	}
}

// fuzzSink checks the Sink contract as Import drives it, without a pool.
type fuzzSink struct {
	t    *testing.T
	seen map[string]bool
}

func (s *fuzzSink) Add(ctx context.Context, path string, e pool.Entry, r io.Reader) error {
	if r != nil {
		s.t.Fatalf("%s: Add with a reader", path)
	}
	if path != "." {
		if _, err := cleanName(path); err != nil || path != strings.Trim(path, "/") {
			s.t.Fatalf("Add of a bad path %q", path)
		}
		dir := filepath.Dir(path)
		if !s.seen[dir] {
			s.t.Fatalf("%q added before its parent", path)
		}
	}
	if s.seen[path] {
		s.t.Fatalf("%q added twice", path)
	}
	if e.Type == pool.TypeSymlink && (strings.HasPrefix(e.Target, "/") || strings.HasPrefix(filepath.Join(filepath.Dir(path), e.Target), "..")) {
		s.t.Fatalf("%q: symlink out of the tree %q", path, e.Target)
	}
	s.seen[path] = true
	return nil
}
func (s *fuzzSink) RecordError(string, error)       {}
func (s *fuzzSink) Flush(ctx context.Context) error { return nil }
func (s *fuzzSink) StoreContent(ctx context.Context, r io.Reader) (pool.Entry, error) {
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return pool.Entry{}, fmt.Errorf("%w: %w", pool.ErrEntry, err)
	}
	return pool.Entry{Type: pool.TypeFile, Size: n}, nil
}

// FuzzImport: no input makes Import panic, add a bad path, add a child
// before its parent, or a symlink out of the tree.
func FuzzImport(f *testing.F) {
	ms := goodMembers()
	f.Add(mkTar(f, ms))
	f.Add(gz(mkTar(f, ms[:3])))
	f.Add(mkZip(f, []member{{name: "a/b", typ: tar.TypeReg, data: []byte("x")}, {name: "l", typ: tar.TypeSymlink, link: "a/b"}}))
	f.Add(mkTar(f, []member{{name: "../x", typ: tar.TypeReg}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &fuzzSink{t: t, seen: map[string]bool{}}
		Import(context.Background(), bytes.NewReader(data), s, Options{MaxBytes: 16 << 20, XZ: "/nonexistent", TempDir: t.TempDir()})
	})
}
