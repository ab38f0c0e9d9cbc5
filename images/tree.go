package images

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// Labels of a file-pool snapshot that stands for an image version (a
// "placeholder": its tree is empty). The appliance writes one per image
// backup, so the catalog, retention, "latest" and the restore tree treat
// an image version like any other snapshot of its host (FORMAT.md §6).
const (
	LabelImage   = "image"         // image name in the image pool
	LabelVersion = "image_version" // version ID
	LabelSize    = "image_size"    // image size in bytes (decimal)
)

// ImagesDir is the directory of a snapshot time that holds its images.
const ImagesDir = "images"

// Placeholder reports whether a file-pool snapshot stands for an image
// version, and which.
func Placeholder(m *pool.Manifest) (name, id string, ok bool) {
	name, id = m.Labels[LabelImage], m.Labels[LabelVersion]
	if validName(name) != nil || validID(id) != nil {
		return "", "", false
	}
	return name, id, true
}

// Tree overlays image versions onto the pool's restore tree (pool.FS):
//
//	/<host>/<snapshot-time>/images/<source>.img
//
// where <snapshot-time> is the placeholder snapshot's start. The
// placeholder's own (empty) source directory is hidden; a file source
// named "images" at the same time is shadowed by the images directory.
// Image files are raw, read-only, with random access (io.ReaderAt,
// io.Seeker); holes read as zeros. Tree implements fs.ReadDirFS,
// fs.StatFS, fs.ReadLinkFS and Refresh (forwarded to base).
type Tree struct {
	base  fs.FS
	p     *pool.Pool
	store func() (*Store, error) // the image pool, opened on first use
	ctx   context.Context

	mu   sync.Mutex
	idx  map[string]*tsImages // "host/time" → its images; nil: not loaded
	err  error
	mans map[string]*Manifest // loaded manifests by name/id (bounded)
}

type tsImages struct {
	time  time.Time
	hide  map[string]bool // placeholder source directory names
	files []imgFile       // sorted by name
}

type imgFile struct {
	name, image, id string
	size            int64
	snap            string // the placeholder snapshot's ID
}

var (
	_ fs.ReadDirFS  = (*Tree)(nil)
	_ fs.StatFS     = (*Tree)(nil)
	_ fs.ReadLinkFS = (*Tree)(nil)
)

// NewTree returns the overlay of base, the restore tree of file pool p.
// store opens the image pool when an image is read (nil error, nil store:
// there is none). ctx bounds the overlay's I/O.
func NewTree(ctx context.Context, base fs.FS, p *pool.Pool, store func() (*Store, error)) *Tree {
	return &Tree{base: base, p: p, store: store, ctx: ctx}
}

// Refresh re-reads the snapshot list (the base's and the overlay's).
func (t *Tree) Refresh() {
	if r, ok := t.base.(interface{ Refresh() }); ok {
		r.Refresh()
	}
	t.mu.Lock()
	t.idx, t.err = nil, nil
	t.mu.Unlock()
}

func (t *Tree) index() (map[string]*tsImages, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.idx != nil || t.err != nil {
		return t.idx, t.err
	}
	ids, err := t.p.SnapshotIDs(t.ctx)
	if err != nil {
		t.err = err
		return nil, err
	}
	idx := map[string]*tsImages{}
	for _, sid := range ids {
		m, err := t.p.Snapshot(t.ctx, sid)
		if err != nil {
			continue // the base leaves it out too
		}
		name, id, ok := Placeholder(m)
		if !ok {
			continue
		}
		ts := m.Start.UTC().Format(pool.SnapshotTimeFormat)
		ti := idx[m.Host+"/"+ts]
		if ti == nil {
			ti = &tsImages{time: m.Start, hide: map[string]bool{}}
			idx[m.Host+"/"+ts] = ti
		}
		// The base names a second snapshot of a source at the same
		// second <source>~<id>: hide both spellings.
		ti.hide[m.Source], ti.hide[m.Source+"~"+m.ID] = true, true
		size, _ := strconv.ParseInt(m.Labels[LabelSize], 10, 64)
		fname := m.Source + ".img"
		for _, f := range ti.files {
			if f.name == fname {
				fname = m.Source + "~" + m.ID + ".img"
			}
		}
		ti.files = append(ti.files, imgFile{name: fname, image: name, id: id, size: size, snap: m.ID})
	}
	for _, ti := range idx {
		slices.SortFunc(ti.files, func(a, b imgFile) int { return strings.Compare(a.name, b.name) })
	}
	t.idx = idx
	return idx, nil
}

// PathOf returns the tree path of the image of placeholder snapshot
// snapID of host: <host>/<time>/images/<source>.img, or with a second
// version of a source in the same second, <source>~<snapshot-id>.img.
func (t *Tree) PathOf(host, snapID string) (string, bool) {
	idx, err := t.index()
	if err != nil {
		return "", false
	}
	for key, ti := range idx {
		if !strings.HasPrefix(key, host+"/") {
			continue
		}
		for _, f := range ti.files {
			if f.snap == snapID {
				return key + "/" + ImagesDir + "/" + f.name, true
			}
		}
	}
	return "", false
}

// at finds the images of the snapshot time named by elems[0]/elems[1]
// ("latest" resolved), or nil.
func (t *Tree) at(elems []string) *tsImages {
	if len(elems) < 2 {
		return nil
	}
	host, ts := elems[0], elems[1]
	if ts == pool.LatestName {
		if rl, ok := t.base.(fs.ReadLinkFS); ok {
			if target, err := rl.ReadLink(host + "/" + ts); err == nil {
				ts = target
			}
		}
	}
	idx, err := t.index()
	if err != nil {
		return nil
	}
	return idx[host+"/"+ts]
}

// route says what an overlay path is: not ours (base), hidden, the
// images directory, or an image file.
type route struct {
	kind int // 0 base, 1 hidden, 2 images dir, 3 image file, 4 snapshot-time dir with images
	ti   *tsImages
	f    imgFile
}

const (
	routeBase = iota
	routeHidden
	routeDir
	routeFile
	routeTime
)

func (t *Tree) route(op, name string) (route, error) {
	if !fs.ValidPath(name) {
		return route{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return route{}, nil
	}
	elems := strings.Split(name, "/")
	ti := t.at(elems)
	if ti == nil {
		return route{}, nil
	}
	switch {
	case len(elems) == 2:
		return route{kind: routeTime, ti: ti}, nil
	case elems[2] == ImagesDir:
		switch len(elems) {
		case 3:
			return route{kind: routeDir, ti: ti}, nil
		case 4:
			i, ok := slices.BinarySearchFunc(ti.files, elems[3], func(f imgFile, n string) int { return strings.Compare(f.name, n) })
			if ok {
				return route{kind: routeFile, ti: ti, f: ti.files[i]}, nil
			}
			return route{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		return route{}, &fs.PathError{Op: op, Path: name, Err: syscall.ENOTDIR}
	case ti.hide[elems[2]]:
		return route{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return route{}, nil
}

// Open opens name; image files are *ImageFile.
func (t *Tree) Open(name string) (fs.File, error) {
	r, err := t.route("open", name)
	if err != nil {
		return nil, err
	}
	switch r.kind {
	case routeDir:
		return &listDir{info: dirInfo{ImagesDir, r.ti.time}, list: t.imageEntries(r.ti), path: name}, nil
	case routeFile:
		return t.openImage(name, r.f, r.ti.time)
	case routeTime:
		f, err := t.base.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return nil, err
		}
		es, err := t.ReadDir(name)
		if err != nil {
			return nil, err
		}
		return &listDir{info: info, list: es, path: name}, nil
	}
	return t.base.Open(name)
}

func (t *Tree) openImage(name string, f imgFile, tm time.Time) (fs.File, error) {
	fail := func(err error) (fs.File, error) { return nil, &fs.PathError{Op: "open", Path: name, Err: err} }
	if t.store == nil {
		return fail(errors.New("no image pool"))
	}
	s, err := t.store()
	if err == nil && s == nil {
		err = errors.New("no image pool")
	}
	if err != nil {
		return fail(err)
	}
	key := f.image + "/" + f.id
	t.mu.Lock()
	m := t.mans[key]
	t.mu.Unlock()
	if m == nil {
		if m, err = s.Load(t.ctx, f.image, f.id); err != nil {
			return fail(err)
		}
		t.mu.Lock()
		if t.mans == nil || len(t.mans) >= 64 {
			t.mans = map[string]*Manifest{}
		}
		t.mans[key] = m
		t.mu.Unlock()
	}
	return &ImageFile{Image: s.Open(t.ctx, m), info: fileInfo{f.name, m.Size, tm}}, nil
}

// ImageFile is an open image of the tree: an *Image named as in the tree.
type ImageFile struct {
	*Image
	info fileInfo
}

// Stat describes the file as the tree names it.
func (f *ImageFile) Stat() (fs.FileInfo, error) { return f.info, nil }

func (t *Tree) imageEntries(ti *tsImages) []fs.DirEntry {
	out := make([]fs.DirEntry, len(ti.files))
	for i, f := range ti.files {
		out[i] = fs.FileInfoToDirEntry(fileInfo{f.name, f.size, ti.time})
	}
	return out
}

// Stat returns the FileInfo of name.
func (t *Tree) Stat(name string) (fs.FileInfo, error) { return t.stat("stat", name) }

// Lstat is Stat without following a final "latest" link.
func (t *Tree) Lstat(name string) (fs.FileInfo, error) { return t.stat("lstat", name) }

func (t *Tree) stat(op, name string) (fs.FileInfo, error) {
	r, err := t.route(op, name)
	if err != nil {
		return nil, err
	}
	switch r.kind {
	case routeDir:
		return dirInfo{ImagesDir, r.ti.time}, nil
	case routeFile:
		return fileInfo{r.f.name, r.f.size, r.ti.time}, nil
	}
	if op == "lstat" {
		if rl, ok := t.base.(fs.ReadLinkFS); ok {
			return rl.Lstat(name)
		}
	}
	return fs.Stat(t.base, name)
}

// ReadLink returns a link's target (only the base has links).
func (t *Tree) ReadLink(name string) (string, error) {
	r, err := t.route("readlink", name)
	if err != nil {
		return "", err
	}
	if r.kind == routeDir || r.kind == routeFile {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return fs.ReadLink(t.base, name)
}

// ReadDir lists name, sorted by name.
func (t *Tree) ReadDir(name string) ([]fs.DirEntry, error) {
	r, err := t.route("readdir", name)
	if err != nil {
		return nil, err
	}
	switch r.kind {
	case routeDir:
		return t.imageEntries(r.ti), nil
	case routeFile:
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: syscall.ENOTDIR}
	case routeTime:
		es, err := fs.ReadDir(t.base, name)
		if err != nil {
			return nil, err
		}
		out := make([]fs.DirEntry, 0, len(es)+1)
		for _, e := range es {
			if !r.ti.hide[e.Name()] && e.Name() != ImagesDir {
				out = append(out, e)
			}
		}
		out = append(out, fs.FileInfoToDirEntry(dirInfo{ImagesDir, r.ti.time}))
		slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
		return out, nil
	}
	return fs.ReadDir(t.base, name)
}

type fileInfo struct {
	name  string
	size  int64
	mtime time.Time
}

func (i fileInfo) Name() string       { return i.name }
func (i fileInfo) Size() int64        { return i.size }
func (i fileInfo) Mode() fs.FileMode  { return 0o444 }
func (i fileInfo) ModTime() time.Time { return i.mtime }
func (i fileInfo) IsDir() bool        { return false }
func (i fileInfo) Sys() any           { return nil }

type dirInfo struct {
	name  string
	mtime time.Time
}

func (i dirInfo) Name() string       { return i.name }
func (i dirInfo) Size() int64        { return 0 }
func (i dirInfo) Mode() fs.FileMode  { return fs.ModeDir | 0o555 }
func (i dirInfo) ModTime() time.Time { return i.mtime }
func (i dirInfo) IsDir() bool        { return true }
func (i dirInfo) Sys() any           { return nil }

// listDir is an open directory with a known listing.
type listDir struct {
	info fs.FileInfo
	list []fs.DirEntry
	path string
	off  int
}

func (d *listDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *listDir) Close() error               { return nil }
func (d *listDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.path, Err: syscall.EISDIR}
}

func (d *listDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.list[d.off:]
	if n > 0 && len(rest) == 0 {
		return nil, io.EOF
	}
	if n > 0 && n < len(rest) {
		rest = rest[:n]
	}
	d.off += len(rest)
	return rest, nil
}
