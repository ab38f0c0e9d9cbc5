package sftp

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/pkg/sftp"

	"github.com/cairn-backup/cairn/pullers"
)

// RestoreOptions say where a restore writes.
type RestoreOptions struct {
	// Dest is the remote directory to create and fill. Empty: a new
	// directory "cairn-restore-<UTC time>" inside the source's first path.
	Dest string
	// InPlace writes into the source path itself (or Dest, which must
	// then exist), replacing files of the same name. Only when asked.
	InPlace bool
	// Now names the default directory; nil is time.Now.
	Now func() time.Time
}

// RestoreResult is what a restore wrote.
type RestoreResult struct {
	Dest                  string // the remote directory written into
	Files, Dirs, Symlinks int64
	Bytes                 int64
	Errors                []string // per-entry failures ("rel: error")
}

// RestoreDirName is the default directory name for a restore started at t.
func RestoreDirName(t time.Time) string {
	return "cairn-restore-" + t.UTC().Format("20060102T150405Z")
}

// Restore writes the subtree of fsys (a snapshot tree, pool.SnapshotFS or a
// subtree of pool.FS) back to the host of s over SFTP, keeping mode and
// mtime; symlinks are recreated verbatim, hard links become copies.
// Entries that fail are listed in RestoreResult.Errors; an error return
// means the restore could not run (login, destination).
func Restore(ctx context.Context, fsys fs.FS, subtree string, s pullers.Source, o RestoreOptions) (*RestoreResult, error) {
	return New().Restore(ctx, fsys, subtree, s, o)
}

// Restore is the package-level Restore with this Puller's Dial, host-key
// report and limits.
func (p *Puller) Restore(ctx context.Context, fsys fs.FS, subtree string, s pullers.Source, o RestoreOptions) (*RestoreResult, error) {
	t, err := parseTarget(s)
	if err != nil {
		return nil, err
	}
	if subtree == "" {
		subtree = "."
	}
	if !fs.ValidPath(subtree) {
		return nil, fmt.Errorf("sftp restore: invalid subtree %q", subtree)
	}
	dest := o.Dest
	if dest == "" {
		roots, err := Paths(s)
		if err != nil {
			return nil, fmt.Errorf("sftp %s: restore: %w", t.addr, err)
		}
		if o.InPlace {
			dest = roots[0]
		} else {
			now := time.Now
			if o.Now != nil {
				now = o.Now
			}
			dest = path.Join(roots[0], RestoreDirName(now()))
		}
	}
	dest = path.Clean(dest)
	cn, err := p.dial(ctx, t)
	if err != nil {
		return nil, err
	}
	defer cn.Close()
	c := cn.c
	res := &RestoreResult{Dest: dest}
	where := func(rp string) string { return fmt.Sprintf("sftp %s:%s", t.addr, rp) }
	if o.InPlace {
		fi, err := c.Stat(dest)
		if err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%s: restore in place: destination is not a directory (%v)", where(dest), err)
		}
	} else if err := c.Mkdir(dest); err != nil {
		return nil, fmt.Errorf("%s: restore: create the destination (it must not exist): %w", where(dest), err)
	}

	info, err := fs.Stat(fsys, subtree)
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", subtree, err)
	}
	// A single file or link goes into dest under its own name.
	prefix := subtree
	if !info.IsDir() {
		prefix = path.Dir(subtree)
	}
	type dirMeta struct {
		rel    string
		remote string
		mode   fs.FileMode
		mtime  time.Time
	}
	var dirs []dirMeta
	fail := func(rel string, err error) {
		res.Errors = append(res.Errors, rel+": "+err.Error())
	}
	walkErr := fs.WalkDir(fsys, subtree, func(name string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		rel := name
		if prefix != "." {
			rel = strings.TrimPrefix(strings.TrimPrefix(name, prefix), "/")
		}
		if err != nil {
			fail(rel, err)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		remote := dest
		if rel != "" && rel != "." {
			remote = path.Join(dest, rel)
		}
		fi, err := d.Info()
		if err != nil {
			fail(rel, err)
			return nil
		}
		mode := fi.Mode()
		if o.InPlace && remote != dest {
			// Never write through something already there: a link (it
			// could point anywhere) is removed, a directory is reused.
			if old, err := c.Lstat(remote); err == nil {
				if old.Mode()&fs.ModeSymlink != 0 || (old.IsDir() != d.IsDir()) {
					if err := c.Remove(remote); err != nil {
						fail(rel, fmt.Errorf("replace %s: %w", where(remote), err))
						if d.IsDir() {
							return fs.SkipDir
						}
						return nil
					}
				}
			}
		}
		switch {
		case d.IsDir():
			if remote != dest {
				if err := c.Mkdir(remote); err != nil {
					if fi, serr := c.Lstat(remote); !(o.InPlace && serr == nil && fi.IsDir()) {
						fail(rel, fmt.Errorf("mkdir %s: %w", where(remote), err))
						return fs.SkipDir
					}
				}
				res.Dirs++
			}
			dirs = append(dirs, dirMeta{rel, remote, mode, fi.ModTime()})
		case mode&fs.ModeSymlink != 0:
			target, err := fs.ReadLink(fsys, name)
			if err == nil {
				err = c.Symlink(target, remote)
			}
			if err != nil {
				fail(rel, fmt.Errorf("symlink %s: %w", where(remote), err))
				return nil
			}
			res.Symlinks++
		case mode.IsRegular():
			n, err := restoreFile(ctx, c, fsys, name, remote, mode, fi.ModTime(), o.InPlace)
			res.Bytes += n
			if err != nil {
				fail(rel, fmt.Errorf("%s: %w", where(remote), err))
				return nil
			}
			res.Files++
		default:
			fail(rel, fmt.Errorf("%s: a %v cannot be restored over SFTP", where(remote), mode.Type()))
		}
		return nil
	})
	if walkErr != nil {
		return res, fmt.Errorf("sftp %s: restore into %s: %w", t.addr, dest, walkErr)
	}
	// Directory modes and mtimes last, innermost first (writing into a
	// directory changes its mtime; a read-only mode would block children).
	for _, d := range slices.Backward(dirs) {
		if err := c.Chmod(d.remote, d.mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			fail(d.rel, fmt.Errorf("chmod %s: %w", where(d.remote), err))
		}
		if err := c.Chtimes(d.remote, d.mtime, d.mtime); err != nil {
			fail(d.rel, fmt.Errorf("chtimes %s: %w", where(d.remote), err))
		}
	}
	return res, nil
}

// restoreFile writes one file: content, then mode, then mtime.
func restoreFile(ctx context.Context, c *sftp.Client, fsys fs.FS, name, remote string, mode fs.FileMode, mtime time.Time, inPlace bool) (int64, error) {
	src, err := fsys.Open(name)
	if err != nil {
		return 0, fmt.Errorf("read from the snapshot: %w", err)
	}
	defer src.Close()
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if !inPlace {
		flags |= os.O_EXCL // a new directory: nothing may be there
	}
	f, err := c.OpenFile(remote, flags)
	if err != nil {
		return 0, fmt.Errorf("create: %w", err)
	}
	n, err := f.ReadFrom(&ctxReader{ctx: ctx, r: src})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("write: %w", err)
	}
	if err := c.Chmod(remote, mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return n, fmt.Errorf("chmod: %w", err)
	}
	if err := c.Chtimes(remote, mtime, mtime); err != nil {
		return n, fmt.Errorf("chtimes: %w", err)
	}
	return n, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
