package pullertest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/pullers"
)

// Scenario paths the hooks and Compare refer to.
const (
	TriggerPath = "v/0-trigger" // reported by the puller: fires the hooks
	VanishPath  = "v/1-vanish"  // deleted when TriggerPath is reported
	ChangePath  = "v/2-change"  // rewritten when TriggerPath is reported
	NoReadPath  = "noread"      // mode 0000
	DeepDir     = "deep"        // holds the > 4096-byte path
	LinksDir    = "links"       // the symlinks
	LargePath   = "large"       // the 1 GiB file (Options.Large)
	XattrPath   = "data/xattr"  // carries user.cairn when the filesystem allows
)

// Options tune Generate.
type Options struct {
	// Large adds the 1 GiB file. It costs a few seconds to read over a
	// fast protocol, much more under -race: tests enable it with the
	// environment variable CAIRN_TEST_LARGE=1 (see LargeFromEnv).
	Large bool
}

// LargeFromEnv reports whether CAIRN_TEST_LARGE=1 asks for the 1 GiB file.
func LargeFromEnv() bool { return os.Getenv("CAIRN_TEST_LARGE") == "1" }

// Scenario is a generated tree.
type Scenario struct {
	Dir string // the tree's root (absolute)

	// OldChange and NewChange are the contents of ChangePath before and
	// after the hook.
	OldChange, NewChange []byte
	// Xattrs is true when XattrPath got its user.cairn attribute.
	Xattrs bool
	// Unreadable is true when UnreadablePath is mounted (FUSE).
	Unreadable bool

	once    sync.Once
	fired   bool
	mu      sync.Mutex
	hookErr error
}

// Names is every odd name Generate puts in names/.
var Names = []string{
	"caf\u00e9",  // NFC
	"cafe\u0301", // NFD: another name for the same word
	"with space",
	" leading and trailing ",
	"new\nline",
	`back\slash`,
	"co:lon",
	"-leading-dash",
	"--",
	"*?[glob]",
	strings.Repeat("n", 255),
	strings.Repeat("é", 127) + "x", // 255 bytes of 2-byte runes
}

// Generate builds the scenario tree in dir/name, which must not exist.
func Generate(t testing.TB, dir string, o Options) *Scenario {
	t.Helper()
	root := filepath.Join(dir, "scenario")
	s := &Scenario{Dir: root}
	fail := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("pullertest: generate %s: %v", what, err)
		}
	}
	mkdir := func(rel string) {
		t.Helper()
		fail(rel, os.MkdirAll(filepath.Join(root, rel), 0o755))
	}
	file := func(rel string, data []byte, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(root, rel)
		fail(rel, os.MkdirAll(filepath.Dir(p), 0o755))
		fail(rel, os.WriteFile(p, data, mode))
		fail(rel, os.Chmod(p, mode))
	}
	mkdir(".")
	// Fixed mtimes in the past (with nanoseconds) so the incremental pull
	// sees nothing new and resolutions are visible.
	base := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

	for i, n := range Names {
		file("names/"+n, fmt.Appendf(nil, "name %d: %q\n", i, n), 0o644)
	}
	file("empty-file", nil, 0o640)
	mkdir("empty-dir")
	file("data/chunked", randData(1, 3<<20+12345), 0o644)
	file("data/small", []byte("small file\n"), 0o600)
	file("data/setuid", []byte("#!/bin/true\n"), 0o4755)
	file(XattrPath, []byte("xattr carrier\n"), 0o644)
	if err := unix.Setxattr(filepath.Join(root, XattrPath), "user.cairn", []byte("pullertest"), 0); err == nil {
		s.Xattrs = true
	} else {
		t.Logf("pullertest: no user xattrs here (%v); xattrs are not compared", err)
	}
	file(NoReadPath, []byte("nobody may read this\n"), 0)

	// Sparse: 8 MiB, data at three places.
	sparse(t, filepath.Join(root, "sparse"), 8<<20, []int64{0, 3<<20 + 7, 8<<20 - 5000}, 2)
	if o.Large {
		sparse(t, filepath.Join(root, LargePath), 1<<30, []int64{0, 300<<20 + 4097, 777 << 20, 1<<30 - 70000}, 3)
	}

	// Symlinks.
	mkdir(LinksDir)
	for name, target := range map[string]string{
		"relative": "../data/small",
		"absolute": filepath.Join(root, "data/small"),
		"dangling": "does/not/exist",
		"loop1":    "loop2",
		"loop2":    "loop1",
		"outside":  "../../..",
		"odd":      "new\nline ../ \\ :",
	} {
		fail("link "+name, os.Symlink(target, filepath.Join(root, LinksDir, name)))
	}

	// Hard links: three names of one inode, two directories.
	file("hard/a", []byte("hard linked\n"), 0o644)
	fail("hard/b", os.Link(filepath.Join(root, "hard/a"), filepath.Join(root, "hard/b")))
	mkdir("hard/sub")
	fail("hard/sub/c", os.Link(filepath.Join(root, "hard/a"), filepath.Join(root, "hard/sub/c")))

	// The hooks' files.
	s.OldChange = randData(4, 100<<10)
	s.NewChange = randData(5, 150<<10+3)
	file(TriggerPath, []byte("trigger\n"), 0o644)
	file(VanishPath, []byte("I will vanish\n"), 0o644)
	file(ChangePath, s.OldChange, 0o644)

	deep(t, root)
	mkdir(UnreadableDir)

	// mtimes last, children before parents, the deep tree by descriptor.
	fail("mtimes", setTimes(root, base))
	s.Unreadable = mountUnreadable(t, filepath.Join(root, UnreadableDir))
	return s
}

// deep nests 200-byte directory names until the path passes 4096 bytes.
func deep(t testing.TB, root string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(root, DeepDir), 0o755); err != nil {
		t.Fatalf("pullertest: %v", err)
	}
	fd, err := unix.Open(filepath.Join(root, DeepDir), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("pullertest: open deep: %v", err)
	}
	plen := len(DeepDir)
	for i := 0; plen <= 4200; i++ {
		name := fmt.Sprintf("%03d-%s", i, strings.Repeat("d", 196))
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatalf("pullertest: mkdirat deep level %d: %v", i, err)
		}
		nfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatalf("pullertest: openat deep level %d: %v", i, err)
		}
		fd = nfd
		plen += 1 + len(name)
	}
	defer unix.Close(fd)
	ffd, err := unix.Openat(fd, "bottom", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatalf("pullertest: create deep bottom: %v", err)
	}
	defer unix.Close(ffd)
	if _, err := unix.Write(ffd, []byte("at the bottom, past PATH_MAX\n")); err != nil {
		t.Fatalf("pullertest: write deep bottom: %v", err)
	}
}

// sparse writes a file of size bytes with 64 KiB of random data at each
// offset and holes elsewhere.
func sparse(t testing.TB, path string, size int64, offsets []int64, seed uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatalf("pullertest: %v", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatalf("pullertest: truncate %s: %v", path, err)
	}
	for i, off := range offsets {
		n := int64(64 << 10)
		if off+n > size {
			n = size - off
		}
		if _, err := f.WriteAt(randData(seed*100+uint64(i), int(n)), off); err != nil {
			t.Fatalf("pullertest: write %s: %v", path, err)
		}
	}
}

// setTimes gives every entry below root (fd-relative, symlinks not
// followed) a distinct fixed mtime, children before their directory.
func setTimes(root string, base time.Time) error {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	n := 0
	var walk func(fd int) error
	walk = func(fd int) error {
		names, err := readNames(fd)
		if err != nil {
			return err
		}
		for _, name := range names {
			var st unix.Stat_t
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				if err != nil {
					return err
				}
				err = walk(cfd)
				unix.Close(cfd)
				if err != nil {
					return err
				}
			}
			n++
			ts := unix.NsecToTimespec(base.Add(time.Duration(n) * 1001 * time.Millisecond).UnixNano())
			if err := unix.UtimesNanoAt(fd, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("utimes %s: %w", name, err)
			}
		}
		return nil
	}
	if err := walk(fd); err != nil {
		return err
	}
	ts := unix.NsecToTimespec(base.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, root, []unix.Timespec{ts, ts}, 0)
}

// OnProgress is the hook a protocol test calls from Job.Progress: when the
// puller reports TriggerPath, VanishPath is deleted and ChangePath is
// rewritten in place (other size, content and mtime). It fires once.
func (s *Scenario) OnProgress(p pullers.Progress) {
	if p.Path != TriggerPath {
		return
	}
	s.once.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.fired = true
		err := os.Remove(filepath.Join(s.Dir, VanishPath))
		if err == nil {
			err = os.WriteFile(filepath.Join(s.Dir, ChangePath), s.NewChange, 0o644)
		}
		if err == nil {
			mt := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
			err = os.Chtimes(filepath.Join(s.Dir, ChangePath), mt, mt)
		}
		s.hookErr = err
	})
}

// Fired reports whether the hooks ran, and how they failed.
func (s *Scenario) Fired() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fired, s.hookErr
}

func randData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// readNames lists an open directory, unsorted.
func readNames(fd int) ([]string, error) {
	buf := make([]byte, 32<<10)
	var names []string
	for {
		n, err := unix.ReadDirent(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}
