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
	"path/filepath"
	"slices"
	"strings"

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
	if e.Type == pool.TypeDir {
		err = r.dir(ctx, rootfd, ".", e.Subtree)
		if err == nil && e.ModTime != 0 {
			// DIR takes the metadata of the restored directory (the
			// snapshot root has none: Lookup makes it up).
			r.meta(rootfd, -1, "", ".", &e, dest)
		}
	} else {
		err = r.entry(ctx, rootfd, ".", &e)
	}
	r.prog.Stop()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "cairn restore: %s%s (%s/%s): %d files, %d dirs, %s restored to %s in %s\n",
		m.ID, suffixPath(rel), m.Host, m.Source, r.files, r.dirs, fmtBytes(r.bytes), dest, fmtDuration(r.prog.Elapsed()))
	if r.nerr > 0 {
		return fmt.Errorf("%d entries could not be restored (listed above)", r.nerr)
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
type restorer struct {
	p      *pool.Pool
	dest   string
	rootfd int
	root   bool              // restore ownership
	links  map[uint64]string // hard-link id → first restored path (relative)
	prog   *progress

	files, dirs, bytes int64
	nerr               int
}

func (r *restorer) fail(rel string, err error) {
	r.nerr++
	fmt.Fprintf(os.Stderr, "\r\x1b[Kcairn restore: %s: %v\n", quoteName(filepath.Join(r.dest, rel)), err)
}

func (r *restorer) report(rel string) {
	r.prog.Set(progressState{Files: r.files + r.dirs, Bytes: r.bytes, Errors: int64(r.nerr), Path: rel})
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
		// After the children, so their creation does not bump the mtime
		// and a read-only mode does not stop them.
		r.meta(fd, dirfd, e.Name, rel, e, "")
		return nil
	case pool.TypeFile:
		return r.file(ctx, dirfd, rel, e)
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
	r.files++
	r.meta(-1, dirfd, e.Name, rel, e, "")
	return nil
}

// file restores a regular file, or links it to an earlier restored member
// of its hard-link group.
func (r *restorer) file(ctx context.Context, dirfd int, rel string, e *pool.Entry) error {
	tmp := tempName()
	if first, ok := r.links[e.HardLink]; ok && e.HardLink != 0 {
		if err := r.link(first, dirfd, tmp); err == nil {
			if err := unix.Renameat(dirfd, tmp, dirfd, e.Name); err != nil {
				unix.Unlinkat(dirfd, tmp, 0)
				r.fail(rel, fmt.Errorf("rename into place: %w", err))
				return nil
			}
			r.files++
			return nil
		}
		// Fall back to a copy of the content.
	}
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		r.fail(rel, fmt.Errorf("create: %w", err))
		return nil
	}
	f := os.NewFile(uintptr(fd), rel)
	n, err := r.copyContent(ctx, f, e)
	if err == nil {
		r.meta(fd, -1, "", rel, e, "")
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(dirfd, tmp, dirfd, e.Name)
	}
	if err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.fail(rel, err)
		return nil
	}
	r.bytes += n
	r.files++
	r.times(dirfd, e.Name, rel, e)
	if e.HardLink != 0 {
		r.links[e.HardLink] = rel
	}
	return nil
}

func (r *restorer) copyContent(ctx context.Context, f *os.File, e *pool.Entry) (int64, error) {
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
	dir, base := ".", first
	if i := strings.LastIndexByte(first, '/'); i >= 0 {
		dir, base = first[:i], first[i+1:]
	}
	fd, err := unix.Dup(r.rootfd)
	if err != nil {
		return err
	}
	if dir != "." {
		for el := range strings.SplitSeq(dir, "/") {
			nfd, err := unix.Openat(fd, el, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			unix.Close(fd)
			if err != nil {
				return err
			}
			fd = nfd
		}
	}
	defer unix.Close(fd)
	return unix.Linkat(fd, base, dirfd, name, 0)
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
