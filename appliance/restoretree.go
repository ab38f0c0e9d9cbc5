package appliance

import (
	"context"
	"io"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/appliance/webdav"
)

// The restore tree as the appliance serves it: one pool.TreeFS with the
// image versions overlaid (images.Tree, see images.go), shared by every
// request (the WebDAV share; FUSE has its own), wrapped per principal in a
// hostFilterFS that shows only the hosts the principal may see.

// treeRefreshEvery is the least time between two re-reads of the snapshot
// list by the shared tree.
const treeRefreshEvery = 2 * time.Second

// restoreTree holds the shared pool tree, its refresh throttle and the
// WebDAV share's cache.
type restoreTree struct {
	once sync.Once
	fsys fs.FS         // *images.Tree over the whole pool
	dav  *webdav.Cache // Lstat results and file blocks, shared by every user's view

	mu   sync.Mutex
	last time.Time
}

// tree returns the shared pool tree, creating it on first use. Its I/O is
// not bound to any request: a request's end does not break the next one.
func (s *Server) tree() fs.FS {
	s.rtree.once.Do(func() {
		s.rtree.fsys = s.fullTree(context.Background())
		s.rtree.dav = webdav.NewCache(webdav.CacheOptions{})
	})
	return s.rtree.fsys
}

// davOptions are the WebDAV share's options: one cache across requests and
// users (keyed by real path below the host filter, see webdav.Cache), and
// the pool's immutability rule.
func (s *Server) davOptions() webdav.Options {
	s.tree()
	return webdav.Options{Cache: s.rtree.dav, Immutable: webdav.PoolLayout}
}

// refreshTree makes the shared tree re-read the snapshot list, at most
// every treeRefreshEvery.
func (s *Server) refreshTree() {
	fsys := s.tree()
	s.rtree.mu.Lock()
	defer s.rtree.mu.Unlock()
	if now := time.Now(); now.Sub(s.rtree.last) >= treeRefreshEvery {
		if r, ok := fsys.(interface{ Refresh() }); ok {
			r.Refresh()
		}
		s.rtree.last = now
	}
}

// userTree returns the restore tree as p may see it: all hosts for
// operators and admins, the hosts of their groups for users. Other hosts
// do not exist. Visibility is looked up once per host per returned value,
// so callers make one per request.
func (s *Server) userTree(ctx context.Context, p *principal) fs.FS {
	return &hostFilterFS{base: s.tree(), refresh: s.refreshTree, see: func(host string) (bool, error) {
		return s.canSeeHost(ctx, p, host)
	}}
}

// hostFilterFS is an fs.FS over a pool tree (/<host>/…) that hides the
// hosts see refuses. It implements fs.ReadDirFS, fs.StatFS, fs.ReadLinkFS
// and Refresh (forwarded, throttled).
type hostFilterFS struct {
	base    fs.FS
	refresh func()
	see     func(host string) (bool, error)

	mu   sync.Mutex
	seen map[string]bool
}

var (
	_ fs.ReadDirFS  = (*hostFilterFS)(nil)
	_ fs.StatFS     = (*hostFilterFS)(nil)
	_ fs.ReadLinkFS = (*hostFilterFS)(nil)
)

// visible reports whether host may be shown; a failed lookup hides it.
func (f *hostFilterFS) visible(host string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ok, known := f.seen[host]; known {
		return ok
	}
	ok, err := f.see(host)
	if err != nil {
		ok = false
	} else {
		if f.seen == nil {
			f.seen = map[string]bool{}
		}
		f.seen[host] = ok
	}
	return ok
}

// check fails with not-exist when name is invalid or under a hidden host.
func (f *hostFilterFS) check(op, name string) error {
	if !fs.ValidPath(name) {
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return nil
	}
	host, _, _ := strings.Cut(name, "/")
	if !f.visible(host) {
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return nil
}

// Refresh re-reads the snapshot list of the shared tree (throttled).
func (f *hostFilterFS) Refresh() {
	if f.refresh != nil {
		f.refresh()
	}
}

func (f *hostFilterFS) Open(name string) (fs.File, error) {
	if err := f.check("open", name); err != nil {
		return nil, err
	}
	file, err := f.base.Open(name)
	if err != nil || name != "." {
		return file, err
	}
	d, ok := file.(fs.ReadDirFile)
	if !ok {
		file.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	return &filteredRoot{ReadDirFile: d, f: f}, nil
}

func (f *hostFilterFS) Stat(name string) (fs.FileInfo, error) {
	if err := f.check("stat", name); err != nil {
		return nil, err
	}
	return fs.Stat(f.base, name)
}

func (f *hostFilterFS) Lstat(name string) (fs.FileInfo, error) {
	if err := f.check("lstat", name); err != nil {
		return nil, err
	}
	return fs.Lstat(f.base, name)
}

func (f *hostFilterFS) ReadLink(name string) (string, error) {
	if err := f.check("readlink", name); err != nil {
		return "", err
	}
	return fs.ReadLink(f.base, name)
}

func (f *hostFilterFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if err := f.check("readdir", name); err != nil {
		return nil, err
	}
	es, err := fs.ReadDir(f.base, name)
	if name != "." {
		return es, err
	}
	return f.keep(es), err
}

// keep drops the root entries of hidden hosts.
func (f *hostFilterFS) keep(es []fs.DirEntry) []fs.DirEntry {
	out := es[:0]
	for _, e := range es {
		if f.visible(e.Name()) {
			out = append(out, e)
		}
	}
	return out
}

// filteredRoot is the root directory with hidden hosts left out.
type filteredRoot struct {
	fs.ReadDirFile
	f *hostFilterFS
}

func (d *filteredRoot) ReadDir(n int) ([]fs.DirEntry, error) {
	for {
		es, err := d.ReadDirFile.ReadDir(n)
		kept := d.f.keep(es)
		// With n > 0 an empty batch means EOF to callers: read on while
		// a batch was entirely hidden.
		if n <= 0 || len(kept) > 0 || err != nil || len(es) == 0 {
			if n > 0 && len(kept) == 0 && err == nil {
				err = io.EOF
			}
			return kept, err
		}
	}
}
