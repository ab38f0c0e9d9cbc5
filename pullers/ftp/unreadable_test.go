package ftp

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

	"github.com/cairn-backup/cairn/pullers/pullertest"
)

// pullertest mounts unreadable/ (a FUSE file whose open fails with
// EACCES) without allow_other, so only root sees it; vsftpd serves as its
// local user and would not even list it. Until pullertest mounts it with
// AllowOther, remount the same thing so the FTP user sees the file and
// its open fails like everyone else's.
func remountUnreadable(t *testing.T, scenario string) {
	dir := filepath.Join(scenario, pullertest.UnreadableDir)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != 0x65735546 { // FUSE_SUPER_MAGIC
		return // not mounted (no FUSE here): nothing to do
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		t.Fatalf("unmount %s: %v", dir, err)
	}
	sec := time.Second
	srv, err := fusefs.Mount(dir, &lockedRoot{}, &fusefs.Options{
		EntryTimeout: &sec, AttrTimeout: &sec,
		MountOptions: fuse.MountOptions{DirectMount: true, AllowOther: true, FsName: "cairn-ftptest", Name: "ftptest"},
	})
	if err != nil {
		t.Fatalf("remount %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	if _, err := os.Stat(filepath.Join(dir, "secret")); err != nil {
		t.Fatalf("remounted %s: %v", dir, err)
	}
}

var lockedTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

type lockedRoot struct{ fusefs.Inode }

func (r *lockedRoot) OnAdd(ctx context.Context) {
	r.AddChild("secret", r.NewPersistentInode(ctx, &lockedFile{}, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: 2}), false)
}

func lockedAttr(a *fuse.Attr, mode uint32, size uint64) {
	a.Mode, a.Size, a.Nlink = mode, size, 1
	s := uint64(lockedTime.Unix())
	a.Mtime, a.Atime, a.Ctime = s, s, s
}

func (r *lockedRoot) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	lockedAttr(&out.Attr, syscall.S_IFDIR|0o755, 0)
	out.Nlink = 2
	return 0
}

type lockedFile struct{ fusefs.Inode }

func (f *lockedFile) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	lockedAttr(&out.Attr, syscall.S_IFREG|0o644, 100)
	return 0
}

func (f *lockedFile) Open(context.Context, uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	return nil, 0, syscall.EACCES
}
