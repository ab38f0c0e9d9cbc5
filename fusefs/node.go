package fusefs

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/fusefs/blockcache"
	"github.com/cairn-backup/cairn/pool"
)

// tree is what every node of one mount shares.
type tree struct {
	fsys     fs.FS
	log      *slog.Logger
	cache    time.Duration // entries and attributes inside snapshots
	volatile time.Duration // root, host and snapshot-list levels

	refreshEvery time.Duration
	rmu          sync.Mutex
	lastRefresh  time.Time

	blocks  *blockcache.Cache // file blocks, keyed by content digest
	lists   *listings         // regular files of listed directories (siblings.go)
	warming sync.Map          // content id → chan closed when its prefetch ends
	warmed  atomic.Int64      // small files prefetched

	opens, flushes atomic.Int64 // OPEN and FLUSH requests seen (the kernel stops sending them)
}

// Refresher is implemented by trees that read their top levels (the
// snapshot list) once and cache them, like *pool.TreeFS: Refresh makes the
// next access read them again.
type Refresher interface{ Refresh() }

// refresh calls Refresh on the tree, at most once per refreshEvery. It is
// called when the kernel asks about the volatile levels, which it caches
// only briefly, so new snapshots show up within about that time.
func (t *tree) refresh() {
	r, ok := t.fsys.(Refresher)
	if !ok {
		return
	}
	t.rmu.Lock()
	defer t.rmu.Unlock()
	if now := time.Now(); now.Sub(t.lastRefresh) >= t.refreshEvery {
		r.Refresh()
		t.lastRefresh = now
	}
}

// immutable reports whether path p lies inside a snapshot, where nothing
// ever changes: three or more elements (host/snapshot/source…). The root,
// host directories and the snapshot entries themselves (including the
// latest symlink) come and go as backups run and retention prunes.
func immutable(p string) bool {
	return strings.Count(p, "/") >= 2
}

func (t *tree) timeout(p string) time.Duration {
	if immutable(p) {
		return t.cache
	}
	return t.volatile
}

// lstat returns information about p without following a final symlink.
func (t *tree) lstat(p string) (fs.FileInfo, error) {
	if rl, ok := t.fsys.(fs.ReadLinkFS); ok {
		return rl.Lstat(p)
	}
	return fs.Stat(t.fsys, p)
}

// errno maps an io/fs error to the errno the kernel should see.
func (t *tree) errno(op, p string, err error) syscall.Errno {
	var en syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, fs.ErrPermission):
		return syscall.EACCES
	case errors.Is(err, fs.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.As(err, &en):
		return en
	}
	t.log.Warn("restore tree error", "op", op, "path", p, "err", err)
	return syscall.EIO
}

// node is one name in the mounted tree. It keeps only its path; attributes
// are cached when the path is immutable.
type node struct {
	gofs.Inode
	t    *tree
	path string // slash path relative to the tree root, "." for the root

	mu       sync.Mutex
	info     fs.FileInfo // cached Lstat result (immutable paths only)
	dirLinks uint32      // cached link count of a directory, 0 = not yet counted
	rd       *reader     // for reads without a handle (see Open), made on first read
}

// Compile-time checks: the read operations, and every write operation so
// that each one answers EROFS even if the "ro" mount option were lost.
var (
	_ gofs.NodeLookuper       = (*node)(nil)
	_ gofs.NodeGetattrer      = (*node)(nil)
	_ gofs.NodeOpener         = (*node)(nil)
	_ gofs.NodeOpendirHandler = (*node)(nil)
	_ gofs.NodeReadlinker     = (*node)(nil)
	_ gofs.NodeGetxattrer     = (*node)(nil)
	_ gofs.NodeListxattrer    = (*node)(nil)
	_ gofs.NodeStatfser       = (*node)(nil)
	_ gofs.NodeReader         = (*node)(nil)
	_ gofs.NodeFlusher        = (*node)(nil)
	_ gofs.NodeOnForgetter    = (*node)(nil)

	_ gofs.NodeSetattrer      = (*node)(nil)
	_ gofs.NodeCreater        = (*node)(nil)
	_ gofs.NodeMkdirer        = (*node)(nil)
	_ gofs.NodeMknoder        = (*node)(nil)
	_ gofs.NodeLinker         = (*node)(nil)
	_ gofs.NodeSymlinker      = (*node)(nil)
	_ gofs.NodeUnlinker       = (*node)(nil)
	_ gofs.NodeRmdirer        = (*node)(nil)
	_ gofs.NodeRenamer        = (*node)(nil)
	_ gofs.NodeSetxattrer     = (*node)(nil)
	_ gofs.NodeRemovexattrer  = (*node)(nil)
	_ gofs.NodeWriter         = (*node)(nil)
	_ gofs.NodeAllocater      = (*node)(nil)
	_ gofs.NodeCopyFileRanger = (*node)(nil)
	_ gofs.NodeTmpfiler       = (*node)(nil)

	_ gofs.FileReaddirenter = (*dirHandle)(nil)
	_ gofs.FileLookuper     = (*dirHandle)(nil)
	_ gofs.FileSeekdirer    = (*dirHandle)(nil)
	_ gofs.FileReleasedirer = (*dirHandle)(nil)
	_ gofs.FileReader       = (*fileHandle)(nil)
	_ gofs.FileReleaser     = (*fileHandle)(nil)
)

func join(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// stat returns the node's attributes, from the cache when the path is
// immutable.
func (n *node) stat() (fs.FileInfo, syscall.Errno) {
	if immutable(n.path) {
		n.mu.Lock()
		info := n.info
		n.mu.Unlock()
		if info != nil {
			return info, 0
		}
	}
	info, err := n.t.lstat(n.path)
	if err != nil {
		return nil, n.t.errno("stat", n.path, err)
	}
	if immutable(n.path) {
		n.mu.Lock()
		n.info = info
		n.mu.Unlock()
	}
	return info, 0
}

// links counts 2 + the subdirectories of directory p, the traditional link
// count find(1) and others rely on. Inside a snapshot it is counted once.
func (n *node) links(p string, info fs.FileInfo) uint32 {
	if !info.IsDir() {
		return 0
	}
	if immutable(p) {
		n.mu.Lock()
		c := n.dirLinks
		n.mu.Unlock()
		if c != 0 {
			return c
		}
	}
	f, err := n.t.fsys.Open(p)
	if err != nil {
		return 0
	}
	defer f.Close()
	d, ok := f.(fs.ReadDirFile)
	if !ok {
		return 0
	}
	c := uint32(2)
	for {
		ents, err := d.ReadDir(256)
		for _, e := range ents {
			if e.IsDir() {
				c++
			}
		}
		if err != nil || len(ents) == 0 {
			break
		}
	}
	if immutable(p) {
		n.mu.Lock()
		n.dirLinks = c
		n.mu.Unlock()
	}
	return c
}

// child makes (or finds, for hard links and repeat lookups) the inode of
// name with the given attributes, and fills out.
func (n *node) child(ctx context.Context, name string, info fs.FileInfo, out *fuse.EntryOut) *gofs.Inode {
	p := join(n.path, name)
	c := &node{t: n.t, path: p}
	if immutable(p) {
		c.info = info
	}
	ino := inodeFor(p, info)
	in := n.NewInode(ctx, c, gofs.StableAttr{Mode: unixType(info.Mode()), Ino: ino})
	cn, _ := in.Operations().(*node)
	if cn == nil {
		cn = c
	}
	fillAttr(&out.Attr, p, info, cn.links(p, info))
	// A hard link found under another name reports the inode's first path
	// so that every name shows the same inode number.
	out.Attr.Ino = ino
	d := n.t.timeout(p)
	out.SetEntryTimeout(d)
	out.SetAttrTimeout(d)
	return in
}

// Lookup resolves one name, lazily: only that entry is read.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	p := join(n.path, name)
	if !immutable(p) {
		n.t.refresh()
	}
	info, err := n.t.lstat(p)
	if err != nil {
		return nil, n.t.errno("lookup", p, err)
	}
	return n.child(ctx, name, info, out), 0
}

func (n *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if !immutable(n.path) {
		n.t.refresh()
	}
	info, errno := n.stat()
	if errno != 0 {
		return errno
	}
	fillAttr(&out.Attr, n.path, info, n.links(n.path, info))
	out.SetTimeout(n.t.timeout(n.path))
	return 0
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	info, errno := n.stat()
	if errno != 0 {
		return nil, errno
	}
	if e, ok := info.Sys().(*pool.Entry); ok && e.Type == pool.TypeSymlink && immutable(n.path) {
		return []byte(e.Target), 0
	}
	rl, ok := n.t.fsys.(fs.ReadLinkFS)
	if !ok {
		return nil, syscall.EINVAL
	}
	target, err := rl.ReadLink(n.path)
	if err != nil {
		return nil, n.t.errno("readlink", n.path, err)
	}
	return []byte(target), 0
}

func (n *node) xattrs() map[string][]byte {
	info, errno := n.stat()
	if errno != 0 {
		return nil
	}
	if e, ok := info.Sys().(*pool.Entry); ok {
		return e.Xattrs
	}
	return nil
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	v, ok := n.xattrs()[attr]
	if !ok {
		return 0, syscall.ENODATA
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	x := n.xattrs()
	names := make([]string, 0, len(x))
	for k := range x {
		names = append(names, k)
	}
	sort.Strings(names)
	var buf []byte
	for _, k := range names {
		buf = append(buf, k...)
		buf = append(buf, 0)
	}
	if len(dest) < len(buf) {
		return uint32(len(buf)), syscall.ERANGE
	}
	return uint32(copy(dest, buf)), 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize = 4096
	out.Frsize = 4096
	out.NameLen = 255
	return 0
}

const writeFlags = syscall.O_WRONLY | syscall.O_RDWR | syscall.O_CREAT | syscall.O_TRUNC | syscall.O_APPEND

// Open opens a file for reading. Inside a snapshot it answers ENOSYS to a
// read-only open: the kernel takes that as "no OPEN support" and from then
// on opens every file of the mount without asking (FUSE no_open), sends no
// RELEASE either, keeps each file's pages across opens as FOPEN_KEEP_CACHE
// does, and sends reads without a handle, which the node serves from a
// reader of its own (see Read). A cold tar or cp -r of many small files
// then costs one request a file instead of three. Outside snapshots (the
// generic trees of tests; Cairn has no files there) an open gets a handle
// and its pages are dropped on open, until the kernel stops asking.
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	n.t.opens.Add(1)
	if flags&writeFlags != 0 {
		return nil, 0, syscall.EROFS
	}
	if immutable(n.path) {
		return nil, 0, syscall.ENOSYS
	}
	r, errno := n.t.open(n)
	if errno != 0 {
		return nil, 0, errno
	}
	return &fileHandle{r: r}, 0, 0
}

// Read serves a read with the open's handle, or, for opens the kernel did
// not ask about (see Open), with the node's own reader, made on the first
// read and kept until the kernel forgets the inode.
func (n *node) Read(ctx context.Context, f gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h, ok := f.(*fileHandle); ok {
		return h.r.read(dest, off)
	}
	n.mu.Lock()
	r := n.rd
	n.mu.Unlock()
	if r == nil {
		nr, errno := n.t.open(n) // n.stat takes n.mu
		if errno != 0 {
			return nil, errno
		}
		n.mu.Lock()
		if r = n.rd; r == nil {
			n.rd, r = nr, nr
		}
		n.mu.Unlock()
		if r != nr {
			nr.close() // a concurrent first read won
		}
	}
	if off == 0 && immutable(n.path) {
		// A reader starting on the file: the sibling read-ahead's cue.
		n.t.opened(n.path)
	}
	return r.read(dest, off)
}

// Flush answers ENOSYS, after which the kernel sends no FLUSH on close
// for the rest of the mount: nothing is ever written, so there is nothing
// to flush.
func (n *node) Flush(ctx context.Context, f gofs.FileHandle) syscall.Errno {
	n.t.flushes.Add(1)
	return syscall.ENOSYS
}

// OnForget closes the node's reader when the kernel has forgotten the
// inode.
func (n *node) OnForget() {
	n.mu.Lock()
	r := n.rd
	n.rd = nil
	n.mu.Unlock()
	if r != nil {
		r.close()
	}
}

// OpendirHandle returns a streaming directory handle: entries are read from
// the restore tree in batches, never the whole directory at once.
//
// Listings inside snapshots never change, so the kernel may cache them
// (FOPEN_CACHE_DIR); the levels above are listed afresh every time.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	var fl uint32
	if immutable(n.path) {
		fl = fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
	}
	return &dirHandle{n: n}, fl, 0
}

// Write operations: the restore tree is read-only, always.

func (n *node) Setattr(context.Context, gofs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}
func (n *node) Create(context.Context, string, uint32, uint32, *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}
func (n *node) Tmpfile(context.Context, uint32, uint32, *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}
func (n *node) Mkdir(context.Context, string, uint32, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (n *node) Mknod(context.Context, string, uint32, uint32, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (n *node) Link(context.Context, gofs.InodeEmbedder, string, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (n *node) Symlink(context.Context, string, string, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (n *node) Unlink(context.Context, string) syscall.Errno { return syscall.EROFS }
func (n *node) Rmdir(context.Context, string) syscall.Errno  { return syscall.EROFS }
func (n *node) Rename(context.Context, string, gofs.InodeEmbedder, string, uint32) syscall.Errno {
	return syscall.EROFS
}
func (n *node) Setxattr(context.Context, string, []byte, uint32) syscall.Errno { return syscall.EROFS }
func (n *node) Removexattr(context.Context, string) syscall.Errno              { return syscall.EROFS }
func (n *node) Write(context.Context, gofs.FileHandle, []byte, int64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}
func (n *node) Allocate(context.Context, gofs.FileHandle, uint64, uint64, uint32) syscall.Errno {
	return syscall.EROFS
}
func (n *node) CopyFileRange(context.Context, gofs.FileHandle, uint64, *gofs.Inode, gofs.FileHandle, uint64, uint64, uint64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}

// contentID is the block cache identity of a file: its content digest
// when the tree supplies one and the path is inside a snapshot, else ""
// (cached only while open).
func contentID(p string, info fs.FileInfo) string {
	if e, ok := info.Sys().(*pool.Entry); ok && immutable(p) && !e.Content.IsZero() {
		return string(e.Content[:])
	}
	return ""
}

// reader reads one file of the tree. Reads of a file larger than one
// block go through the mount's block cache over ReadAt when the restore
// tree's file supports it, so a read at any offset fetches only the blocks
// it covers, each block is decoded once however many reads want it, and
// sequential readers get read-ahead. Smaller files are read with ReadAt
// directly. It is safe for concurrent use.
type reader struct {
	t    *tree
	path string
	f    fs.File
	ra   io.ReaderAt
	bf   *blockcache.File // nil without ReaderAt, or for a file of one block
	seek io.Seeker

	warmID string // content id of a one-block file (see tree.prefetch)

	mu  sync.Mutex // serialises Seek+Read and the sequential fallback
	pos int64      // sequential fallback: bytes consumed from f
}

// open opens n's file for reading.
func (t *tree) open(n *node) (*reader, syscall.Errno) {
	f, err := t.fsys.Open(n.path)
	if err != nil {
		return nil, t.errno("open", n.path, err)
	}
	r := &reader{t: t, path: n.path, f: f}
	r.ra, _ = f.(io.ReaderAt)
	r.seek, _ = f.(io.Seeker)
	if r.ra != nil {
		if info, errno := n.stat(); errno == 0 && info.Mode().IsRegular() {
			id := contentID(n.path, info)
			if info.Size() > blockcache.BlockSize {
				r.bf = t.blocks.Open(id, r.ra, info.Size())
			} else {
				// One block: nothing to read ahead, and the pool keeps
				// the decoded object; a copy into the block cache would
				// only cost an allocation and a copy.
				r.warmID = id
			}
		}
	}
	return r, 0
}

// blockResult is a read answered from block cache refs, released when
// the reply has been written. Besides fuse.ReadResult it has go-fuse's
// Slices, so the reply is written straight from the blocks.
type blockResult struct {
	refs []blockcache.Ref
	size int
	bufs [][]byte
}

func (b *blockResult) Size() int { return b.size }

func (b *blockResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	if len(b.refs) == 1 {
		return b.refs[0].Data, fuse.OK
	}
	n := 0
	for _, r := range b.refs {
		n += copy(buf[n:], r.Data)
	}
	return buf[:n], fuse.OK
}

func (b *blockResult) Slices() ([][]byte, fuse.Status) {
	if b.bufs == nil {
		for _, r := range b.refs {
			b.bufs = append(b.bufs, r.Data)
		}
	}
	return b.bufs, fuse.OK
}

func (b *blockResult) Done() {
	for _, r := range b.refs {
		r.Release()
	}
	b.refs, b.bufs = nil, nil
}

// fileHandle is one open of a file whose open the kernel asked about.
type fileHandle struct{ r *reader }

func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return h.r.read(dest, off)
}

func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
	h.r.close()
	return 0
}

func (r *reader) read(dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	var (
		n   int
		err error
	)
	switch {
	case r.bf != nil:
		// Straight from the cache, without a copy: the reply is written
		// from the blocks (two across a block boundary), which are held
		// until go-fuse is done with them.
		res := &blockResult{}
		for res.size < len(dest) {
			ref, err := r.bf.Ref(off+int64(res.size), len(dest)-res.size)
			if err == io.EOF {
				break
			}
			if err != nil {
				res.Done()
				return nil, r.t.errno("read", r.path, err)
			}
			res.refs = append(res.refs, ref)
			res.size += len(ref.Data)
		}
		return res, 0
	case r.ra != nil:
		if r.warmID != "" {
			r.t.waitWarm(r.warmID)
		}
		n, err = r.ra.ReadAt(dest, off)
	case r.seek != nil:
		r.mu.Lock()
		if _, err = r.seek.Seek(off, io.SeekStart); err == nil {
			n, err = io.ReadFull(r.f, dest)
		}
		r.mu.Unlock()
	default:
		r.mu.Lock()
		n, err = r.readSequential(dest, off)
		r.mu.Unlock()
	}
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, r.t.errno("read", r.path, err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// readSequential serves files that are only io.Readers: it reopens the
// file to go backwards and discards to go forwards. The caller holds mu.
func (r *reader) readSequential(dest []byte, off int64) (int, error) {
	if off < r.pos {
		f, err := r.t.fsys.Open(r.path)
		if err != nil {
			return 0, err
		}
		r.f.Close()
		r.f, r.pos = f, 0
	}
	if off > r.pos {
		k, err := io.CopyN(io.Discard, r.f, off-r.pos)
		r.pos += k
		if err != nil {
			return 0, err
		}
	}
	n, err := io.ReadFull(r.f, dest)
	r.pos += int64(n)
	return n, err
}

func (r *reader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.f.Close()
}

// dirHandle streams a directory. For READDIRPLUS, go-fuse asks it to look up
// the entry it has just produced, which it answers from the DirEntry it
// already holds instead of reading the entry again.
type dirHandle struct {
	n    *node
	f    fs.File
	rd   fs.ReadDirFile
	buf  []fs.DirEntry
	off  uint64      // entries produced so far
	last fs.DirEntry // the entry produced last
	eof  bool

	files []sibling // regular files so far, for the sibling read-ahead
}

func (d *dirHandle) open() syscall.Errno {
	if d.f != nil {
		d.f.Close()
	}
	d.f, d.rd, d.buf, d.off, d.last, d.eof, d.files = nil, nil, nil, 0, nil, false, nil
	if !immutable(d.n.path) {
		d.n.t.refresh()
	}
	f, err := d.n.t.fsys.Open(d.n.path)
	if err != nil {
		return d.n.t.errno("opendir", d.n.path, err)
	}
	rd, ok := f.(fs.ReadDirFile)
	if !ok {
		f.Close()
		return syscall.ENOTDIR
	}
	d.f, d.rd = f, rd
	return 0
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if d.rd == nil {
		if errno := d.open(); errno != 0 {
			return nil, errno
		}
	}
	if len(d.buf) == 0 && !d.eof {
		ents, err := d.rd.ReadDir(256)
		d.buf = ents
		d.n.t.readSubdirs(d.n.path, ents)
		if err == io.EOF || (err == nil && len(ents) == 0) {
			d.eof = true
		} else if err != nil {
			return nil, d.n.t.errno("readdir", d.n.path, err)
		}
	}
	if len(d.buf) == 0 {
		if d.eof && d.files != nil && immutable(join(d.n.path, "x")) {
			d.n.t.lists.add(&listing{dir: d.n.path, files: d.files, last: -1})
			d.files = nil
		}
		return nil, 0
	}
	e := d.buf[0]
	d.buf = d.buf[1:]
	d.off++
	d.last = e
	p := join(d.n.path, e.Name())
	var info fs.FileInfo
	if e.Type().IsRegular() {
		// Hard links need the entry's Sys() for their shared inode.
		info, _ = e.Info()
		if info != nil && len(d.files) < listMaxEntries/4 {
			d.files = append(d.files, sibling{name: e.Name(), size: info.Size(), id: contentID(p, info)})
		}
	}
	return &fuse.DirEntry{Name: e.Name(), Mode: unixType(e.Type()), Ino: inodeFor(p, info), Off: d.off}, 0
}

func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if d.last != nil && d.last.Name() == name {
		if info, err := d.last.Info(); err == nil {
			if info.Mode()&fs.ModeType == d.last.Type() {
				return d.n.child(ctx, name, info, out), 0
			}
		}
	}
	return d.n.Lookup(ctx, name, out)
}

// Seekdir supports rewinddir and the kernel's restarts: it reopens and
// skips, which is rare (the kernel normally reads a directory in order).
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if d.rd != nil && off == d.off {
		return 0
	}
	if errno := d.open(); errno != 0 {
		return errno
	}
	for d.off < off {
		de, errno := d.Readdirent(ctx)
		if errno != 0 {
			return errno
		}
		if de == nil {
			break
		}
	}
	return 0
}

func (d *dirHandle) Releasedir(ctx context.Context, releaseFlags uint32) {
	if d.f != nil {
		d.f.Close()
	}
}
