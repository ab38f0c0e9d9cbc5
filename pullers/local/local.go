package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/internal/walk"
)

// Method is the source method name this puller registers.
const Method = "local"

func init() {
	pullers.Register(Method, func() pullers.Puller { return New() })
}

// Puller pulls a local directory. The zero value is ready to use; one
// Puller may run several pulls at once.
type Puller struct {
	// MaxEntries caps the names read from one directory (0: no cap: the
	// tree is the appliance's own); Options["max_dir_entries"]
	// overrides it.
	MaxEntries int
}

// ErrTooManyEntries marks a directory cut at the names cap
// (Options["max_dir_entries"]): the first names read are kept.
var ErrTooManyEntries = errors.New("directory has too many entries")

var _ pullers.Puller = (*Puller)(nil)

// New returns a local-directory puller.
func New() *Puller { return &Puller{} }

// Pull walks j.Source.Path into j.Sink. See the package documentation.
func (p *Puller) Pull(ctx context.Context, j *pullers.Job) error {
	if j == nil || j.Sink == nil {
		return errors.New("local pull: no sink")
	}
	src := j.Source.Path
	if src == "" {
		return errors.New("local pull: no source path")
	}
	root, err := filepath.Abs(src)
	if err != nil {
		return fmt.Errorf("local %s: %w", src, err)
	}
	w := &walker{
		j:     j,
		root:  root,
		links: map[devIno]uint64{},
		names: newOwnerCache(),
		max:   p.MaxEntries,
	}
	if v := j.Source.Options["max_dir_entries"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("local %s: option max_dir_entries=%q: want a positive number of names per directory: %w", root, v, pullers.ErrPermanent)
		}
		w.max = n
	}
	if v, ok := j.Source.Options["one_file_system"]; ok && v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("local %s: option one_file_system=%q: want true or false", root, v)
		}
		w.oneFS = b
	}
	if w.excludes, err = walk.ParseExcludes(j.Source.Excludes); err != nil {
		return fmt.Errorf("local %s: %w", root, err)
	}
	// The root is what the user named: follow it if it is a symlink.
	fd, err := openRetry(func() (int, error) {
		return unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return fmt.Errorf("local %s: open source: %w", root, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("local %s: stat source: %w", root, err)
	}
	w.rootDev = st.Dev
	e := w.entry(".", &st)
	e.Xattrs = w.xattrsFd(fd, ".")
	if err := w.j.Sink.Add(ctx, ".", e, nil); err != nil {
		return fmt.Errorf("local %s: store the root: %w", root, err)
	}
	w.added(".", &e)
	if err := w.walkDir(ctx, fd, ""); err != nil {
		return err
	}
	w.report("") // final counts, including errors after the last entry
	return nil
}

type devIno struct{ dev, ino uint64 }

// walker is the state of one pull. It is used by one goroutine.
type walker struct {
	j        *pullers.Job
	root     string
	excludes walk.Excludes
	oneFS    bool
	rootDev  uint64
	links    map[devIno]uint64
	names    *ownerCache
	prog     pullers.Progress
	dirbuf   []byte
	max      int // names per directory; 0: no cap
}

// recordError notes a per-file failure and counts it.
func (w *walker) recordError(rel string, err error) {
	w.prog.Errors++
	w.j.Sink.RecordError(rel, fmt.Errorf("local %s: %w", filepath.Join(w.root, rel), err))
}

func (w *walker) report(rel string) {
	w.prog.Path = rel
	if w.j.Progress != nil {
		w.j.Progress(w.prog)
	}
}

// add hands one entry to the sink. An entry the sink rejects
// (pool.ErrEntry) is a per-file error and stored is false; any other sink
// failure fails the pull.
func (w *walker) add(ctx context.Context, rel string, e pool.Entry, r io.Reader) (stored bool, err error) {
	if err := w.j.Sink.Add(ctx, rel, e, r); err != nil {
		return false, w.addFailed(ctx, rel, err)
	}
	w.added(rel, &e)
	return true, nil
}

func (w *walker) addFailed(ctx context.Context, rel string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, pool.ErrEntry) {
		w.recordError(rel, err)
		return nil
	}
	return fmt.Errorf("local %s: store %s: %w", w.root, rel, err)
}

func (w *walker) added(rel string, e *pool.Entry) {
	w.prog.Files++
	if e.Type == pool.TypeFile {
		w.prog.Bytes += e.Size
	}
	w.report(rel)
}

// readNames returns the names in the open directory fd, sorted bytewise:
// at most w.max of them (the first read), with ErrTooManyEntries when
// there were more.
func (w *walker) readNames(fd int) ([]string, error) {
	if w.dirbuf == nil {
		w.dirbuf = make([]byte, 64<<10)
	}
	var names []string
	for {
		n, err := unix.ReadDirent(fd, w.dirbuf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			sortStrings(names)
			return names, err
		}
		if n <= 0 {
			break
		}
		if w.max <= 0 {
			_, _, names = unix.ParseDirent(w.dirbuf[:n], -1, names)
			continue
		}
		// One name past the cap tells that there are more.
		_, _, names = unix.ParseDirent(w.dirbuf[:n], w.max+1-len(names), names)
		if len(names) > w.max {
			names = names[:w.max]
			sortStrings(names)
			return names, fmt.Errorf("%w: more than %d names; kept the first %d read (option max_dir_entries)", ErrTooManyEntries, w.max, w.max)
		}
	}
	sortStrings(names)
	return names, nil
}

// walkDir emits the children of the open directory dirfd, whose path
// relative to the root is rel ("" for the root).
func (w *walker) walkDir(ctx context.Context, dirfd int, rel string) error {
	names, err := w.readNames(dirfd)
	if errors.Is(err, ErrTooManyEntries) {
		w.recordError(relOrDot(rel), err)
	} else if err != nil {
		w.recordError(relOrDot(rel), fmt.Errorf("read directory: %w", err))
		// Go on with the names read so far.
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		child := name
		if rel != "" {
			child = rel + "/" + name
		}
		if w.excludes.Match(child) {
			continue
		}
		if !pool.ValidName(name) {
			w.recordError(child, fmt.Errorf("name %q cannot be stored", name))
			continue
		}
		if err := w.visit(ctx, dirfd, name, child); err != nil {
			return err
		}
	}
	return nil
}

func relOrDot(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

// visit handles one name in the directory dirfd.
func (w *walker) visit(ctx context.Context, dirfd int, name, rel string) error {
	var st unix.Stat_t
	if err := fstatatRetry(dirfd, name, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			w.recordError(rel, errors.New("vanished during backup"))
		} else {
			w.recordError(rel, fmt.Errorf("stat: %w", err))
		}
		return nil
	}
	e := w.entry(name, &st)
	switch e.Type {
	case pool.TypeDir:
		return w.visitDir(ctx, dirfd, name, rel, e, &st)
	case pool.TypeFile:
		return w.visitFile(ctx, dirfd, name, rel, e, &st)
	case pool.TypeSymlink:
		target, err := readlinkat(dirfd, name, st.Size)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				w.recordError(rel, errors.New("vanished during backup"))
			} else {
				w.recordError(rel, fmt.Errorf("readlink: %w", err))
			}
			return nil
		}
		e.Target = target
		e.Xattrs = w.xattrsAt(dirfd, name, rel)
		_, err = w.add(ctx, rel, e, nil)
		return err
	default:
		e.Xattrs = w.xattrsAt(dirfd, name, rel)
		_, err := w.add(ctx, rel, e, nil)
		return err
	}
}

func (w *walker) visitDir(ctx context.Context, dirfd int, name, rel string, e pool.Entry, st *unix.Stat_t) error {
	if w.oneFS && st.Dev != w.rootDev {
		// A mount point: keep the directory itself, not what is mounted.
		e.Xattrs = w.xattrsAt(dirfd, name, rel)
		_, err := w.add(ctx, rel, e, nil)
		return err
	}
	fd, err := openRetry(func() (int, error) {
		return unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			w.recordError(rel, errors.New("vanished during backup"))
			return nil
		}
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			w.recordError(rel, errors.New("replaced during backup"))
			return nil
		}
		// Keep the directory with its metadata (so a restore recreates
		// it), but its contents are missing.
		w.recordError(rel, fmt.Errorf("open directory: %w", err))
		e.Xattrs = w.xattrsAt(dirfd, name, rel)
		_, err = w.add(ctx, rel, e, nil)
		return err
	}
	defer unix.Close(fd)
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil || fst.Dev != st.Dev || fst.Ino != st.Ino {
		w.recordError(rel, errors.New("replaced during backup"))
		return nil
	}
	e = w.entry(name, &fst)
	e.Xattrs = w.xattrsFd(fd, rel)
	if stored, err := w.add(ctx, rel, e, nil); !stored || err != nil {
		return err // a rejected directory: its children would be too
	}
	return w.walkDir(ctx, fd, rel)
}

func (w *walker) visitFile(ctx context.Context, dirfd int, name, rel string, e pool.Entry, st *unix.Stat_t) error {
	if prev, ok := w.previous(ctx, rel); ok && prev.Type == pool.TypeFile &&
		prev.Size == e.Size && prev.ModTime == e.ModTime &&
		e.Size > 0 && !prev.Content.IsZero() {
		skip := e
		skip.Content, skip.Chunked = prev.Content, prev.Chunked
		skip.Xattrs = w.xattrsAt(dirfd, name, rel)
		err := w.j.Sink.Add(ctx, rel, skip, nil)
		if err == nil {
			w.prog.Skipped++
			w.added(rel, &skip)
			return nil
		}
		if !errors.Is(err, pool.ErrContentMissing) || ctx.Err() != nil {
			return w.addFailed(ctx, rel, err)
		}
		// The content was quarantined or collected since: read the file
		// again, which also heals the pool.
	}
	if e.Size == 0 {
		e.Xattrs = w.xattrsAt(dirfd, name, rel)
		_, err := w.add(ctx, rel, e, eofReader{})
		return err
	}
	fd, err := openFileAt(dirfd, name)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			w.recordError(rel, errors.New("vanished during backup"))
		case errors.Is(err, unix.ELOOP):
			w.recordError(rel, errors.New("replaced during backup"))
		default:
			w.recordError(rel, fmt.Errorf("open: %w", err))
		}
		return nil
	}
	defer unix.Close(fd)
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil || fst.Dev != st.Dev || fst.Ino != st.Ino || fst.Mode&unix.S_IFMT != unix.S_IFREG {
		w.recordError(rel, errors.New("replaced during backup"))
		return nil
	}
	// Metadata from the open file: it is what we read.
	e = w.entry(name, &fst)
	e.Xattrs = w.xattrsFd(fd, rel)
	r := &fileReader{ctx: ctx, fd: fd, size: e.Size, left: e.Size}
	if err := w.j.Sink.Add(ctx, rel, e, r); err != nil {
		if r.err != nil && ctx.Err() == nil {
			// The file failed, not the sink.
			w.recordError(rel, r.err)
			return nil
		}
		return w.addFailed(ctx, rel, err)
	}
	if r.left == 0 && r.grew() {
		w.recordError(rel, fmt.Errorf("file grew while being read; stored its first %d bytes", e.Size))
	}
	w.added(rel, &e)
	return nil
}

// previous looks rel up in the previous snapshot. A failing lookup only
// costs the skip.
func (w *walker) previous(ctx context.Context, rel string) (pool.Entry, bool) {
	if w.j.Previous == nil {
		return pool.Entry{}, false
	}
	e, ok, err := w.j.Previous.Lookup(ctx, rel)
	if err != nil || !ok {
		return pool.Entry{}, false
	}
	return e, true
}

// entry converts a stat result into an Entry (no content, target or
// xattrs yet).
func (w *walker) entry(name string, st *unix.Stat_t) pool.Entry {
	e := pool.Entry{
		Name:    name,
		Type:    fileType(st.Mode),
		Mode:    fileMode(st.Mode),
		UID:     st.Uid,
		GID:     st.Gid,
		User:    w.names.user(st.Uid),
		Group:   w.names.group(st.Gid),
		ModTime: st.Mtim.Nano(),
	}
	switch e.Type {
	case pool.TypeFile:
		e.Size = st.Size
	case pool.TypeCharDev, pool.TypeBlockDev:
		e.Rdev = st.Rdev
	}
	if e.Type != pool.TypeDir && st.Nlink > 1 {
		k := devIno{st.Dev, st.Ino}
		id, ok := w.links[k]
		if !ok {
			id = uint64(len(w.links) + 1)
			w.links[k] = id
		}
		e.HardLink = id
	}
	return e
}

// openFileAt opens a regular file for reading without following a
// symlink and without blocking on a FIFO swapped in. O_NOATIME is tried
// first and dropped when we do not own the file.
func openFileAt(dirfd int, name string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY
	fd, err := openRetry(func() (int, error) { return unix.Openat(dirfd, name, flags|unix.O_NOATIME, 0) })
	if err == unix.EPERM {
		fd, err = openRetry(func() (int, error) { return unix.Openat(dirfd, name, flags, 0) })
	}
	return fd, err
}

func openRetry(f func() (int, error)) (int, error) {
	for {
		fd, err := f()
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func fstatatRetry(dirfd int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

// readlinkat reads a symlink's target verbatim. size is the lstat size, a
// hint only (some filesystems report 0).
func readlinkat(dirfd int, name string, size int64) (string, error) {
	n := int(size) + 1
	if n < 128 {
		n = 128
	}
	for {
		buf := make([]byte, n)
		got, err := unix.Readlinkat(dirfd, name, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", err
		}
		if got < n {
			return string(buf[:got]), nil
		}
		if n >= 1<<20 {
			return "", errors.New("symlink target too long")
		}
		n *= 4
	}
}

func fileType(m uint32) pool.EntryType {
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		return pool.TypeDir
	case unix.S_IFLNK:
		return pool.TypeSymlink
	case unix.S_IFCHR:
		return pool.TypeCharDev
	case unix.S_IFBLK:
		return pool.TypeBlockDev
	case unix.S_IFIFO:
		return pool.TypeFIFO
	case unix.S_IFSOCK:
		return pool.TypeSocket
	}
	return pool.TypeFile
}
