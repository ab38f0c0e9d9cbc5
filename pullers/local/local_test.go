package local

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

func pull(t *testing.T, src string, s *memSink, prev pullers.Previous, excludes []string, opts map[string]string) pullers.Progress {
	t.Helper()
	var last pullers.Progress
	j := &pullers.Job{
		Host:     "test",
		Source:   pullers.Source{Method: Method, Name: "src", Path: src, Excludes: excludes, Options: opts},
		Sink:     s,
		Previous: prev,
		Progress: func(p pullers.Progress) { last = p },
	}
	if err := New().Pull(context.Background(), j); err != nil {
		t.Fatalf("Pull: %v", err)
	}
	return last
}

func write(t *testing.T, p string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func randData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// oddNames are names a walker must store verbatim.
var oddNames = []string{
	"caf\u00e9",  // NFC
	"cafe\u0301", // NFD of the same word: a different name
	"new\nline",
	`back\slash`,
	"-leading-dash",
	"--",
	" spaces ",
	"\xff\xfe not utf-8",
	"*?[glob]",
	strings.Repeat("n", 255),
	strings.Repeat("é", 127), // 254 bytes of 2-byte runes
}

// posixACL builds a system.posix_acl_access value: user::rw- user:1000:r--
// group::r-- mask::r-- other::---.
func posixACL() []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, 2)
	add := func(tag, perm uint16, id uint32) {
		b = binary.LittleEndian.AppendUint16(b, tag)
		b = binary.LittleEndian.AppendUint16(b, perm)
		b = binary.LittleEndian.AppendUint32(b, id)
	}
	add(0x01, 6, 0xffffffff)
	add(0x02, 4, 1000)
	add(0x04, 4, 0xffffffff)
	add(0x10, 4, 0xffffffff)
	add(0x20, 0, 0xffffffff)
	return b
}

func TestPullTree(t *testing.T) {
	root := t.TempDir()
	src := filepath.Join(root, "src")
	write(t, filepath.Join(root, "outside"), []byte("secret outside the source"), 0o600)
	want := map[string][]byte{}
	for _, n := range oddNames {
		data := []byte("file " + n)
		write(t, filepath.Join(src, "odd", n), data, 0o644)
		want["odd/"+n] = data
	}
	big := randData(1, 3<<20+17)
	write(t, filepath.Join(src, "big.bin"), big, 0o640)
	want["big.bin"] = big
	write(t, filepath.Join(src, "empty"), nil, 0o600)
	want["empty"] = []byte{}
	write(t, filepath.Join(src, "setuid"), []byte("#!/bin/sh\n"), 0o755|fs.ModeSetuid)
	want["setuid"] = []byte("#!/bin/sh\n")
	must(t, os.MkdirAll(filepath.Join(src, "emptydir"), 0o700))
	must(t, os.MkdirAll(filepath.Join(src, "sticky"), 0o755))
	must(t, os.Chmod(filepath.Join(src, "sticky"), 0o777|fs.ModeSticky))
	write(t, filepath.Join(src, "sub", "h1"), []byte("hard"), 0o644)
	want["sub/h1"] = []byte("hard")
	must(t, os.Link(filepath.Join(src, "sub", "h1"), filepath.Join(src, "sub", "h2")))
	must(t, os.Link(filepath.Join(src, "sub", "h1"), filepath.Join(src, "h3")))
	links := map[string]string{
		"dangling":    "does/not/exist",
		"abs":         "/etc/passwd",
		"out":         "../outside",
		"dirlink":     "sub",
		"sub/up":      "../..",
		"odd/newlink": "new\nline",
	}
	for l, target := range links {
		must(t, os.Symlink(target, filepath.Join(src, l)))
	}
	must(t, unix.Mkfifo(filepath.Join(src, "fifo"), 0o620))
	must(t, os.Chmod(filepath.Join(src, "fifo"), 0o620))
	haveDev := unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))) == nil
	haveXattr := unix.Setxattr(filepath.Join(src, "empty"), "user.cairn", []byte("v\x00binary"), 0) == nil
	haveACL := unix.Setxattr(filepath.Join(src, "sub", "h1"), "system.posix_acl_access", posixACL(), 0) == nil
	t.Logf("device nodes: %v, user xattrs: %v, POSIX ACLs: %v", haveDev, haveXattr, haveACL)
	mtime := time.Unix(1_600_000_000, 123_456_789)
	must(t, os.Chtimes(filepath.Join(src, "big.bin"), mtime, mtime))
	must(t, unix.Lutimes(filepath.Join(src, "abs"), []unix.Timeval{{Sec: 1_500_000_000}, {Sec: 1_500_000_000, Usec: 42}}))

	s := newMemSink(t)
	prog := pull(t, src, s, nil, nil, nil)
	if len(s.errs) != 0 {
		t.Fatalf("per-file errors: %v", s.errs)
	}

	// Every path exactly once, nothing below a symlink, nothing outside.
	var wantPaths []string
	must(t, filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		must(t, err)
		rel, _ := filepath.Rel(src, p)
		wantPaths = append(wantPaths, filepath.ToSlash(rel))
		return nil
	}))
	got := slices.Clone(s.order)
	slices.Sort(got)
	slices.Sort(wantPaths)
	if !slices.Equal(got, wantPaths) {
		t.Fatalf("paths:\n got %q\nwant %q", got, wantPaths)
	}
	if prog.Files != int64(len(wantPaths)) {
		t.Errorf("progress files = %d, want %d", prog.Files, len(wantPaths))
	}
	var wantBytes int64
	for _, d := range want {
		wantBytes += int64(len(d))
	}
	wantBytes += 4 * 2 // h2 and h3 are read again
	if prog.Bytes != wantBytes {
		t.Errorf("progress bytes = %d, want %d", prog.Bytes, wantBytes)
	}

	for p, data := range want {
		if !bytes.Equal(s.data[p], data) && !(len(data) == 0 && s.entries[p].Size == 0) {
			t.Errorf("%q: content differs (%d bytes, want %d)", p, len(s.data[p]), len(data))
		}
	}
	// Metadata matches lstat for every entry.
	for _, p := range s.order {
		e := s.entries[p]
		var st unix.Stat_t
		must(t, unix.Lstat(filepath.Join(src, p), &st))
		if e.Type != fileType(st.Mode) || e.Mode != fileMode(st.Mode) || e.UID != st.Uid || e.GID != st.Gid || e.ModTime != st.Mtim.Nano() {
			t.Errorf("%q: entry %+v does not match lstat mode %o uid %d gid %d mtime %d", p, e, st.Mode, st.Uid, st.Gid, st.Mtim.Nano())
		}
		if e.Type == pool.TypeFile && e.Size != st.Size {
			t.Errorf("%q: size %d, want %d", p, e.Size, st.Size)
		}
		if p != "." && e.Name != filepath.Base(p) {
			t.Errorf("%q: name %q", p, e.Name)
		}
	}
	if e := s.entries["big.bin"]; e.ModTime != mtime.UnixNano() || e.Mode != 0o640 {
		t.Errorf("big.bin: mtime %d mode %v", e.ModTime, e.Mode)
	}
	if e := s.entries["abs"]; e.ModTime != time.Unix(1_500_000_000, 42_000).UnixNano() {
		t.Errorf("symlink mtime %d (the link's own, not the target's)", e.ModTime)
	}
	if e := s.entries["setuid"]; e.Mode != 0o755|fs.ModeSetuid {
		t.Errorf("setuid mode %v", e.Mode)
	}
	if e := s.entries["sticky"]; e.Mode != 0o777|fs.ModeSticky || e.Type != pool.TypeDir {
		t.Errorf("sticky dir %v %v", e.Type, e.Mode)
	}
	if e := s.entries["."]; e.Type != pool.TypeDir {
		t.Errorf("root entry %+v", e)
	}
	if e := s.entries["odd/"+strings.Repeat("n", 255)]; e.Size != int64(len("file ")+255) {
		t.Errorf("255-byte name: %+v", e)
	}
	if u := s.entries["big.bin"].User; os.Geteuid() == 0 && u != "root" {
		t.Errorf("owner name %q, want root", u)
	}
	for l, target := range links {
		e := s.entries[l]
		if e.Type != pool.TypeSymlink || e.Target != target {
			t.Errorf("%q: %v -> %q, want symlink -> %q", l, e.Type, e.Target, target)
		}
	}
	if p := s.paths("dirlink/"); len(p) != 0 {
		t.Errorf("followed a symlink: %q", p)
	}
	h1, h2, h3 := s.entries["sub/h1"].HardLink, s.entries["sub/h2"].HardLink, s.entries["h3"].HardLink
	if h1 == 0 || h1 != h2 || h1 != h3 {
		t.Errorf("hard links: ids %d %d %d", h1, h2, h3)
	}
	for _, p := range []string{"big.bin", "empty", "sub", "abs"} {
		if s.entries[p].HardLink != 0 {
			t.Errorf("%q: hard link id %d without links", p, s.entries[p].HardLink)
		}
	}
	if e := s.entries["fifo"]; e.Type != pool.TypeFIFO || e.Mode != 0o620 {
		t.Errorf("fifo: %v %v", e.Type, e.Mode)
	}
	if haveDev {
		if e := s.entries["null"]; e.Type != pool.TypeCharDev || e.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("char device: %v rdev %x", e.Type, e.Rdev)
		}
	}
	if haveXattr {
		if v := s.entries["empty"].Xattrs["user.cairn"]; string(v) != "v\x00binary" {
			t.Errorf("xattr user.cairn = %q", v)
		}
	}
	if haveACL {
		if v := s.entries["sub/h1"].Xattrs["system.posix_acl_access"]; !bytes.Equal(v, posixACL()) {
			t.Errorf("posix ACL xattr = %x, want %x", v, posixACL())
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestExcludes(t *testing.T) {
	src := t.TempDir()
	for _, p := range []string{"a.tmp", "keep", "cache/x", "sub/cache/y", "sub/keep.tmp/z", "sub/skipme/q", "skipme/kept", "deep/a/b.log"} {
		write(t, filepath.Join(src, p), []byte(p), 0o644)
	}
	s := newMemSink(t)
	pull(t, src, s, nil, []string{"*.tmp", "cache", "/sub/skipme", "./deep/*/*.log"}, nil)
	got := slices.Clone(s.order)
	slices.Sort(got)
	want := []string{".", "deep", "deep/a", "keep", "skipme", "skipme/kept", "sub"}
	if !slices.Equal(got, want) {
		t.Errorf("with excludes got %q, want %q", got, want)
	}
}

func TestBadOptions(t *testing.T) {
	src := t.TempDir()
	for _, tc := range []struct {
		name string
		src  pullers.Source
		want string
	}{
		{"bad pattern", pullers.Source{Path: src, Excludes: []string{"a["}}, "exclude pattern"},
		{"bad option", pullers.Source{Path: src, Options: map[string]string{"one_file_system": "maybe"}}, "one_file_system"},
		{"missing source", pullers.Source{Path: filepath.Join(src, "nope")}, "no such file"},
		{"file source", pullers.Source{Path: "/etc/hostname"}, "not a directory"},
		{"no path", pullers.Source{}, "no source path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := New().Pull(context.Background(), &pullers.Job{Source: tc.src, Sink: newMemSink(t)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestIncrementalSkip(t *testing.T) {
	src := t.TempDir()
	const n = 50
	for i := range n {
		write(t, filepath.Join(src, "d", string(rune('a'+i%26))+string(rune('a'+i/26))), randData(uint64(i), 100+i*997), 0o644)
	}
	write(t, filepath.Join(src, "empty"), nil, 0o644)
	first := newMemSink(t)
	p1 := pull(t, src, first, nil, nil, nil)
	if first.reads != n || p1.Skipped != 0 {
		t.Fatalf("first pull: %d reads, %d skipped", first.reads, p1.Skipped)
	}

	// Change one file's content and mtime, one only its mtime, add one.
	changed := filepath.Join(src, "d", "aa")
	write(t, changed, []byte("changed"), 0o644)
	touched := filepath.Join(src, "d", "ba")
	must(t, os.Chtimes(touched, time.Now(), time.Unix(1_700_000_000, 5)))
	write(t, filepath.Join(src, "d", "new"), []byte("new"), 0o644)

	second := newMemSink(t)
	p2 := pull(t, src, second, first, nil, nil)
	if second.reads != 3 {
		t.Errorf("second pull read %d files, want 3 (changed, touched, new)", second.reads)
	}
	if p2.Skipped != n-2 {
		t.Errorf("skipped %d, want %d", p2.Skipped, n-2)
	}
	for p, e := range second.entries {
		if e.Type != pool.TypeFile || e.Size == 0 {
			continue
		}
		if _, read := second.data[p]; !read && e.Content != first.entries[p].Content {
			t.Errorf("%q: skipped but content %x differs from previous %x", p, e.Content, first.entries[p].Content)
		}
	}
	if string(second.data["d/aa"]) != "changed" {
		t.Errorf("changed file content %q", second.data["d/aa"])
	}
	if p2.Bytes != p1.Bytes-int64(100)+int64(len("changed"))+3 {
		t.Errorf("progress bytes %d (first %d): skipped bytes must count", p2.Bytes, p1.Bytes)
	}
}

func TestPerFileErrors(t *testing.T) {
	src := t.TempDir()
	for _, p := range []string{"a", "b-vanishes", "c-shrinks", "d-grows", "e", "f-gone-dir/x"} {
		write(t, filepath.Join(src, p), bytes.Repeat([]byte(p), 1000), 0o644)
	}
	s := newMemSink(t)
	s.onAdd = func(p string) {
		switch p {
		case "a":
			must(t, os.Remove(filepath.Join(src, "b-vanishes")))
		case "c-shrinks":
			must(t, os.Truncate(filepath.Join(src, p), 10))
		case "d-grows":
			f, err := os.OpenFile(filepath.Join(src, p), os.O_APPEND|os.O_WRONLY, 0)
			must(t, err)
			_, err = f.Write([]byte("more"))
			must(t, err)
			must(t, f.Close())
		case "e":
			must(t, os.RemoveAll(filepath.Join(src, "f-gone-dir")))
		}
	}
	var last pullers.Progress
	err := New().Pull(context.Background(), &pullers.Job{
		Source: pullers.Source{Path: src}, Sink: s,
		Progress: func(p pullers.Progress) { last = p },
	})
	if err != nil {
		t.Fatalf("Pull failed on per-file errors: %v", err)
	}
	for p, want := range map[string]string{
		"b-vanishes": "vanished",
		"c-shrinks":  "shrank to 10 of 9000",
		"d-grows":    "grew while being read",
		"f-gone-dir": "vanished",
	} {
		if got := s.errText(p); !strings.Contains(got, want) || !strings.Contains(got, src) {
			t.Errorf("error for %q = %q, want it to name the path and say %q", p, got, want)
		}
	}
	if _, ok := s.entries["c-shrinks"]; ok {
		t.Errorf("a file that shrank was stored")
	}
	if d := s.data["d-grows"]; len(d) != 7000 || !bytes.Equal(d, bytes.Repeat([]byte("d-grows"), 1000)) {
		t.Errorf("grown file: stored %d bytes, want its first 7000", len(d))
	}
	if _, ok := s.entries["e"]; !ok {
		t.Errorf("walk stopped after per-file errors: %q", s.order)
	}
	if last.Errors != 4 {
		t.Errorf("progress errors = %d, want 4", last.Errors)
	}
}

func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads everything; TestPerFileErrors covers per-file errors as root")
	}
	src := t.TempDir()
	write(t, filepath.Join(src, "locked"), []byte("x"), 0o000)
	write(t, filepath.Join(src, "closed/inner"), []byte("x"), 0o644)
	must(t, os.Chmod(filepath.Join(src, "closed"), 0o000))
	t.Cleanup(func() { os.Chmod(filepath.Join(src, "closed"), 0o755) })
	write(t, filepath.Join(src, "z"), []byte("z"), 0o644)
	s := newMemSink(t)
	pull(t, src, s, nil, nil, nil)
	for _, p := range []string{"locked", "closed"} {
		if !strings.Contains(s.errText(p), "permission denied") {
			t.Errorf("%q: error %q", p, s.errText(p))
		}
	}
	if e, ok := s.entries["closed"]; !ok || e.Mode != 0 {
		t.Errorf("unreadable directory not kept with its metadata: %+v", e)
	}
	if _, ok := s.entries["z"]; !ok {
		t.Errorf("walk stopped")
	}
}

func TestSinkFailureFailsPull(t *testing.T) {
	src := t.TempDir()
	write(t, filepath.Join(src, "a"), []byte("a"), 0o644)
	write(t, filepath.Join(src, "b"), []byte("b"), 0o644)
	s := newMemSink(t)
	boom := errors.New("disk full")
	s.failAdd = func(p string, _ pool.Entry, _ io.Reader) error {
		if p == "a" {
			return boom
		}
		return nil
	}
	err := New().Pull(context.Background(), &pullers.Job{Source: pullers.Source{Path: src}, Sink: s})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "store a") {
		t.Fatalf("err = %v", err)
	}
	if _, ok := s.entries["b"]; ok {
		t.Error("pull went on after the sink failed")
	}
}

func TestRejectedEntries(t *testing.T) {
	src := t.TempDir()
	for _, p := range []string{"a", "bad/x", "bad/y", "c"} {
		write(t, filepath.Join(src, p), []byte(p), 0o644)
	}
	s := newMemSink(t)
	s.failAdd = func(p string, _ pool.Entry, _ io.Reader) error {
		if p == "a" || p == "bad" {
			return fmt.Errorf("%w: %q: no", pool.ErrEntry, p)
		}
		return nil
	}
	pull(t, src, s, nil, nil, nil)
	if got := slices.Sorted(maps.Keys(s.entries)); !slices.Equal(got, []string{".", "c"}) {
		t.Errorf("stored %q, want . and c", got)
	}
	for _, p := range []string{"a", "bad"} {
		if !errors.Is(s.errs[p], pool.ErrEntry) {
			t.Errorf("%q: recorded %v", p, s.errs[p])
		}
	}
	if len(s.errs) != 2 {
		t.Errorf("errors %v: the children of a rejected directory must not be visited", s.errs)
	}
}

// A skipped file whose previous content is gone from the pool is read
// again (the heal path).
func TestSkipContentMissing(t *testing.T) {
	src := t.TempDir()
	write(t, filepath.Join(src, "a"), []byte("aaa"), 0o644)
	write(t, filepath.Join(src, "b"), []byte("bbb"), 0o644)
	first := newMemSink(t)
	pull(t, src, first, nil, nil, nil)
	s := newMemSink(t)
	s.failAdd = func(p string, _ pool.Entry, r io.Reader) error {
		if p == "a" && r == nil {
			return fmt.Errorf("%w: %q: %w", pool.ErrEntry, p, pool.ErrContentMissing)
		}
		return nil
	}
	prog := pull(t, src, s, first, nil, nil)
	if string(s.data["a"]) != "aaa" || s.reads != 1 || prog.Skipped != 1 || len(s.errs) != 0 {
		t.Errorf("a read %q, %d reads, %d skipped, errors %v", s.data["a"], s.reads, prog.Skipped, s.errs)
	}
}

func TestCancel(t *testing.T) {
	src := t.TempDir()
	for i := range 100 {
		write(t, filepath.Join(src, "f", string(rune('A'+i%50)), "x"), []byte("x"), 0o644)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newMemSink(t)
	err := New().Pull(ctx, &pullers.Job{Source: pullers.Source{Path: src}, Sink: s, Progress: func(p pullers.Progress) {
		if p.Files == 10 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if len(s.order) > 11 {
		t.Errorf("%d entries after cancel at 10", len(s.order))
	}
}

func TestOneFileSystem(t *testing.T) {
	src := t.TempDir()
	mnt := filepath.Join(src, "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a tmpfs here (%v)", err)
		}
		t.Skipf("cannot mount a tmpfs here (%v)", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	write(t, filepath.Join(mnt, "inside"), []byte("x"), 0o644)
	write(t, filepath.Join(src, "z"), []byte("z"), 0o644)

	s := newMemSink(t)
	pull(t, src, s, nil, nil, map[string]string{"one_file_system": "true"})
	if _, ok := s.entries["mnt"]; !ok {
		t.Error("mount point not kept")
	}
	if _, ok := s.entries["mnt/inside"]; ok {
		t.Error("crossed into another file system")
	}
	s = newMemSink(t)
	pull(t, src, s, nil, nil, nil)
	if _, ok := s.entries["mnt/inside"]; !ok {
		t.Error("without the option the mount is not walked")
	}
}

func TestRegistered(t *testing.T) {
	p, err := pullers.Get(Method)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(*Puller); !ok {
		t.Fatalf("pullers.Get(%q) = %T", Method, p)
	}
}
