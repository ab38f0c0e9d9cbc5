package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/user"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

func sortStrings(s []string) { slices.Sort(s) }

// ownerCache maps uids and gids to names, looking each up once.
type ownerCache struct {
	users, groups map[uint32]string
}

func newOwnerCache() *ownerCache {
	return &ownerCache{users: map[uint32]string{}, groups: map[uint32]string{}}
}

func (c *ownerCache) user(id uint32) string {
	n, ok := c.users[id]
	if !ok {
		if u, err := user.LookupId(strconv.FormatUint(uint64(id), 10)); err == nil {
			n = u.Username
		}
		c.users[id] = n
	}
	return n
}

func (c *ownerCache) group(id uint32) string {
	n, ok := c.groups[id]
	if !ok {
		if g, err := user.LookupGroupId(strconv.FormatUint(uint64(id), 10)); err == nil {
			n = g.Name
		}
		c.groups[id] = n
	}
	return n
}

// xattr access either through an open descriptor or by path without
// following a symlink.
type xattrOps struct {
	list func(buf []byte) (int, error)
	get  func(name string, buf []byte) (int, error)
}

func (w *walker) xattrsFd(fd int, rel string) map[string][]byte {
	return w.xattrs(rel, xattrOps{
		list: func(buf []byte) (int, error) { return unix.Flistxattr(fd, buf) },
		get:  func(name string, buf []byte) (int, error) { return unix.Fgetxattr(fd, name, buf) },
	})
}

// xattrsAt reads the xattrs of name in the directory dirfd without
// following a final symlink. It goes through /proc/self/fd so that the path
// stays short however deep the tree is (a full path can pass PATH_MAX).
func (w *walker) xattrsAt(dirfd int, name, rel string) map[string][]byte {
	p := "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
	return w.xattrs(rel, xattrOps{
		list: func(buf []byte) (int, error) { return unix.Llistxattr(p, buf) },
		get:  func(name string, buf []byte) (int, error) { return unix.Lgetxattr(p, name, buf) },
	})
}

// ignorableXattrErr: the filesystem has no xattrs, the attribute went
// away, or the file did (which the walk reports on its own).
func ignorableXattrErr(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOENT)
}

func (w *walker) xattrs(rel string, ops xattrOps) map[string][]byte {
	list, err := sized(func(b []byte) (int, error) { return ops.list(b) })
	if err != nil {
		if !ignorableXattrErr(err) {
			w.recordError(relOrDot(rel), fmt.Errorf("list xattrs: %w", err))
		}
		return nil
	}
	if len(list) == 0 {
		return nil
	}
	var out map[string][]byte
	for _, name := range bytes.Split(list, []byte{0}) {
		if len(name) == 0 {
			continue
		}
		n := string(name)
		v, err := sized(func(b []byte) (int, error) { return ops.get(n, b) })
		if err != nil {
			if !ignorableXattrErr(err) {
				w.recordError(relOrDot(rel), fmt.Errorf("read xattr %s: %w", n, err))
			}
			continue
		}
		if out == nil {
			out = map[string][]byte{}
		}
		out[n] = v
	}
	return out
}

// sized calls f with a buffer big enough for its result: a size query
// first, then the read, retrying when the value grew in between.
func sized(f func([]byte) (int, error)) ([]byte, error) {
	for range 8 {
		n, err := f(nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		buf := make([]byte, n)
		n, err = f(buf)
		if err == unix.ERANGE || err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	return nil, errors.New("value keeps changing size")
}

// errChanged marks a file that changed size while it was read.
var errChanged = errors.New("file changed while being read")

// fileReader yields exactly size bytes of an open file. A short file
// (it shrank) or a read error is a per-file error, remembered in err so
// the puller can tell it from a failing sink.
type fileReader struct {
	ctx  context.Context
	fd   int
	size int64
	left int64
	err  error
}

func (r *fileReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.left <= 0 {
		return 0, io.EOF
	}
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	for {
		n, err := unix.Read(r.fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			r.err = fmt.Errorf("read: %w", err)
			return 0, r.err
		}
		if n == 0 {
			r.err = fmt.Errorf("%w: it shrank to %d of %d bytes", errChanged, r.size-r.left, r.size)
			return 0, r.err
		}
		r.left -= int64(n)
		return n, nil
	}
}

// grew reports whether the file has data past size (call after reading
// all of it).
func (r *fileReader) grew() bool {
	var one [1]byte
	for {
		n, err := unix.Read(r.fd, one[:])
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
