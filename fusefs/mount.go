package fusefs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/fusefs/blockcache"
)

// Options tune a mount. The zero value is ready to use.
type Options struct {
	// FsName is the source shown in the mount table (default "cairn").
	FsName string
	// CacheTimeout is how long the kernel may cache entries and attributes
	// inside snapshots, which never change (default 1 hour).
	CacheTimeout time.Duration
	// VolatileTimeout is the cache time for the root, host directories and
	// snapshot entries, which change as backups run (default 1 second).
	VolatileTimeout time.Duration
	// RefreshInterval is the least time between two re-reads of the
	// snapshot list, for trees that implement Refresher (default 2 seconds).
	RefreshInterval time.Duration
	// AllowOther lets users other than the mounting one see the mount.
	// Non-root mounts then need user_allow_other in /etc/fuse.conf.
	AllowOther bool
	// Logger receives errors the tree returns; default slog.Default().
	Logger *slog.Logger
	// Debug logs every FUSE request (very verbose).
	Debug bool
	// CacheBytes bounds the in-process cache of file blocks (see the
	// package doc; default 64 MiB, at least 4 MiB). It comes on top of the
	// pool's own caches and the kernel's page cache.
	CacheBytes int64
}

// Server is a mounted restore tree.
type Server struct {
	srv        *fuse.Server
	tree       *tree
	mountpoint string
	log        *slog.Logger

	once sync.Once
	err  error
	done chan struct{} // closed when the server loop has exited
}

// Mount mounts fsys read-only at mountpoint and serves it until ctx is done
// or Unmount is called. A stale mount left at mountpoint by a crashed
// process is cleared first (see ClearStale). Mount returns when the kernel
// has the mount ready.
func Mount(ctx context.Context, mountpoint string, fsys fs.FS, opts Options) (*Server, error) {
	if opts.FsName == "" {
		opts.FsName = "cairn"
	}
	if opts.CacheTimeout <= 0 {
		opts.CacheTimeout = time.Hour
	}
	if opts.VolatileTimeout <= 0 {
		opts.VolatileTimeout = time.Second
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	log := opts.Logger.With("component", "fusefs", "mountpoint", mountpoint)
	if err := ClearStale(mountpoint); err != nil {
		return nil, err
	}
	t := &tree{fsys: fsys, log: log, cache: opts.CacheTimeout, volatile: opts.VolatileTimeout, refreshEvery: opts.RefreshInterval,
		blocks: blockcache.New(blockcache.Options{MaxBytes: opts.CacheBytes}), lists: newListings()}
	root := &node{t: t, path: "."}
	vol := opts.VolatileTimeout
	mo := fuse.MountOptions{
		FsName:     opts.FsName,
		Name:       "cairn",
		Options:    []string{"ro", "default_permissions"},
		AllowOther: opts.AllowOther,
		Debug:      opts.Debug,
		// Snapshot reads are large and sequential more often than not.
		MaxWrite:     1 << 20,
		MaxReadAhead: 1 << 17,
	}
	if os.Geteuid() == 0 {
		// mount(2) directly so the VFS itself is read-only; fusermount3
		// remains the fallback.
		mo.DirectMount = true
		mo.DirectMountFlags = syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV
	}
	srv, err := gofs.Mount(mountpoint, root, &gofs.Options{
		MountOptions:    mo,
		EntryTimeout:    &vol,
		AttrTimeout:     &vol,
		NullPermissions: true,
		RootStableAttr:  &gofs.StableAttr{Ino: 1},
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	s := &Server{srv: srv, tree: t, mountpoint: mountpoint, log: log, done: make(chan struct{})}
	go func() {
		srv.Wait()
		close(s.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			if err := s.Unmount(); err != nil {
				log.Error("unmount", "err", err)
			}
		case <-s.done:
		}
	}()
	log.Info("mounted restore tree")
	return s, nil
}

// CacheStats returns the counters of the mount's block cache.
func (s *Server) CacheStats() blockcache.Stats { return s.tree.blocks.Stats() }

// Mountpoint returns where the tree is mounted.
func (s *Server) Mountpoint() string { return s.mountpoint }

// Done is closed when the server has stopped serving (after an unmount,
// including one done from outside with umount or fusermount3 -u).
func (s *Server) Done() <-chan struct{} { return s.done }

// Wait blocks until the server has stopped serving.
func (s *Server) Wait() { <-s.done }

// Unmount unmounts and waits for the server to stop. When the mount is busy
// (a process still has a file open or its cwd inside), it falls back to a
// lazy unmount and returns at once: the mount disappears from the namespace,
// the server goes on serving the files still open, and Done is closed when
// the last of them is let go (or when the process exits). It is safe to
// call more than once.
func (s *Server) Unmount() error {
	s.once.Do(func() {
		err := s.srv.Unmount()
		if err == nil {
			<-s.done
			s.log.Info("unmounted restore tree")
			return
		}
		s.log.Warn("mount busy, detaching lazily", "err", err)
		if derr := detach(s.mountpoint); derr != nil {
			s.err = fmt.Errorf("unmount %s: %v; lazy unmount: %w", s.mountpoint, err, derr)
			return
		}
		s.log.Info("detached restore tree; open files stay readable until closed")
	})
	return s.err
}

// ClearStale checks mountpoint for a FUSE mount whose server has died (stat
// fails with "transport endpoint is not connected") and lazily unmounts it.
// A healthy mount, an ordinary directory or a missing path is left alone.
func ClearStale(mountpoint string) error {
	// Stat alone may be answered from the kernel's attribute cache for a
	// moment after the server died; opening and reading the directory
	// always reaches the (dead) server.
	err := probe(mountpoint)
	if err == nil || !(errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED)) {
		return nil
	}
	slog.Default().Warn("clearing stale FUSE mount", "component", "fusefs", "mountpoint", mountpoint)
	if err := detach(mountpoint); err != nil {
		return fmt.Errorf("clear stale mount %s: %w", mountpoint, err)
	}
	if err := probe(mountpoint); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clear stale mount %s: still unusable: %w", mountpoint, err)
	}
	return nil
}

// probe opens mountpoint and reads one directory entry from it.
func probe(mountpoint string) error {
	f, err := os.Open(mountpoint)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && err != io.EOF && !errors.Is(err, syscall.ENOTDIR) {
		return err
	}
	return nil
}

// detach lazily unmounts mountpoint: umount2(MNT_DETACH) as root, else
// fusermount3 -uz (setuid helper for the user's own mounts).
func detach(mountpoint string) error {
	err := syscall.Unmount(mountpoint, syscall.MNT_DETACH)
	if err == nil {
		return nil
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if _, lerr := exec.LookPath(bin); lerr != nil {
			continue
		}
		out, ferr := exec.Command(bin, "-u", "-z", mountpoint).CombinedOutput()
		if ferr == nil {
			return nil
		}
		return fmt.Errorf("umount2: %v; %s -uz: %v: %s", err, bin, ferr, strings.TrimSpace(string(out)))
	}
	return fmt.Errorf("umount2: %w", err)
}

// Mounted reports whether mountpoint is a mount point in this process's
// mount namespace, per /proc/self/mountinfo.
func Mounted(mountpoint string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == mountpoint {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for space…).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
