package fusefs

import (
	"io"
	"io/fs"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing/fstest"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// liveFS is a test restore tree: an fstest.MapFS (which has symlinks via
// fs.ReadLinkFS and Sys() entries) that can be replaced while mounted, to
// model new snapshots arriving, and that counts the bytes files return
// through ReadAt, to prove reads touch only what they need.
type liveFS struct {
	mu      sync.RWMutex
	m       fstest.MapFS
	readAt  atomic.Int64 // bytes returned by ReadAt
	readSeq atomic.Int64 // bytes returned by Read
}

var (
	_ fs.FS         = (*liveFS)(nil)
	_ fs.ReadLinkFS = (*liveFS)(nil)
)

func (l *liveFS) cur() fstest.MapFS {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.m
}

// set replaces the tree; m must not be modified afterwards.
func (l *liveFS) set(m fstest.MapFS) {
	l.mu.Lock()
	l.m = m
	l.mu.Unlock()
}

func (l *liveFS) Open(name string) (fs.File, error) {
	f, err := l.cur().Open(name)
	if err != nil {
		return nil, err
	}
	if _, ok := f.(fs.ReadDirFile); ok {
		return f, nil
	}
	return &countingFile{File: f, l: l}, nil
}

func (l *liveFS) ReadLink(name string) (string, error)   { return l.cur().ReadLink(name) }
func (l *liveFS) Lstat(name string) (fs.FileInfo, error) { return l.cur().Lstat(name) }

type countingFile struct {
	fs.File
	l *liveFS
}

func (c *countingFile) Read(p []byte) (int, error) {
	n, err := c.File.Read(p)
	c.l.readSeq.Add(int64(n))
	return n, err
}

func (c *countingFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.File.(io.ReaderAt).ReadAt(p, off)
	c.l.readAt.Add(int64(n))
	return n, err
}

func (c *countingFile) Seek(off int64, whence int) (int64, error) {
	return c.File.(io.Seeker).Seek(off, whence)
}

// Fixed facts of the test tree.
const (
	snap1   = "2024-01-02T03:04:05Z"
	snap2   = "2024-02-03T04:05:06Z"
	bigSize = 24<<20 + 12345
)

var mtime = time.Unix(1704164645, 123456789)

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func file(data []byte, perm fs.FileMode, e pool.Entry) *fstest.MapFile {
	e.Type = pool.TypeFile
	e.Mode = perm
	e.Size = int64(len(data))
	e.ModTime = mtime.UnixNano()
	return &fstest.MapFile{Data: data, Mode: perm, ModTime: mtime, Sys: &e}
}

func dir(perm fs.FileMode, uid, gid uint32) *fstest.MapFile {
	e := &pool.Entry{Type: pool.TypeDir, Mode: perm, UID: uid, GID: gid, ModTime: mtime.UnixNano()}
	return &fstest.MapFile{Mode: fs.ModeDir | perm, ModTime: mtime, Sys: e}
}

func symlink(target string) *fstest.MapFile {
	e := &pool.Entry{Type: pool.TypeSymlink, Mode: 0o777, Target: target, ModTime: mtime.UnixNano()}
	return &fstest.MapFile{Data: []byte(target), Mode: fs.ModeSymlink | 0o777, ModTime: mtime, Sys: e}
}

// testTree builds /web1/<snap1>/… and /db1/<snap1>/…, plus extra snapshots
// of web1 given in more.
func testTree(more ...string) fstest.MapFS {
	m := fstest.MapFS{}
	add := func(host, snap string) {
		s := host + "/" + snap + "/root"
		m[host] = dir(0o755, 0, 0)
		m[host+"/"+snap] = dir(0o755, 0, 0)
		m[s] = dir(0o755, 0, 0)
		m[s+"/etc"] = dir(0o755, 0, 0)
		m[s+"/etc/hostname"] = file([]byte(host+"\n"), 0o644, pool.Entry{})
		m[s+"/etc/shadow"] = file([]byte("root:*:19000::::::\n"), 0o640, pool.Entry{GID: 42})
		m[s+"/etc/localtime"] = symlink("/usr/share/zoneinfo/UTC")
		m[s+"/home/alice"] = dir(0o750, 1000, 1000)
		m[s+"/home/alice/notes.txt"] = file([]byte("snapshot "+snap+"\n"), 0o600, pool.Entry{UID: 1000, GID: 1000,
			Xattrs: map[string][]byte{"user.color": []byte("blue"), "user.empty": {}}})
		m[s+"/home/alice/link-a"] = file([]byte("linked content\n"), 0o644, pool.Entry{HardLink: 7, UID: 1000})
		m[s+"/home/alice/sub/link-b"] = file([]byte("linked content\n"), 0o644, pool.Entry{HardLink: 7, UID: 1000})
		m[s+"/home/alice/rel"] = symlink("notes.txt")
		m[s+"/bin/suid"] = file([]byte("#!/bin/true\n"), 0o755|fs.ModeSetuid, pool.Entry{})
		m[s+"/tmp"] = dir(0o777|fs.ModeSticky, 0, 0)
		m[s+"/empty"] = file(nil, 0o644, pool.Entry{})
		m[host+"/latest"] = symlink(snap)
	}
	add("db1", snap1)
	add("web1", snap1)
	m["web1/"+snap1+"/root/var/big.bin"] = file(randBytes(1, bigSize), 0o644, pool.Entry{})
	for _, s := range more {
		add("web1", s)
	}
	return m
}
