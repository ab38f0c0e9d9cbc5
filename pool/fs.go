package pool

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The restore tree: the one reader of snapshots. FUSE, WebDAV, the web UI
// and the CLI restore are adapters over it.
//
//	/<host>/<snapshot-time>/<source>/…   every snapshot (Pool.FS)
//	/<host>/latest -> <snapshot-time>    newest complete snapshot
//
// <snapshot-time> is the manifest's Start in UTC as 2006-01-02T15-04-05Z.
// Symlinks inside snapshots are shown as links and never followed: their
// targets belong to the source host. Only the tree's own "latest" links
// are followed, by Open and Stat, also in the middle of a path.

// SnapshotTimeFormat names snapshot directories in the pool tree.
const SnapshotTimeFormat = "2006-01-02T15-04-05Z"

// LatestName is the per-host link to the newest complete snapshot.
const LatestName = "latest"

// TreeFS is a read-only io/fs view of snapshots. It implements fs.FS,
// fs.ReadDirFS, fs.StatFS and fs.ReadLinkFS. Files implement io.ReaderAt
// and io.Seeker; FileInfo.Sys returns a *Entry (read-only); directories
// implement fs.ReadDirFile. I/O uses the context given at creation.
type TreeFS struct {
	p   *Pool
	ctx context.Context

	mu     sync.Mutex
	root   *fsNode
	err    error
	loader func() (*fsNode, error)
}

var (
	_ fs.ReadDirFS  = (*TreeFS)(nil)
	_ fs.StatFS     = (*TreeFS)(nil)
	_ fs.ReadLinkFS = (*TreeFS)(nil)
)

// fsNode is one name in the tree: a snapshot entry, or a virtual
// directory or link of the pool view.
type fsNode struct {
	e      Entry
	virt   []*fsNode // children of a virtual directory, sorted by name
	isVirt bool
	follow bool // a virtual symlink; e.Target is a sibling name
}

// SnapshotFS returns the tree of one snapshot. The value is a *TreeFS.
func (p *Pool) SnapshotFS(ctx context.Context, m *Manifest) fs.FS {
	root := &fsNode{e: m.RootDir()}
	return &TreeFS{p: p, ctx: ctx, root: root}
}

// FS returns the tree of the whole pool, as of the first access (Refresh
// re-reads the snapshot list). The value is a *TreeFS.
func (p *Pool) FS(ctx context.Context) fs.FS {
	f := &TreeFS{p: p, ctx: ctx}
	f.loader = f.loadPool
	return f
}

// Refresh makes a pool view re-read the snapshot list on next use.
func (f *TreeFS) Refresh() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loader != nil {
		f.root, f.err = nil, nil
	}
}

func (f *TreeFS) rootNode() (*fsNode, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.root == nil && f.err == nil {
		f.root, f.err = f.loader()
	}
	return f.root, f.err
}

func virtDir(name string, mtime time.Time) *fsNode {
	return &fsNode{isVirt: true, e: Entry{Name: name, Type: TypeDir, Mode: 0o555, ModTime: mtime.UnixNano()}}
}

// loadPool builds the virtual levels from every readable manifest.
// Unreadable manifests are left out (Check reports them).
func (f *TreeFS) loadPool() (*fsNode, error) {
	ids, err := f.p.SnapshotIDs(f.ctx)
	if err != nil {
		return nil, err
	}
	root := virtDir(".", f.p.Created())
	hosts := map[string]*fsNode{}
	times := map[string]*fsNode{}
	latest := map[string]*Manifest{}
	for _, id := range ids {
		m, err := f.p.Snapshot(f.ctx, id)
		if err != nil {
			if ctxErr := f.ctx.Err(); ctxErr != nil {
				return nil, ctxErr
			}
			continue
		}
		h := hosts[m.Host]
		if h == nil {
			h = virtDir(m.Host, m.Start)
			hosts[m.Host] = h
			root.virt = append(root.virt, h)
		}
		ts := m.Start.UTC().Format(SnapshotTimeFormat)
		td := times[m.Host+"/"+ts]
		if td == nil {
			td = virtDir(ts, m.Start)
			times[m.Host+"/"+ts] = td
			h.virt = append(h.virt, td)
		}
		name := m.Source
		for _, c := range td.virt {
			if c.e.Name == name {
				name = m.Source + "~" + m.ID
			}
		}
		se := m.RootDir()
		se.Name = name
		td.virt = append(td.virt, &fsNode{e: se})
		for _, n := range []*fsNode{root, h, td} {
			n.e.ModTime = max(n.e.ModTime, m.Start.UnixNano())
		}
		if m.Status == StatusComplete && (latest[m.Host] == nil || !m.Start.Before(latest[m.Host].Start)) {
			latest[m.Host] = m
		}
	}
	for host, m := range latest {
		h := hosts[host]
		h.virt = append(h.virt, &fsNode{isVirt: true, follow: true, e: Entry{
			Name: LatestName, Type: TypeSymlink, Mode: 0o777, ModTime: m.Start.UnixNano(),
			Target: m.Start.UTC().Format(SnapshotTimeFormat),
		}})
	}
	var sortAll func(n *fsNode)
	sortAll = func(n *fsNode) {
		slices.SortFunc(n.virt, func(a, b *fsNode) int { return strings.Compare(a.e.Name, b.e.Name) })
		for _, c := range n.virt {
			sortAll(c)
		}
	}
	sortAll(root)
	return root, nil
}

// child finds name in the directory n.
func (f *TreeFS) child(n *fsNode, name string) (*fsNode, error) {
	if n.isVirt {
		i, ok := slices.BinarySearchFunc(n.virt, name, func(c *fsNode, name string) int { return strings.Compare(c.e.Name, name) })
		if !ok {
			return nil, fs.ErrNotExist
		}
		return n.virt[i], nil
	}
	es, err := f.p.ReadTree(f.ctx, n.e.Subtree)
	if err != nil {
		return nil, err
	}
	i, ok := slices.BinarySearchFunc(es, name, func(e Entry, name string) int { return strings.Compare(e.Name, name) })
	if !ok {
		return nil, fs.ErrNotExist
	}
	return &fsNode{e: es[i]}, nil
}

// children lists the directory n.
func (f *TreeFS) children(n *fsNode) ([]*fsNode, error) {
	if n.isVirt {
		return n.virt, nil
	}
	es, err := f.p.ReadTree(f.ctx, n.e.Subtree)
	if err != nil {
		return nil, err
	}
	out := make([]*fsNode, len(es))
	for i := range es {
		out[i] = &fsNode{e: es[i]}
	}
	return out, nil
}

// resolve walks name, following the tree's own links in the middle of
// the path, and at the end when followLast is set.
func (f *TreeFS) resolve(op, name string, followLast bool) (*fsNode, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	cur, err := f.rootNode()
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	if name == "." {
		return cur, nil
	}
	elems := strings.Split(name, "/")
	for i, el := range elems {
		if cur.e.Type != TypeDir {
			return nil, &fs.PathError{Op: op, Path: name, Err: syscall.ENOTDIR}
		}
		c, err := f.child(cur, el)
		if err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		if c.follow && (i < len(elems)-1 || followLast) {
			t, err := f.child(cur, c.e.Target)
			if err != nil || t.follow {
				return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
			}
			cp := *t
			cp.e.Name = el
			c = &cp
		}
		cur = c
	}
	return cur, nil
}

// Open opens name. Snapshot symlinks open as the link itself (reading
// fails); use ReadLink for the target.
func (f *TreeFS) Open(name string) (fs.File, error) {
	n, err := f.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	info := newInfo(n, name)
	switch n.e.Type {
	case TypeDir:
		return &fsDir{f: f, n: n, info: info, path: name}, nil
	case TypeFile:
		cr, err := f.p.OpenContent(f.ctx, &n.e)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return &fsFile{ContentReader: cr, info: info}, nil
	}
	return &fsSpecial{info: info, path: name}, nil
}

// Stat returns the FileInfo of name, following the tree's own links.
func (f *TreeFS) Stat(name string) (fs.FileInfo, error) {
	n, err := f.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	return newInfo(n, name), nil
}

// Lstat is Stat without following a link at the end of name.
func (f *TreeFS) Lstat(name string) (fs.FileInfo, error) {
	n, err := f.resolve("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return newInfo(n, name), nil
}

// ReadLink returns a symlink's target, verbatim.
func (f *TreeFS) ReadLink(name string) (string, error) {
	n, err := f.resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	if n.e.Type != TypeSymlink {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return n.e.Target, nil
}

// ReadDir lists the directory name, sorted by name.
func (f *TreeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	n, err := f.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if n.e.Type != TypeDir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: syscall.ENOTDIR}
	}
	cs, err := f.children(n)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	out := make([]fs.DirEntry, len(cs))
	for i, c := range cs {
		out[i] = fs.FileInfoToDirEntry(newInfo(c, c.e.Name))
	}
	return out, nil
}

// fileInfo describes an fsNode.
type fileInfo struct {
	e    Entry
	name string
}

func newInfo(n *fsNode, path string) *fileInfo {
	name := path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		name = path[i+1:]
	}
	return &fileInfo{e: n.e, name: name}
}

func (i *fileInfo) Name() string { return i.name }
func (i *fileInfo) Size() int64 {
	switch i.e.Type {
	case TypeFile:
		return i.e.Size
	case TypeSymlink:
		return int64(len(i.e.Target))
	}
	return 0
}
func (i *fileInfo) Mode() fs.FileMode  { return i.e.FileMode() }
func (i *fileInfo) ModTime() time.Time { return time.Unix(0, i.e.ModTime) }
func (i *fileInfo) IsDir() bool        { return i.e.Type == TypeDir }
func (i *fileInfo) Sys() any           { e := i.e; return &e }

// fsFile is an open regular file.
type fsFile struct {
	*ContentReader
	info *fileInfo
}

func (f *fsFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *fsFile) Close() error               { return nil }

// fsSpecial is an open symlink, device, FIFO or socket: metadata only.
type fsSpecial struct {
	info *fileInfo
	path string
}

func (f *fsSpecial) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *fsSpecial) Close() error               { return nil }
func (f *fsSpecial) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: f.path, Err: errors.New("not a regular file")}
}

// fsDir is an open directory.
type fsDir struct {
	f      *TreeFS
	n      *fsNode
	info   *fileInfo
	path   string
	list   []*fsNode
	loaded bool
	off    int
}

func (d *fsDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *fsDir) Close() error               { return nil }
func (d *fsDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.path, Err: syscall.EISDIR}
}

// ReadDir implements fs.ReadDirFile.
func (d *fsDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.loaded {
		cs, err := d.f.children(d.n)
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: d.path, Err: err}
		}
		d.list, d.loaded = cs, true
	}
	rest := d.list[d.off:]
	if n > 0 && len(rest) == 0 {
		return nil, io.EOF
	}
	if n > 0 && n < len(rest) {
		rest = rest[:n]
	}
	d.off += len(rest)
	out := make([]fs.DirEntry, len(rest))
	for i, c := range rest {
		out[i] = fs.FileInfoToDirEntry(newInfo(c, c.e.Name))
	}
	return out, nil
}
