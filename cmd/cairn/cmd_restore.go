package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/pool"
)

// applianceRestore, when set by the appliance client, handles `cairn
// restore` run without --pool (HOST/SNAP/path through a running serve).
var applianceRestore func(ctx context.Context, args []string) error

func init() {
	register(&command{name: "restore", short: "restore SNAP[/path] from a pool into a directory (--to DIR)", run: runRestore})
}

func runRestore(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	pf := addPoolFlags(fs)
	to := fs.String("to", "", "directory to restore into (created when missing)")
	host := fs.String("host", "", "with latest: the newest snapshot of this host")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: cairn restore --pool P SNAP[/path] --to DIR\n\n"+
			"Restores a snapshot (or a directory or file in it) into DIR: contents, modes,\n"+
			"mtimes, symlinks, hard links, xattrs and, when run as root, ownership. A directory's\n"+
			"contents go into DIR itself; a file or symlink becomes DIR/<name>. Existing files\n"+
			"of the same name are replaced; nothing outside DIR is ever written.\n\n")
		fs.PrintDefaults()
	}
	if !poolGiven(args) && !slices.Contains(args, "-h") && !slices.Contains(args, "--help") {
		if applianceRestore != nil {
			return applianceRestore(ctx, args)
		}
		return errNoPool
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if pf.location() == "" {
		return errNoPool // --pool ""
	}
	if len(pos) != 1 || *to == "" {
		fs.Usage()
		return errUsage
	}
	ref, rel, err := splitSnapPath(pos[0])
	if err != nil {
		return err
	}
	p, err := pf.open(ctx)
	if err != nil {
		return err
	}
	m, err := resolveSnap(ctx, p, ref, *host)
	if err != nil {
		return err
	}
	e, err := p.Lookup(ctx, m.Root, rel)
	if err != nil {
		if errors.Is(err, pool.ErrNotFound) {
			return fmt.Errorf("%s: no such file or directory in snapshot %s", rel, m.ID)
		}
		return err
	}
	dest, err := filepath.Abs(*to)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return fmt.Errorf("restore target %s: %w", dest, errors.Unwrap(err))
	}
	rootfd, err := unix.Open(dest, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("restore target %s: %w", dest, err)
	}
	defer unix.Close(rootfd)

	var total int64
	if rel == "." {
		total = m.Bytes
	}
	r := &restorer{p: p, dest: dest, rootfd: rootfd, root: os.Geteuid() == 0, links: map[uint64]string{},
		prog: newProgress("restore", total)}
	r.prog.Start()
	r.startWorkers(ctx)
	if e.Type == pool.TypeDir {
		err = r.dir(ctx, rootfd, ".", e.Subtree)
	} else {
		err = r.entry(ctx, rootfd, ".", &e)
	}
	r.finish(ctx, err == nil)
	if err == nil && e.Type == pool.TypeDir && e.ModTime != 0 {
		// DIR takes the metadata of the restored directory (the
		// snapshot root has none: Lookup makes it up).
		r.meta(rootfd, -1, "", ".", &e, dest)
	}
	r.prog.Stop()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "cairn restore: %s%s (%s/%s): %d files, %d dirs, %s restored to %s in %s\n",
		m.ID, suffixPath(rel), m.Host, m.Source, r.files.Load(), r.dirs, fmtBytes(r.bytes.Load()), dest, fmtDuration(r.prog.Elapsed()))
	if n := r.nerr.Load(); n > 0 {
		return fmt.Errorf("%d entries could not be restored (listed above)", n)
	}
	return nil
}

func suffixPath(rel string) string {
	if rel == "." {
		return ""
	}
	return "/" + rel
}

// restorer writes a tree below one directory descriptor. Every name is
// validated, every path is opened relative to its parent's descriptor
// with O_NOFOLLOW, and new files are created under a temporary name and
// renamed into place, so neither a hostile tree nor a symlink or hard
// link already in DIR can make it write outside DIR.
//
// One goroutine walks the tree and creates directories, symlinks and
// special files; file contents are read (and verified) from the pool and
// written by workers. Hard links and directory metadata come last, when
// every file is in place, directories children first.
type restorer struct {
	p      *pool.Pool
	dest   string
	rootfd int
	root   bool              // restore ownership
	links  map[uint64]string // hard-link id → first restored path (relative); walker only
	prog   *progress

	jobs    chan fileJob
	wg      sync.WaitGroup
	later   []laterLink // hard links to make after the files
	postDir []postDir   // directories whose metadata is set last, children first

	files, bytes atomic.Int64
	dirs         int64
	nerr         atomic.Int64
	failMu       sync.Mutex
}

type fileJob struct {
	dirfd int // a duplicate owned by the job
	rel   string
	e     pool.Entry
}

type laterLink struct {
	dirRel, first string
	e             pool.Entry
}

type postDir struct {
	rel string
	e   pool.Entry
}

func (r *restorer) fail(rel string, err error) {
	r.nerr.Add(1)
	r.failMu.Lock()
	defer r.failMu.Unlock()
	fmt.Fprintf(os.Stderr, "%scairn restore: %s: %v\n", r.prog.clear(), quoteName(filepath.Join(r.dest, rel)), err)
}

func (r *restorer) report(rel string) {
	r.prog.Set(progressState{Files: r.files.Load(), Bytes: r.bytes.Load(), Errors: r.nerr.Load(), Path: rel})
}

func (r *restorer) startWorkers(ctx context.Context) {
	n := max(runtime.GOMAXPROCS(0), 2)
	r.jobs = make(chan fileJob, 4*n)
	r.wg.Add(n)
	for range n {
		go func() {
			defer r.wg.Done()
			for j := range r.jobs {
				if ctx.Err() == nil {
					r.file(ctx, j.dirfd, j.rel, &j.e)
					r.report(j.rel)
				}
				unix.Close(j.dirfd)
			}
		}()
	}
}

// finish waits for the file workers, then makes the hard links and sets
// the directories' metadata (when complete is set: not after a failure).
func (r *restorer) finish(ctx context.Context, complete bool) {
	close(r.jobs)
	r.wg.Wait()
	if !complete || ctx.Err() != nil {
		return
	}
	for _, l := range r.later {
		fd, err := r.openDir(l.dirRel)
		if err != nil {
			r.fail(join(l.dirRel, l.e.Name), err)
			continue
		}
		rel := join(l.dirRel, l.e.Name)
		if err := r.linkInto(fd, rel, l.first, &l.e); err != nil {
			// The first of the group failed: copy the content instead.
			r.file(ctx, fd, rel, &l.e)
		}
		unix.Close(fd)
	}
	for _, d := range r.postDir {
		dirRel, name := parentOf(d.rel), path.Base(d.rel)
		pfd, err := r.openDir(dirRel)
		if err != nil {
			r.fail(d.rel, err)
			continue
		}
		fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			r.fail(d.rel, err)
		} else {
			r.meta(fd, pfd, name, d.rel, &d.e, "")
			unix.Close(fd)
		}
		unix.Close(pfd)
	}
}

// openDir opens the restored directory rel (relative to the restore
// root) one element at a time, never following a symlink.
func (r *restorer) openDir(rel string) (int, error) {
	fd, err := unix.Dup(r.rootfd)
	if err != nil || rel == "." {
		return fd, err
	}
	for el := range strings.SplitSeq(rel, "/") {
		nfd, err := unix.Openat(fd, el, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, fmt.Errorf("open directory %s: %w", rel, err)
		}
		fd = nfd
	}
	return fd, nil
}

func join(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// dir restores the entries of tree into the open directory fd (rel).
// Only a failure to read the tree or cancellation is returned; entry
// failures are reported and counted.
func (r *restorer) dir(ctx context.Context, fd int, rel string, tree pool.Digest) error {
	entries, err := r.p.ReadTree(ctx, tree)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", rel, err)
	}
	for i := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.entry(ctx, fd, rel, &entries[i]); err != nil {
			return err
		}
	}
	return nil
}

func tempName() string {
	var b [8]byte
	rand.Read(b[:])
	return ".cairn-restore-" + hex.EncodeToString(b[:])
}

// entry restores e into the directory dirfd (relative path dirRel).
func (r *restorer) entry(ctx context.Context, dirfd int, dirRel string, e *pool.Entry) error {
	if !pool.ValidName(e.Name) {
		r.fail(dirRel, fmt.Errorf("refusing entry with invalid name %q", e.Name))
		return nil
	}
	rel := join(dirRel, e.Name)
	defer r.report(rel)
	switch e.Type {
	case pool.TypeDir:
		if err := unix.Mkdirat(dirfd, e.Name, 0o700); err != nil && err != unix.EEXIST {
			r.fail(rel, fmt.Errorf("mkdir: %w", err))
			return nil
		}
		fd, err := unix.Openat(dirfd, e.Name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if err == unix.ELOOP || err == unix.ENOTDIR {
				err = errors.New("exists and is not a directory")
			}
			r.fail(rel, err)
			return nil
		}
		defer unix.Close(fd)
		r.dirs++
		if err := r.dir(ctx, fd, rel, e.Subtree); err != nil {
			if ctx.Err() != nil {
				return err
			}
			r.fail(rel, err)
		}
		// After every child is in place (finish), so their creation does
		// not bump the mtime and a read-only mode does not stop them.
		r.postDir = append(r.postDir, postDir{rel: rel, e: *e})
		return nil
	case pool.TypeFile:
		if e.HardLink != 0 {
			if first, ok := r.links[e.HardLink]; ok {
				r.later = append(r.later, laterLink{dirRel: dirRel, first: first, e: *e})
				return nil
			}
			r.links[e.HardLink] = rel
		}
		dfd, err := unix.Dup(dirfd)
		if err != nil {
			return fmt.Errorf("restore %s: %w", rel, err)
		}
		select {
		case r.jobs <- fileJob{dirfd: dfd, rel: rel, e: *e}:
		case <-ctx.Done():
			unix.Close(dfd)
			return ctx.Err()
		}
		return nil
	}
	tmp := tempName()
	var err error
	switch e.Type {
	case pool.TypeSymlink:
		err = unix.Symlinkat(e.Target, dirfd, tmp)
	case pool.TypeFIFO:
		err = unix.Mknodat(dirfd, tmp, unix.S_IFIFO|0o600, 0)
	case pool.TypeCharDev:
		err = unix.Mknodat(dirfd, tmp, unix.S_IFCHR|0o600, int(e.Rdev))
	case pool.TypeBlockDev:
		err = unix.Mknodat(dirfd, tmp, unix.S_IFBLK|0o600, int(e.Rdev))
	case pool.TypeSocket:
		err = unix.Mknodat(dirfd, tmp, unix.S_IFSOCK|0o600, 0)
	default:
		err = fmt.Errorf("unknown entry type %d", e.Type)
	}
	if err != nil {
		r.fail(rel, fmt.Errorf("create %s: %w", e.Type, err))
		return nil
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, e.Name); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		r.fail(rel, fmt.Errorf("rename into place: %w", err))
		return nil
	}
	r.files.Add(1)
	r.meta(-1, dirfd, e.Name, rel, e, "")
	return nil
}

// file restores a regular file's content and metadata. Failures are
// reported and counted. Safe for concurrent use.
func (r *restorer) file(ctx context.Context, dirfd int, rel string, e *pool.Entry) {
	tmp := tempName()
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		r.fail(rel, fmt.Errorf("create: %w", err))
		return
	}
	n, err := r.copyContent(ctx, fdWriter(fd), e)
	if err == nil {
		r.meta(fd, -1, "", rel, e, "")
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(dirfd, tmp, dirfd, e.Name)
	}
	if err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		if ctx.Err() == nil {
			r.fail(rel, err)
		}
		return
	}
	r.bytes.Add(n)
	r.files.Add(1)
	r.times(dirfd, e.Name, rel, e)
}

// linkInto hard-links the restored file first (relative to the restore
// root) as e.Name in dirfd.
func (r *restorer) linkInto(dirfd int, rel, first string, e *pool.Entry) error {
	tmp := tempName()
	if err := r.link(first, dirfd, tmp); err != nil {
		return err
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, e.Name); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		r.fail(rel, fmt.Errorf("rename into place: %w", err))
		return nil
	}
	r.files.Add(1)
	return nil
}

// fdWriter writes to a raw descriptor: no os.File (whose NewFile costs
// an fcntl per restored file) between the content and the kernel.
type fdWriter int

func (w fdWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(int(w), p[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("write: %w", err)
		}
		if m == 0 {
			return n, io.ErrShortWrite
		}
		n += m
	}
	return n, nil
}

func (r *restorer) copyContent(ctx context.Context, f io.Writer, e *pool.Entry) (int64, error) {
	if e.Size == 0 {
		return 0, nil
	}
	cr, err := r.p.OpenContent(ctx, e)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, cr)
	if err != nil {
		return n, err
	}
	if n != e.Size {
		return n, fmt.Errorf("content is %d bytes, entry says %d", n, e.Size)
	}
	return n, nil
}

// link hard-links the earlier restored file first (relative to the
// restore root) as name in dirfd, walking to it without following links.
func (r *restorer) link(first string, dirfd int, name string) error {
	fd, err := r.openDir(parentOf(first))
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Linkat(fd, path.Base(first), dirfd, name, 0)
}

// meta applies ownership, xattrs and mode to a restored entry, through
// fd when it is open (≥ 0), else by name in dirfd without following a
// symlink; then mtimes, except for files (set after their rename). abs,
// when set, is the path of fd for the mtime (the restore root itself).
func (r *restorer) meta(fd, dirfd int, name, rel string, e *pool.Entry, abs string) {
	perm := uint32(e.Mode.Perm()) | unixSpecialBits(e.Mode)
	if r.root {
		var err error
		if fd >= 0 {
			err = unix.Fchown(fd, int(e.UID), int(e.GID))
		} else {
			err = unix.Fchownat(dirfd, name, int(e.UID), int(e.GID), unix.AT_SYMLINK_NOFOLLOW)
		}
		if err != nil {
			r.fail(rel, fmt.Errorf("chown %d:%d: %w", e.UID, e.GID, err))
		}
	}
	if fd >= 0 {
		for k, v := range e.Xattrs {
			if err := unix.Fsetxattr(fd, k, v, 0); err != nil && err != unix.ENOTSUP {
				r.fail(rel, fmt.Errorf("set xattr %s: %w", k, err))
			}
		}
		if err := unix.Fchmod(fd, perm); err != nil {
			r.fail(rel, fmt.Errorf("chmod: %w", err))
		}
	} else if e.Type != pool.TypeSymlink {
		// A node we just created under a temporary name and renamed: not
		// a symlink, so fchmodat cannot be redirected.
		if err := unix.Fchmodat(dirfd, name, perm, 0); err != nil {
			r.fail(rel, fmt.Errorf("chmod: %w", err))
		}
	}
	switch {
	case abs != "":
		r.timesPath(unix.AT_FDCWD, abs, rel, e, 0)
	case e.Type != pool.TypeFile:
		r.times(dirfd, name, rel, e)
	}
}

func (r *restorer) times(dirfd int, name, rel string, e *pool.Entry) {
	r.timesPath(dirfd, name, rel, e, unix.AT_SYMLINK_NOFOLLOW)
}

func (r *restorer) timesPath(dirfd int, name, rel string, e *pool.Entry, flags int) {
	ts := unix.NsecToTimespec(e.ModTime)
	if err := unix.UtimesNanoAt(dirfd, name, []unix.Timespec{ts, ts}, flags); err != nil {
		r.fail(rel, fmt.Errorf("set mtime: %w", err))
	}
}
