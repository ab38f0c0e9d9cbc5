package pullertest

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// A file nobody can read, not even root: tests and the testenv servers run
// as root, which a mode-0000 file does not stop. A tiny FUSE filesystem is
// mounted on UnreadableDir; its one file, UnreadablePath, stats normally
// and fails every open with EACCES. Every puller must record a per-file
// error for it.
const (
	UnreadableDir  = "unreadable"
	UnreadablePath = "unreadable/secret"
)

var fuseTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

type lockedRoot struct{ fusefs.Inode }

var (
	_ fusefs.NodeOnAdder     = (*lockedRoot)(nil)
	_ fusefs.NodeGetattrer   = (*lockedRoot)(nil)
	_ fusefs.NodeListxattrer = (*lockedRoot)(nil)
	_ fusefs.NodeGetxattrer  = (*lockedRoot)(nil)
)

func (r *lockedRoot) OnAdd(ctx context.Context) {
	ch := r.NewPersistentInode(ctx, &lockedFile{}, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: 2})
	r.AddChild("secret", ch, false)
}

func setAttr(a *fuse.Attr, mode uint32, size uint64) {
	a.Mode = mode
	a.Size = size
	a.Nlink = 1
	sec := uint64(fuseTime.Unix())
	a.Mtime, a.Atime, a.Ctime = sec, sec, sec
	a.Owner = fuse.Owner{Uid: 0, Gid: 0}
}

func (r *lockedRoot) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	setAttr(&out.Attr, syscall.S_IFDIR|0o755, 0)
	out.Nlink = 2
	return 0
}

func (r *lockedRoot) Listxattr(context.Context, []byte) (uint32, syscall.Errno) { return 0, 0 }
func (r *lockedRoot) Getxattr(context.Context, string, []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENODATA
}

type lockedFile struct{ fusefs.Inode }

var (
	_ fusefs.NodeOpener      = (*lockedFile)(nil)
	_ fusefs.NodeGetattrer   = (*lockedFile)(nil)
	_ fusefs.NodeListxattrer = (*lockedFile)(nil)
	_ fusefs.NodeGetxattrer  = (*lockedFile)(nil)
)

func (f *lockedFile) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	setAttr(&out.Attr, syscall.S_IFREG|0o644, 100)
	return 0
}

func (f *lockedFile) Open(context.Context, uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	return nil, 0, syscall.EACCES
}

func (f *lockedFile) Listxattr(context.Context, []byte) (uint32, syscall.Errno) { return 0, 0 }
func (f *lockedFile) Getxattr(context.Context, string, []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENODATA
}

// mountUnreadable mounts the locked filesystem on dir (which exists). It
// reports false when FUSE is not available here (an error under CI=true).
func mountUnreadable(t testing.TB, dir string) bool {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pullertest: the unreadable file needs FUSE as root (/dev/fuse: %v, euid %d)", err, os.Geteuid())
		}
		t.Logf("pullertest: no FUSE here; the unreadable file is left out")
		return false
	}
	sec := time.Second
	srv, err := fusefs.Mount(dir, &lockedRoot{}, &fusefs.Options{
		EntryTimeout: &sec, AttrTimeout: &sec,
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "cairn-pullertest", Name: "pullertest"},
	})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pullertest: mount the unreadable file: %v", err)
		}
		t.Logf("pullertest: cannot mount FUSE (%v); the unreadable file is left out", err)
		return false
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			// Busy (a server process still has it open): detach it.
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	if _, err := os.Stat(filepath.Join(dir, "secret")); err != nil {
		t.Fatalf("pullertest: the FUSE mount does not answer: %v", err)
	}
	return true
}
