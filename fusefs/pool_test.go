package fusefs

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// storeDir stores the local tree src as one snapshot through the pool's
// Writer, with the metadata a FUSE mount must show.
func storeDir(t *testing.T, ctx context.Context, p *pool.Pool, host, source, src string, start time.Time) {
	t.Helper()
	w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: host, Source: source, Start: start})
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		e := pool.Entry{Mode: info.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky),
			UID: st.Uid, GID: st.Gid, ModTime: info.ModTime().UnixNano()}
		var r io.Reader
		switch {
		case info.IsDir():
			e.Type = pool.TypeDir
		case info.Mode()&fs.ModeSymlink != 0:
			e.Type = pool.TypeSymlink
			if e.Target, err = os.Readlink(path); err != nil {
				return err
			}
		default:
			e.Type, e.Size = pool.TypeFile, info.Size()
			if st.Nlink > 1 {
				e.HardLink = st.Ino
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		return w.Add(ctx, filepath.ToSlash(rel), e, r)
	})
	if err != nil {
		w.Abort()
		t.Fatal(err)
	}
	if _, err := w.Finish(ctx); err != nil {
		t.Fatal(err)
	}
}

// writeSrc makes a source tree on disk from the test tree's snapshot
// contents.
func writeSrc(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, data, 0o644))
	}
}

// TestMountPool mounts a real pool's restore tree.
func TestMountPool(t *testing.T) {
	needFUSE(t)
	ctx := context.Background()
	dir := t.TempDir()
	b, err := pool.OpenBackend(ctx, filepath.Join(dir, "pool"), pool.OpenBackendOptions{Create: true})
	must(t, err)
	p, err := pool.Init(ctx, b, pool.InitOptions{})
	must(t, err)

	src := filepath.Join(dir, "src")
	files := map[string][]byte{
		"etc/hostname":         []byte("web1\n"),
		"home/alice/notes.txt": []byte("notes\n"),
		"var/big.bin":          randBytes(3, 9<<20+77),
		"empty":                nil,
	}
	writeSrc(t, src, files)
	must(t, os.Symlink("../../etc/hostname", filepath.Join(src, "home/alice/hn")))
	must(t, os.Link(filepath.Join(src, "etc/hostname"), filepath.Join(src, "home/alice/hl")))
	must(t, os.Chmod(filepath.Join(src, "home/alice"), 0o750))
	t1 := time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC)
	storeDir(t, ctx, p, "web1", "root", src, t1)

	mp, _ := mount(t, p.FS(ctx))
	snapName := t1.Format(pool.SnapshotTimeFormat)
	if got := names(t, filepath.Join(mp, "web1")); !slices.Equal(got, []string{snapName, "latest"}) {
		t.Fatalf("web1 = %v", got)
	}
	root := filepath.Join(mp, "web1", "latest", "root")
	for name, data := range files {
		f, err := os.Open(filepath.Join(root, name))
		must(t, err)
		got := digest(t, f)
		f.Close()
		if want := digest(t, bytes.NewReader(data)); got != want {
			t.Errorf("%s: sha256 %s, want %s", name, got, want)
		}
	}
	var a, h syscall.Stat_t
	must(t, syscall.Stat(filepath.Join(root, "etc/hostname"), &a))
	must(t, syscall.Stat(filepath.Join(root, "home/alice/hl"), &h))
	if a.Ino != h.Ino || a.Nlink < 2 {
		t.Errorf("hard link: ino %d/%d nlink %d", a.Ino, h.Ino, a.Nlink)
	}
	var d syscall.Stat_t
	must(t, syscall.Stat(filepath.Join(root, "home/alice"), &d))
	if d.Mode != syscall.S_IFDIR|0o750 {
		t.Errorf("alice mode %o", d.Mode)
	}
	if target, err := os.Readlink(filepath.Join(root, "home/alice/hn")); err != nil || target != "../../etc/hostname" {
		t.Errorf("readlink %q %v", target, err)
	}
	if err := fstest.TestFS(os.DirFS(filepath.Join(mp, "web1", snapName, "root", "home")), "alice/notes.txt", "alice/hl"); err != nil {
		t.Error(err)
	}
	// Tail of the big file.
	f, err := os.Open(filepath.Join(root, "var/big.bin"))
	must(t, err)
	buf := make([]byte, 1000)
	n, err := f.ReadAt(buf, int64(len(files["var/big.bin"])-1000))
	f.Close()
	if err != nil || n != 1000 || string(buf) != string(files["var/big.bin"][len(files["var/big.bin"])-1000:]) {
		t.Errorf("tail read: %d, %v", n, err)
	}

	// A snapshot written while mounted appears without a remount.
	must(t, os.WriteFile(filepath.Join(src, "etc/hostname"), []byte("web1 v2\n"), 0o644))
	t2 := t1.Add(time.Hour)
	storeDir(t, ctx, p, "web1", "root", src, t2)
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(mp, "web1/latest/root/etc/hostname"))
		got := names(t, filepath.Join(mp, "web1"))
		if string(b) == "web1 v2\n" && slices.Equal(got, []string{snapName, t2.Format(pool.SnapshotTimeFormat), "latest"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second snapshot not visible: %v %q", got, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The old snapshot is unchanged.
	if b, err := os.ReadFile(filepath.Join(mp, "web1", snapName, "root/etc/hostname")); err != nil || string(b) != "web1\n" {
		t.Errorf("old snapshot: %q %v", b, err)
	}
}
