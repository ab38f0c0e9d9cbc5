package webdav

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"mime"
	"os"
	"path"
	"strings"

	"golang.org/x/net/webdav"

	"github.com/cairn-backup/cairn/fusefs/blockcache"

	"github.com/cairn-backup/cairn/pool"
)

// maxHops bounds symlink resolution, as the kernel's MAXSYMLINKS does.
const maxHops = 40

// NewFileSystem adapts a read-only fs.FS to x/net/webdav. Every write fails
// with os.ErrPermission. Symlinks are resolved as the package doc describes.
// It caches as NewHandler does with zero Options.
func NewFileSystem(fsys fs.FS) webdav.FileSystem {
	return newFileSystem(fsys, Options{})
}

func newFileSystem(fsys fs.FS, o Options) *fileSystem {
	if o.Cache == nil {
		o.Cache = NewCache(CacheOptions{})
	}
	if o.Immutable == nil {
		if _, ok := fsys.(*pool.TreeFS); ok {
			o.Immutable = PoolLayout
		}
	}
	return &fileSystem{fsys: fsys, cache: o.Cache, immutable: o.Immutable}
}

type fileSystem struct {
	fsys      fs.FS
	cache     *Cache
	immutable func(string) bool // nil: nothing is cached
}

var (
	_ webdav.FileSystem   = (*fileSystem)(nil)
	_ webdav.File         = (*file)(nil)
	_ webdav.ETager       = (*fileInfo)(nil)
	_ webdav.ContentTyper = (*fileInfo)(nil)
)

func (s *fileSystem) Mkdir(ctx context.Context, name string, perm os.FileMode) error {
	return &fs.PathError{Op: "mkdir", Path: name, Err: fs.ErrPermission}
}

func (s *fileSystem) RemoveAll(ctx context.Context, name string) error {
	return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrPermission}
}

func (s *fileSystem) Rename(ctx context.Context, oldName, newName string) error {
	return &fs.PathError{Op: "rename", Path: oldName, Err: fs.ErrPermission}
}

func (s *fileSystem) Stat(ctx context.Context, name string) (os.FileInfo, error) {
	_, info, err := s.resolve(name)
	if err != nil {
		return nil, err
	}
	return info, nil
}

const writeFlags = os.O_WRONLY | os.O_RDWR | os.O_CREATE | os.O_TRUNC | os.O_APPEND

func (s *fileSystem) OpenFile(ctx context.Context, name string, flag int, perm os.FileMode) (webdav.File, error) {
	if flag&writeFlags != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	}
	real, info, err := s.resolve(name)
	if err != nil {
		return nil, err
	}
	// Opened on first use: PROPFIND opens every entry it describes only
	// to Stat it, which needs nothing more than resolve found.
	return &file{s: s, real: real, info: info}, nil
}

// lstat returns information about the real path p (no symlinks in it but
// perhaps the last element), from the cache when p is immutable.
//
// Visibility: the cache is shared by every caller's view of the tree, and
// an immutable path has at least three elements. follow reaches one only
// after asking fsys itself about the first two (the host), so a host that
// fsys hides fails before the cache is consulted.
func (s *fileSystem) lstat(p string) (fs.FileInfo, error) {
	cache := s.immutable != nil && s.immutable(p)
	if cache {
		if info, ok := s.cache.stat(p); ok {
			return info, nil
		}
	}
	var info fs.FileInfo
	var err error
	if rl, ok := s.fsys.(fs.ReadLinkFS); ok {
		info, err = rl.Lstat(p)
	} else {
		info, err = fs.Stat(s.fsys, p)
	}
	if err == nil && cache {
		s.cache.addStat(p, info)
	}
	return info, err
}

func notExist(name string) error {
	return &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

func host(p string) string {
	h, _, _ := strings.Cut(p, "/")
	return h
}

// resolve cleans name and follows symlinks element by element, returning
// the real path in the tree and the target's FileInfo named as the request
// named it.
func (s *fileSystem) resolve(name string) (string, *fileInfo, error) {
	clean, err := CleanPath(name)
	if err != nil {
		return "", nil, err
	}
	if clean == "." {
		info, err := s.lstat(".")
		if err != nil {
			return "", nil, err
		}
		return ".", &fileInfo{FileInfo: info, name: "/"}, nil
	}
	real, info, err := s.follow(strings.Split(clean, "/"))
	if err != nil {
		return "", nil, err
	}
	return real, &fileInfo{FileInfo: info, name: path.Base(clean)}, nil
}

// follow walks the elements in queue from the root.
func (s *fileSystem) follow(queue []string) (string, fs.FileInfo, error) {
	cur, hops := ".", 0
	var info fs.FileInfo
	orig := strings.Join(queue, "/")
	for len(queue) > 0 {
		el := queue[0]
		queue = queue[1:]
		next := el
		if cur != "." {
			next = cur + "/" + el
		}
		fi, err := s.lstat(next)
		if err != nil {
			return "", nil, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			hops++
			rl, ok := s.fsys.(fs.ReadLinkFS)
			if !ok || hops > maxHops {
				return "", nil, notExist(orig)
			}
			target, err := rl.ReadLink(next)
			if err != nil {
				return "", nil, err
			}
			if target == "" || path.IsAbs(target) {
				return "", nil, notExist(orig)
			}
			joined := path.Join(cur, target)
			if joined == "." || joined == ".." || strings.HasPrefix(joined, "../") || host(joined) != host(next) {
				return "", nil, notExist(orig)
			}
			if strings.IndexByte(joined, 0) >= 0 {
				return "", nil, notExist(orig)
			}
			queue = append(strings.Split(joined, "/"), queue...)
			cur = "."
			continue
		}
		if len(queue) > 0 && !fi.IsDir() {
			return "", nil, notExist(orig)
		}
		cur, info = next, fi
	}
	return cur, info, nil
}

// fileInfo names a resolved entry as the request saw it and supplies the
// ETag (the content digest when the pool has one) and content type without
// reading the file.
type fileInfo struct {
	fs.FileInfo
	name string
}

func (fi *fileInfo) Name() string { return fi.name }

func (fi *fileInfo) ETag(ctx context.Context) (string, error) {
	if e, ok := fi.Sys().(*pool.Entry); ok && e.Type == pool.TypeFile {
		if e.Content.IsZero() {
			return `"empty"`, nil
		}
		return `"` + e.Content.String() + `"`, nil
	}
	return "", webdav.ErrNotImplemented
}

func (fi *fileInfo) ContentType(ctx context.Context) (string, error) {
	return contentType(fi.name), nil
}

// contentType is the type of a file by its name's extension alone, so no
// file is opened to sniff it.
func contentType(name string) string {
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// file is an open file or directory. The tree's file is opened on first
// use.
type file struct {
	s      *fileSystem
	f      fs.File       // nil until used
	rs     io.ReadSeeker // nil for directories and unseekable files
	real   string
	info   *fileInfo
	eof    bool // directory fully listed
	closed bool
}

// open opens the tree's file. Regular files with io.ReaderAt larger than
// one block are read through the share's block cache (keyed by content
// digest when the path is immutable), so sequential GETs get read-ahead.
func (f *file) open() error {
	if f.f != nil {
		return nil
	}
	if f.closed {
		return fs.ErrClosed
	}
	tf, err := f.s.fsys.Open(f.real)
	if err != nil {
		return err
	}
	f.f = tf
	if !f.info.IsDir() {
		if ra, ok := tf.(io.ReaderAt); ok {
			size := f.info.Size()
			if size > blockcache.BlockSize {
				id := ""
				if f.s.immutable != nil && f.s.immutable(f.real) {
					id = contentID(f.info)
				}
				ra = f.s.cache.blocks.Open(id, ra, size)
			}
			// A file of one block has nothing to read ahead; the pool
			// keeps its decoded object for a second reader.
			f.rs = io.NewSectionReader(ra, 0, size)
		} else if sk, ok := tf.(io.ReadSeeker); ok {
			f.rs = sk
		}
	}
	return nil
}

// contentID is the block cache identity of a pool file: its content
// digest ("" when there is none).
func contentID(info fs.FileInfo) string {
	if e, ok := info.Sys().(*pool.Entry); ok && e.Type == pool.TypeFile && !e.Content.IsZero() {
		return string(e.Content[:])
	}
	return ""
}

func (f *file) Close() error {
	f.closed = true
	if f.f == nil {
		return nil
	}
	return f.f.Close()
}

func (f *file) Read(p []byte) (int, error) {
	if err := f.open(); err != nil {
		return 0, err
	}
	if f.rs != nil {
		return f.rs.Read(p)
	}
	return f.f.Read(p)
}

func (f *file) Seek(off int64, whence int) (int64, error) {
	if err := f.open(); err != nil {
		return 0, err
	}
	if f.rs == nil {
		return 0, &fs.PathError{Op: "seek", Path: f.real, Err: errors.ErrUnsupported}
	}
	return f.rs.Seek(off, whence)
}

func (f *file) Write(p []byte) (int, error) {
	return 0, &fs.PathError{Op: "write", Path: f.real, Err: fs.ErrPermission}
}

func (f *file) Stat() (fs.FileInfo, error) { return f.info, nil }

// Readdir lists the directory with symlinks replaced by what they point to;
// links that lead nowhere or out of bounds are left out. count <= 0 lists
// everything left.
func (f *file) Readdir(count int) ([]fs.FileInfo, error) {
	if err := f.open(); err != nil {
		return nil, err
	}
	d, ok := f.f.(fs.ReadDirFile)
	if !ok {
		return nil, &fs.PathError{Op: "readdir", Path: f.real, Err: errors.New("not a directory")}
	}
	var out []fs.FileInfo
	for !f.eof && (count <= 0 || len(out) < count) {
		n := 256
		if count > 0 {
			n = count - len(out)
		}
		ents, err := d.ReadDir(n)
		for _, e := range ents {
			if info := f.entryInfo(e); info != nil {
				out = append(out, info)
			}
		}
		if err == io.EOF || (err == nil && len(ents) == 0) {
			f.eof = true
		} else if err != nil {
			return out, err
		}
	}
	if count > 0 && len(out) == 0 {
		return nil, io.EOF
	}
	return out, nil
}

func (f *file) entryInfo(e fs.DirEntry) fs.FileInfo {
	child := e.Name()
	if f.real != "." {
		child = f.real + "/" + child
	}
	if e.Type()&fs.ModeSymlink != 0 {
		_, info, err := f.s.follow(strings.Split(child, "/"))
		if err != nil {
			return nil
		}
		return &fileInfo{FileInfo: info, name: e.Name()}
	}
	info, err := e.Info()
	if err != nil {
		return nil
	}
	// PROPFIND stats every entry it lists next: answer from the cache.
	if f.s.immutable != nil && f.s.immutable(child) {
		f.s.cache.addStat(child, info)
	}
	return &fileInfo{FileInfo: info, name: e.Name()}
}
