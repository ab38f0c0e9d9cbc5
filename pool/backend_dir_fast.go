package pool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The DirBackend fast path (Linux ≥ 5.6): every name is resolved with
// one openat2(2) relative to a directory fd held open for the backend's
// life, with RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS. The kernel then
// refuses any path that would leave the root — through "..", an absolute
// or escaping symlink, or a /proc magic link — in one system call instead
// of os.Root's one openat per path element. (Symlinks that stay inside the
// root are followed, as os.Root does.) Operations that act on a name
// in a directory (create, rename, unlink, mkdir) go through an fd of that
// directory opened the same way, and touch only its last element, which
// they never follow. A new object costs about six system calls: open the
// parent, create the temporary file, write, close, rename, close the
// parent. When openat2 is unavailable (an old kernel, a seccomp filter)
// the backend falls back to os.Root.

const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS

// openFast opens the root directory fd and checks that openat2 works.
// It returns -1 when the fast path is not available.
func openFast(abs string) int {
	fd, err := unix.Open(abs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	probe, err := openat2(fd, ".", unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		unix.Close(fd)
		return -1
	}
	unix.Close(probe)
	return fd
}

// openat2 opens name beneath dirfd: no step of the walk may leave it.
func openat2(dirfd int, name string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: resolveFlags,
	}
	for {
		fd, err := unix.Openat2(dirfd, name, &how)
		// EAGAIN: a concurrent rename somewhere in the filesystem made
		// the kernel unsure the walk stayed beneath dirfd; try again.
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		return fd, err
	}
}

// osErr turns the error openat2 gives for a path that would leave the
// root into one that names the cause.
func osErr(err error) error {
	if err == unix.EXDEV || err == unix.ELOOP {
		return fmt.Errorf("%w (the path leads outside the pool directory through a symlink)", err)
	}
	return err
}

// dirFD returns an fd of directory dir (a cleaned relative name or "."),
// creating it and its parents (mode 0700) when create is set. The caller
// closes it with closeDir.
func (b *DirBackend) dirFD(dir string, create bool) (int, error) {
	if dir == "." {
		return b.fd, nil
	}
	if i, ok := objectDirIndex(dir); ok {
		return b.objectDirFD(dir, i, create)
	}
	fd, err := openat2(b.fd, dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != unix.ENOENT || !create {
		return fd, err
	}
	parent, base := path.Split(dir)
	pfd, err := b.dirFD(path.Clean(parent), true)
	if err != nil {
		return -1, err
	}
	defer b.closeDir(pfd)
	if err := unix.Mkdirat(pfd, base, 0o700); err != nil && err != unix.EEXIST {
		return -1, err
	}
	return openat2(pfd, base, unix.O_PATH|unix.O_DIRECTORY, 0)
}

// objectDirIndex recognises "objects/ab/cd" (two lowercase hex bytes)
// and returns ab as an index.
func objectDirIndex(dir string) (int, bool) {
	if len(dir) != len("objects/ab/cd") || dir[:len(objectsPrefix)] != objectsPrefix || dir[10] != '/' {
		return 0, false
	}
	hi, ok1 := unhex(dir[8])
	lo, ok2 := unhex(dir[9])
	_, ok3 := unhex(dir[11])
	_, ok4 := unhex(dir[12])
	return hi<<4 | lo, ok1 && ok2 && ok3 && ok4
}

// objectDirIndex16 returns abcd of "objects/ab/cd" as an index.
func objectDirIndex16(dir string) (int, bool) {
	ab, ok := objectDirIndex(dir)
	hi, _ := unhex(dir[11])
	lo, _ := unhex(dir[12])
	return ab<<8 | hi<<4 | lo, ok
}

func unhex(c byte) (int, bool) {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0'), true
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10, true
	}
	return 0, false
}

// objectDirFD opens objects/ab/cd relative to a cached fd of objects/ab,
// so a content object's directory costs one openat2 of one element (plus
// a mkdirat the first time). The 256 objects/ab fds stay open until
// Close. A cached directory that was removed behind our back (creating
// in it fails with ENOENT) is dropped and reopened.
func (b *DirBackend) objectDirFD(dir string, i int, create bool) (int, error) {
	for attempt := 0; ; attempt++ {
		b.abMu.Lock()
		ab := b.ab[i] - 1
		b.abMu.Unlock()
		if ab < 0 {
			fd, err := openat2(b.fd, dir[:len("objects/ab")], unix.O_PATH|unix.O_DIRECTORY, 0)
			if err == unix.ENOENT && create {
				var pfd int
				if pfd, err = b.dirFD("objects", true); err == nil {
					if err = unix.Mkdirat(pfd, dir[8:10], 0o700); err == nil || err == unix.EEXIST {
						fd, err = openat2(pfd, dir[8:10], unix.O_PATH|unix.O_DIRECTORY, 0)
					}
					b.closeDir(pfd)
				}
			}
			if err != nil {
				return -1, err
			}
			b.abMu.Lock()
			if b.ab[i] > 0 {
				unix.Close(fd) // another goroutine was faster
			} else {
				b.ab[i] = fd + 1
			}
			ab = b.ab[i] - 1
			b.abMu.Unlock()
		}
		cd, _ := objectDirIndex16(dir)
		bit := &b.cdSeen[cd/64]
		mask := uint64(1) << (cd % 64)
		if !create || bit.Load()&mask != 0 {
			fd, err := openat2(ab, dir[11:], unix.O_PATH|unix.O_DIRECTORY, 0)
			if err != unix.ENOENT || !create {
				return fd, err
			}
			bit.And(^mask) // removed behind our back
		}
		// Not seen yet: create it first (EEXIST is fine), saving the
		// failed open a fresh pool would otherwise pay per directory.
		err := unix.Mkdirat(ab, dir[11:], 0o700)
		if err == nil || err == unix.EEXIST {
			fd, err := openat2(ab, dir[11:], unix.O_PATH|unix.O_DIRECTORY, 0)
			if err == nil {
				bit.Or(mask)
			}
			return fd, err
		}
		if err != unix.ENOENT || attempt > 0 {
			return -1, err
		}
		// objects/ab itself is gone: forget it and start again.
		b.abMu.Lock()
		if b.ab[i] == ab+1 {
			b.ab[i] = 0
			b.abDead = append(b.abDead, ab) // closed by Close: a racing user may hold it
		}
		b.abMu.Unlock()
	}
}

func (b *DirBackend) closeDir(fd int) {
	if fd != b.fd && fd >= 0 {
		unix.Close(fd)
	}
}

// tempPrefix and tempSeq make temporary names unique without asking the
// kernel for randomness per object; O_EXCL guards against any clash.
var (
	tempPrefix = func() string {
		var r [6]byte
		rand.Read(r[:])
		return ".tmp-" + hex.EncodeToString(r[:]) + "-"
	}()
	tempSeq atomic.Uint64
)

func fastTempName() string {
	var b [20]byte
	return tempPrefix + string(hexUint(b[:0], tempSeq.Add(1)))
}

func hexUint(dst []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	if v == 0 {
		return append(dst, '0')
	}
	var t [16]byte
	i := len(t)
	for v > 0 {
		i--
		t[i] = digits[v&15]
		v >>= 4
	}
	return append(dst, t[i:]...)
}

// fdWriter writes to a raw fd (no os.File: no poller registration, no
// finalizer).
type fdWriter int

func (w fdWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(int(w), p[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, io.ErrShortWrite
		}
		n += m
	}
	return n, nil
}

func (b *DirBackend) putFast(name string, r io.Reader, size int64) error {
	dir, base := path.Split(name)
	dir = path.Clean(dir)
	pfd, err := b.dirFD(dir, true)
	if err != nil {
		return b.wrap("write", name, osErr(err))
	}
	defer b.closeDir(pfd)
	tmp := fastTempName()
	fd, err := unix.Openat(pfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return b.wrap("write", name, err)
	}
	n, err := io.Copy(fdWriter(fd), r)
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("short input: wrote %d of %d bytes", n, size)
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(pfd, tmp, pfd, base)
	}
	if err != nil {
		unix.Unlinkat(pfd, tmp, 0)
		return b.wrap("write", name, err)
	}
	return nil
}

func (b *DirBackend) getFast(name string, off, length int64) (io.ReadCloser, error) {
	fd, err := openat2(b.fd, name, unix.O_RDONLY, 0)
	if err != nil {
		return nil, b.wrap("read", name, osErr(err))
	}
	f := os.NewFile(uintptr(fd), b.full(name))
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = syscall.ENOENT
	}
	if err == nil && off > 0 {
		_, err = f.Seek(off, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, b.wrap("read", name, err)
	}
	if length < 0 {
		return f, nil
	}
	return readCloser{io.LimitReader(f, length), f}, nil
}

// readWhole reads all of name (at most max bytes) in four system calls
// (open, fstat, one read of the size fstat gave plus one byte to see
// the end, close) into alloc(n)[:0], or new memory when alloc is nil.
// The fast-path readAll: without os.File and its fcntl, second fstat and
// read to EOF.
func (b *DirBackend) readWhole(ctx context.Context, name string, max int64, alloc func(n int) []byte) ([]byte, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fd, err := openat2(b.fd, name, unix.O_RDONLY, 0)
	if err != nil {
		return nil, b.wrap("read", name, osErr(err))
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	if err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		err = syscall.ENOENT
	}
	if err != nil {
		return nil, b.wrap("read", name, err)
	}
	if st.Size > max {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrCorrupt, name, max)
	}
	n := int(st.Size) + 1
	var buf []byte
	if alloc != nil {
		buf = alloc(n)[:0]
	} else {
		buf = make([]byte, 0, n)
	}
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > max {
				return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrCorrupt, name, max)
			}
			buf = append(buf, 0)[:len(buf)] // it grew since fstat
		}
		m, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, b.wrap("read", name, err)
		}
		if m == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+m]
		if len(buf) < n && len(buf) == int(st.Size) {
			// A regular file returns what it has: a read short of the
			// fstat size plus one byte ended at the end of the file.
			return buf, nil
		}
	}
}

func (b *DirBackend) statFast(name string) (ObjectInfo, error) {
	fd, err := openat2(b.fd, name, unix.O_PATH, 0)
	if err != nil {
		return ObjectInfo{}, b.wrap("stat", name, osErr(err))
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	unix.Close(fd)
	if err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		err = syscall.ENOENT
	}
	if err != nil {
		return ObjectInfo{}, b.wrap("stat", name, err)
	}
	return ObjectInfo{Name: name, Size: st.Size, ModTime: timespecTime(st.Mtim)}, nil
}

func (b *DirBackend) deleteFast(name string) error {
	dir, base := path.Split(name)
	pfd, err := b.dirFD(path.Clean(dir), false)
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return nil
	}
	if err != nil {
		return b.wrap("delete", name, osErr(err))
	}
	defer b.closeDir(pfd)
	err = unix.Unlinkat(pfd, base, 0)
	if err == unix.EISDIR {
		err = unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR)
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return b.wrap("delete", name, err)
	}
	return nil
}

func timespecTime(ts unix.Timespec) time.Time { return time.Unix(ts.Sec, ts.Nsec) }
