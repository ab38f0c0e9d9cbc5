package fusefs

import (
	"hash/fnv"
	"io/fs"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/pool"
)

// unixMode converts io/fs mode bits to the st_mode the kernel expects.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= syscall.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= syscall.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= syscall.S_ISVTX
	}
	return u | unixType(m)
}

// unixType returns only the S_IFMT bits for m.
func unixType(m fs.FileMode) uint32 {
	switch {
	case m.IsDir():
		return syscall.S_IFDIR
	case m&fs.ModeSymlink != 0:
		return syscall.S_IFLNK
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice != 0:
		return syscall.S_IFCHR
	case m&fs.ModeDevice != 0:
		return syscall.S_IFBLK
	case m&fs.ModeNamedPipe != 0:
		return syscall.S_IFIFO
	case m&fs.ModeSocket != 0:
		return syscall.S_IFSOCK
	}
	return syscall.S_IFREG
}

// hash64 is the deterministic inode hash: FNV-1a over the parts, separated
// by NUL (which no path element contains). The top bit is cleared so that
// numbers never collide with go-fuse's automatic range (2^63 and up), and
// 0 and 1 (no inode, the root) are never returned.
func hash64(parts ...string) uint64 {
	h := fnv.New64a()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write([]byte(p))
	}
	v := h.Sum64() &^ (1 << 63)
	if v < 2 {
		v += 2
	}
	return v
}

// snapshotScope returns the first two elements of a slash path
// ("host/2024-01-02T03:04:05Z"): the scope within which hard-link ids are
// unique. It returns "" for paths shallower than that.
func snapshotScope(p string) string {
	i := strings.IndexByte(p, '/')
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(p[i+1:], '/')
	if j < 0 {
		return p
	}
	return p[:i+1+j]
}

// inodeFor returns the inode number of path p (slash-separated, relative,
// "." for the root). Hard links (pool.Entry.HardLink != 0) share one number
// within their snapshot; everything else hashes its path.
func inodeFor(p string, info fs.FileInfo) uint64 {
	if p == "." {
		return 1
	}
	if info != nil {
		if e, ok := info.Sys().(*pool.Entry); ok && e.HardLink != 0 && !info.IsDir() {
			if scope := snapshotScope(p); scope != "" {
				return hash64("hardlink", scope, strconv.FormatUint(e.HardLink, 10))
			}
		}
	}
	return hash64(p)
}

// newEncodeDev converts a Linux dev_t (glibc 64-bit encoding, as
// pool.Entry.Rdev and stat's st_rdev use) to the 32-bit "new" encoding the
// FUSE protocol carries.
func newEncodeDev(rdev uint64) uint32 {
	major := uint32((rdev>>8)&0xfff) | uint32((rdev>>32)&^0xfff)
	minor := uint32(rdev&0xff) | uint32((rdev>>12)&^0xff)
	return (minor & 0xff) | (major << 8) | ((minor &^ 0xff) << 12)
}

// fillAttr fills a from info. dirLinks is the link count to report for a
// directory (2 + subdirectories), or 0 when unknown.
func fillAttr(a *fuse.Attr, p string, info fs.FileInfo, dirLinks uint32) {
	m := info.Mode()
	a.Ino = inodeFor(p, info)
	a.Mode = unixMode(m)
	a.Nlink = 1
	if m.IsDir() {
		a.Nlink = 2
		if dirLinks > 0 {
			a.Nlink = dirLinks
		}
	}
	if m.IsRegular() {
		a.Size = uint64(max(info.Size(), 0))
	}
	mt := info.ModTime()
	a.SetTimes(&mt, &mt, &mt)
	a.Blksize = 4096
	switch sys := info.Sys().(type) {
	case *pool.Entry:
		a.Uid, a.Gid = sys.UID, sys.GID
		if sys.Type == pool.TypeSymlink {
			a.Size = uint64(len(sys.Target))
		}
		if sys.Type == pool.TypeCharDev || sys.Type == pool.TypeBlockDev {
			a.Rdev = newEncodeDev(sys.Rdev)
		}
		if sys.HardLink != 0 && !m.IsDir() {
			// The tree records which entries are linked, not how many
			// there are; 2 is the lowest count that tells tools (tar, rsync
			// -H, du) to compare inode numbers. An exact count recorded by
			// the puller wins.
			a.Nlink = 2
			if n, err := strconv.ParseUint(sys.Extra["nlink"], 10, 32); err == nil && n > 0 {
				a.Nlink = uint32(n)
			}
		}
		if sys.ModTime != 0 {
			ts := time.Unix(0, sys.ModTime)
			a.SetTimes(&ts, &ts, &ts)
		}
	case *syscall.Stat_t:
		a.Uid, a.Gid = sys.Uid, sys.Gid
		a.Rdev = newEncodeDev(sys.Rdev)
		if !m.IsDir() {
			a.Nlink = uint32(sys.Nlink)
		}
		if m&fs.ModeSymlink != 0 {
			a.Size = uint64(sys.Size)
		}
	}
	a.Blocks = (a.Size + 511) / 512
}
