package fusefs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
)

const childEnv = "CAIRN_FUSEFS_TEST_CHILD"

func TestMain(m *testing.M) {
	// Re-executed by TestStaleMount: mount, report, and wait to be killed.
	if mp := os.Getenv(childEnv); mp != "" {
		l := &liveFS{m: testTree()}
		if _, err := Mount(context.Background(), mp, l, Options{}); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		select {}
	}
	testenv.KillLeftovers()
	os.Exit(m.Run())
}

// needFUSE fails (under CI=true) or skips when a kernel FUSE mount is
// impossible here.
func needFUSE(t *testing.T) {
	t.Helper()
	testenv.Need(t, "fusermount3")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("FUSE: %v", err)
		}
		t.Skipf("FUSE: %v", err)
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("FUSE tests need root (/dev/fuse is 0600 here)")
		}
		t.Skip("FUSE tests need root")
	}
}

func mount(t *testing.T, fsys fs.FS) (string, *Server) {
	t.Helper()
	needFUSE(t)
	mp := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Mount(ctx, mp, fsys, Options{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := s.Unmount(); err != nil {
			t.Error(err)
		}
		if ok, err := Mounted(mp); err != nil || ok {
			t.Errorf("after unmount: mounted=%v err=%v", ok, err)
		}
	})
	return mp, s
}

func digest(t *testing.T, r io.Reader) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestMountReadOnlyTree(t *testing.T) {
	l := &liveFS{m: testTree()}
	mp, _ := mount(t, l)
	s1 := filepath.Join(mp, "web1", snap1, "root")

	t.Run("listing", func(t *testing.T) {
		if got, want := names(t, mp), []string{"db1", "web1"}; !slices.Equal(got, want) {
			t.Errorf("root = %v, want %v", got, want)
		}
		if got, want := names(t, filepath.Join(mp, "web1")), []string{snap1, "latest"}; !slices.Equal(got, want) {
			t.Errorf("web1 = %v, want %v", got, want)
		}
		if got, want := names(t, filepath.Join(s1, "home/alice")), []string{"link-a", "notes.txt", "rel", "sub"}; !slices.Equal(got, want) {
			t.Errorf("alice = %v, want %v", got, want)
		}
	})

	t.Run("stat", func(t *testing.T) {
		for _, tc := range []struct {
			path       string
			mode       uint32
			size       int64
			uid, gid   uint32
			nlink      uint64
			exactMtime bool
		}{
			{"etc/hostname", syscall.S_IFREG | 0o644, 5, 0, 0, 1, true},
			{"etc/shadow", syscall.S_IFREG | 0o640, 19, 0, 42, 1, true},
			{"home/alice/notes.txt", syscall.S_IFREG | 0o600, int64(len("snapshot " + snap1 + "\n")), 1000, 1000, 1, true},
			{"home/alice", syscall.S_IFDIR | 0o750, 0, 1000, 1000, 3, true},
			{"bin/suid", syscall.S_IFREG | 0o755 | syscall.S_ISUID, 12, 0, 0, 1, true},
			{"tmp", syscall.S_IFDIR | 0o777 | syscall.S_ISVTX, 0, 0, 0, 2, true},
			{"etc/localtime", syscall.S_IFLNK | 0o777, int64(len("/usr/share/zoneinfo/UTC")), 0, 0, 1, true},
			{"var/big.bin", syscall.S_IFREG | 0o644, bigSize, 0, 0, 1, true},
			{"empty", syscall.S_IFREG | 0o644, 0, 0, 0, 1, true},
		} {
			var st syscall.Stat_t
			if err := syscall.Lstat(filepath.Join(s1, tc.path), &st); err != nil {
				t.Fatal(err)
			}
			if st.Mode != tc.mode || st.Size != tc.size || st.Uid != tc.uid || st.Gid != tc.gid || st.Nlink != tc.nlink {
				t.Errorf("%s: mode %o size %d uid %d gid %d nlink %d; want %o %d %d %d %d",
					tc.path, st.Mode, st.Size, st.Uid, st.Gid, st.Nlink, tc.mode, tc.size, tc.uid, tc.gid, tc.nlink)
			}
			if got := time.Unix(st.Mtim.Unix()); !got.Equal(mtime) {
				t.Errorf("%s: mtime %v, want %v", tc.path, got, mtime)
			}
			if st.Ino < 2 {
				t.Errorf("%s: ino %d", tc.path, st.Ino)
			}
		}
	})

	t.Run("deterministic inodes", func(t *testing.T) {
		var st syscall.Stat_t
		p := filepath.Join(s1, "etc/hostname")
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if want := hash64("web1/" + snap1 + "/root/etc/hostname"); st.Ino != want {
			t.Errorf("ino %d, want %d", st.Ino, want)
		}
	})

	t.Run("hard links share an inode", func(t *testing.T) {
		var a, b, c syscall.Stat_t
		must(t, syscall.Stat(filepath.Join(s1, "home/alice/link-a"), &a))
		must(t, syscall.Stat(filepath.Join(s1, "home/alice/sub/link-b"), &b))
		must(t, syscall.Stat(filepath.Join(mp, "db1", snap1, "root/home/alice/link-a"), &c))
		if a.Ino != b.Ino || a.Nlink < 2 || b.Nlink < 2 {
			t.Errorf("link-a ino %d nlink %d, link-b ino %d nlink %d", a.Ino, a.Nlink, b.Ino, b.Nlink)
		}
		if c.Ino == a.Ino {
			t.Errorf("hard-link ids of different snapshots share inode %d", c.Ino)
		}
		// Also through the directory listing (d_ino).
		ents, err := os.ReadDir(filepath.Join(s1, "home/alice"))
		must(t, err)
		for _, e := range ents {
			if e.Name() == "link-a" {
				info, err := e.Info()
				must(t, err)
				if ino := info.Sys().(*syscall.Stat_t).Ino; ino != a.Ino {
					t.Errorf("readdir ino %d, stat %d", ino, a.Ino)
				}
			}
		}
	})

	t.Run("symlinks", func(t *testing.T) {
		for p, want := range map[string]string{
			filepath.Join(mp, "web1/latest"):    snap1,
			filepath.Join(s1, "etc/localtime"):  "/usr/share/zoneinfo/UTC",
			filepath.Join(s1, "home/alice/rel"): "notes.txt",
		} {
			got, err := os.Readlink(p)
			if err != nil || got != want {
				t.Errorf("readlink %s = %q, %v; want %q", p, got, err, want)
			}
		}
		b, err := os.ReadFile(filepath.Join(mp, "web1/latest/root/home/alice/rel"))
		if err != nil || string(b) != "snapshot "+snap1+"\n" {
			t.Errorf("through latest and rel: %q, %v", b, err)
		}
	})

	t.Run("xattrs", func(t *testing.T) {
		p := filepath.Join(s1, "home/alice/notes.txt")
		buf := make([]byte, 64)
		n, err := syscall.Getxattr(p, "user.color", buf)
		if err != nil || string(buf[:n]) != "blue" {
			t.Errorf("getxattr = %q, %v", buf[:n], err)
		}
		n, err = syscall.Listxattr(p, buf)
		if err != nil || string(buf[:n]) != "user.color\x00user.empty\x00" {
			t.Errorf("listxattr = %q, %v", buf[:n], err)
		}
		if _, err := syscall.Getxattr(p, "user.missing", buf); !errors.Is(err, syscall.ENODATA) {
			t.Errorf("missing xattr: %v", err)
		}
	})

	t.Run("content digests", func(t *testing.T) {
		m := l.cur()
		checked := 0
		for _, name := range slices.Sorted(maps.Keys(m)) {
			if !m[name].Mode.IsRegular() {
				continue
			}
			f, err := os.Open(filepath.Join(mp, name))
			must(t, err)
			got := digest(t, f)
			f.Close()
			if want := digest(t, bytes.NewReader(m[name].Data)); got != want {
				t.Errorf("%s: sha256 %s, want %s", name, got, want)
			}
			checked++
		}
		if checked != 15 {
			t.Errorf("only %d files checked", checked)
		}
	})

	t.Run("tail reads only the end", func(t *testing.T) {
		f, err := os.Open(filepath.Join(s1, "var/big.bin"))
		must(t, err)
		defer f.Close()
		before := l.readAt.Load() + l.readSeq.Load()
		buf := make([]byte, 4096)
		n, err := f.ReadAt(buf, bigSize-int64(len(buf)))
		must(t, err)
		read := l.readAt.Load() + l.readSeq.Load() - before
		want := l.cur()["web1/"+snap1+"/root/var/big.bin"].Data[bigSize-4096:]
		if n != 4096 || !bytes.Equal(buf, want) {
			t.Errorf("tail: %d bytes, equal=%v", n, bytes.Equal(buf[:n], want))
		}
		// The kernel may read ahead, but never more than a few MiB of a
		// 24 MiB file, and never from the start.
		if read > 2<<20 || l.readSeq.Load() != 0 {
			t.Errorf("tail of %d bytes read %d bytes from the tree (sequential %d)", bigSize, read, l.readSeq.Load())
		}
	})

	t.Run("concurrent random reads", func(t *testing.T) {
		data := l.cur()["web1/"+snap1+"/root/var/big.bin"].Data
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for g := range 8 {
			wg.Go(func() {
				f, err := os.Open(filepath.Join(s1, "var/big.bin"))
				if err != nil {
					errs <- err
					return
				}
				defer f.Close()
				r := rand.New(rand.NewPCG(uint64(g), 1))
				buf := make([]byte, 70000)
				for range 40 {
					off := r.Int64N(bigSize)
					n, err := f.ReadAt(buf, off)
					if err != nil && err != io.EOF {
						errs <- err
						return
					}
					if !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
						errs <- fmt.Errorf("goroutine %d: wrong bytes at %d", g, off)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("every write is EROFS", func(t *testing.T) {
		file := filepath.Join(s1, "etc/hostname")
		d := filepath.Join(s1, "etc")
		for name, op := range map[string]func() error{
			"create":        func() error { f, err := os.Create(filepath.Join(d, "new")); closeIf(f); return err },
			"open rw":       func() error { f, err := os.OpenFile(file, os.O_RDWR, 0); closeIf(f); return err },
			"open wr":       func() error { f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0); closeIf(f); return err },
			"truncate":      func() error { return os.Truncate(file, 0) },
			"mkdir":         func() error { return os.Mkdir(filepath.Join(d, "x"), 0o755) },
			"mkdir top":     func() error { return os.Mkdir(filepath.Join(mp, "newhost"), 0o755) },
			"unlink":        func() error { return syscall.Unlink(file) },
			"rmdir":         func() error { return syscall.Rmdir(filepath.Join(s1, "tmp")) },
			"rename":        func() error { return os.Rename(file, filepath.Join(d, "moved")) },
			"link":          func() error { return os.Link(file, filepath.Join(d, "hl")) },
			"symlink":       func() error { return os.Symlink("x", filepath.Join(d, "sl")) },
			"mknod":         func() error { return syscall.Mkfifo(filepath.Join(d, "fifo"), 0o644) },
			"chmod":         func() error { return os.Chmod(file, 0o777) },
			"chown":         func() error { return os.Chown(file, 1, 1) },
			"utimes":        func() error { return os.Chtimes(file, time.Now(), time.Now()) },
			"setxattr":      func() error { return syscall.Setxattr(file, "user.x", []byte("1"), 0) },
			"rmxattr":       func() error { return syscall.Removexattr(filepath.Join(s1, "home/alice/notes.txt"), "user.color") },
			"unlink latest": func() error { return syscall.Unlink(filepath.Join(mp, "web1/latest")) },
		} {
			if err := op(); !errors.Is(err, syscall.EROFS) {
				t.Errorf("%s: %v, want EROFS", name, err)
			}
		}
		if got := string(l.cur()["web1/"+snap1+"/root/etc/hostname"].Data); got != "web1\n" {
			t.Errorf("content changed: %q", got)
		}
	})

	t.Run("mount is read-only in the mount table", func(t *testing.T) {
		opts := mountOptions(t, mp)
		if !slices.Contains(strings.Split(opts, ","), "ro") {
			t.Errorf("mount options %q lack ro", opts)
		}
	})

	t.Run("new snapshot appears without remount", func(t *testing.T) {
		if names(t, filepath.Join(mp, "web1"))[0] != snap1 {
			t.Fatal("precondition")
		}
		m := testTree(snap2)
		l.set(m)
		deadline := time.Now().Add(20 * time.Second)
		for {
			got := names(t, filepath.Join(mp, "web1"))
			target, _ := os.Readlink(filepath.Join(mp, "web1/latest"))
			b, _ := os.ReadFile(filepath.Join(mp, "web1/latest/root/home/alice/notes.txt"))
			if slices.Equal(got, []string{snap1, snap2, "latest"}) && target == snap2 && string(b) == "snapshot "+snap2+"\n" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("web1 = %v, latest -> %q, notes %q", got, target, b)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestFSConformance runs testing/fstest over the mounted tree, which
// checks listings, stats, reads and seeks against each other.
func TestFSConformance(t *testing.T) {
	l := &liveFS{m: testTree()}
	mp, _ := mount(t, l)
	if err := fstest.TestFS(os.DirFS(filepath.Join(mp, "db1")), snap1+"/root/etc/hostname", snap1+"/root/home/alice/notes.txt"); err != nil {
		t.Fatal(err)
	}
}

func TestStaleMount(t *testing.T) {
	needFUSE(t)
	mp := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mp)
	out, err := cmd.StdoutPipe()
	must(t, err)
	cmd.Stderr = os.Stderr
	must(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q, %v", line, err)
	}
	if got := names(t, mp); !slices.Equal(got, []string{"db1", "web1"}) {
		t.Errorf("child mount lists %v", got)
	}
	must(t, cmd.Process.Kill())
	cmd.Wait()

	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = os.ReadDir(mp)
		if errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGKILL readdir = %v, want ENOTCONN", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	must(t, ClearStale(mp))
	if ok, _ := Mounted(mp); ok {
		t.Fatal("stale mount still in mountinfo after ClearStale")
	}
	// ClearStale leaves healthy paths alone.
	must(t, ClearStale(mp))
	must(t, ClearStale(filepath.Join(mp, "missing")))

	// Mount also clears a stale mount by itself: make a new one, kill it.
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mp)
	out, err = cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("child: %q", line)
	}
	cmd.Process.Kill()
	cmd.Wait()

	ctx, cancel := context.WithCancel(context.Background())
	s, err := Mount(ctx, mp, &liveFS{m: testTree()}, Options{})
	must(t, err)
	b, err := os.ReadFile(filepath.Join(mp, "db1/latest/root/etc/hostname"))
	if err != nil || string(b) != "db1\n" {
		t.Errorf("remounted read: %q, %v", b, err)
	}
	// Cancelling the context unmounts.
	cancel()
	select {
	case <-s.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("no unmount 30s after cancel")
	}
	must(t, s.Unmount())
	if ok, err := Mounted(mp); ok || err != nil {
		t.Errorf("after cancel: mounted=%v, %v", ok, err)
	}
}

func mountOptions(t *testing.T, mp string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	must(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && unescapeMountinfo(f[4]) == mp {
			return f[5]
		}
	}
	t.Fatalf("%s not in mountinfo", mp)
	return ""
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func closeIf(f *os.File) {
	if f != nil {
		f.Close()
	}
}

func TestInodeHelpers(t *testing.T) {
	if got := snapshotScope("h/s/a/b"); got != "h/s" {
		t.Errorf("scope = %q", got)
	}
	if got := snapshotScope("h"); got != "" {
		t.Errorf("scope = %q", got)
	}
	if hash64("a") == hash64("b") || hash64("a", "b") == hash64("ab") || hash64("x")>>63 != 0 {
		t.Error("hash64")
	}
	// makedev(8, 1) = 0x801; makedev(259, 65536) exercises the high bits.
	if got := newEncodeDev(0x801); got != 0x801 {
		t.Errorf("encode(8,1) = %#x", got)
	}
	dev := uint64(259&0xfff)<<8 | uint64(259&^0xfff)<<32 | uint64(65536&0xff) | uint64(65536&^0xff)<<12
	if got, want := newEncodeDev(dev), uint32(65536&0xff)|259<<8|uint32(65536&^0xff)<<12; got != want {
		t.Errorf("encode(259,65536) = %#x, want %#x", got, want)
	}
	if got := unescapeMountinfo(`/tmp/a\040b\134c`); got != `/tmp/a b\c` {
		t.Errorf("unescape = %q", got)
	}
}

// TestBusyUnmount unmounts while a file is open: the mount leaves the
// namespace at once, the open file stays readable, and the server stops
// when it is closed.
func TestBusyUnmount(t *testing.T) {
	needFUSE(t)
	mp := t.TempDir()
	s, err := Mount(context.Background(), mp, &liveFS{m: testTree()}, Options{})
	must(t, err)
	f, err := os.Open(filepath.Join(mp, "web1/latest/root/etc/hostname"))
	if err != nil {
		s.Unmount()
		t.Fatal(err)
	}
	must(t, s.Unmount())
	if ok, err := Mounted(mp); ok || err != nil {
		t.Errorf("after busy unmount: mounted=%v %v", ok, err)
	}
	b, err := io.ReadAll(f)
	if err != nil || string(b) != "web1\n" {
		t.Errorf("open file after lazy unmount: %q %v", b, err)
	}
	f.Close()
	select {
	case <-s.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("server still running 30s after the last file was closed")
	}
}
