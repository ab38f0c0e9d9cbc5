package smb

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

	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/internal/walk"
)

// RestoreOptions say where a restore writes.
type RestoreOptions struct {
	// Dest is the directory (share-relative, "/" separators) to create and
	// fill. Empty: a new directory "cairn-restore-<UTC time>" inside the
	// source path.
	Dest string
	// InPlace writes into the source path (or Dest, which must then
	// exist), replacing files of the same name. Only when asked.
	InPlace bool
	// Now names the default directory; nil is time.Now.
	Now func() time.Time
}

// RestoreResult is what a restore wrote.
type RestoreResult struct {
	Dest        string // share-relative directory written into
	Files, Dirs int64
	Bytes       int64
	Errors      []string // per-entry failures ("rel: error")
}

// RestoreDirName is the default directory name for a restore started at t.
func RestoreDirName(t time.Time) string {
	return "cairn-restore-" + t.UTC().Format("20060102T150405Z")
}

// Restore writes the subtree of fsys back to the share of s, keeping
// mtimes and the read-only attribute. SMB (without POSIX extensions)
// cannot create symlinks, so they are listed in Errors; hard links become
// copies. An error return means the restore could not run.
func Restore(ctx context.Context, fsys fs.FS, subtree string, s pullers.Source, o RestoreOptions) (*RestoreResult, error) {
	return New().Restore(ctx, fsys, subtree, s, o)
}

// Restore is the package-level Restore with this Puller's Dial and dialect.
func (p *Puller) Restore(ctx context.Context, fsys fs.FS, subtree string, s pullers.Source, o RestoreOptions) (*RestoreResult, error) {
	t, err := parseTarget(s)
	if err != nil {
		return nil, err
	}
	if subtree == "" {
		subtree = "."
	}
	if !fs.ValidPath(subtree) {
		return nil, fmt.Errorf("smb restore: invalid subtree %q", subtree)
	}
	dest := o.Dest
	if dest == "" {
		dest = s.Path
		if !o.InPlace {
			now := time.Now
			if o.Now != nil {
				now = o.Now
			}
			dest = path.Join(cleanBase(s.Path), RestoreDirName(now()))
		}
	}
	dest = cleanBase(dest)
	cn, err := p.dial(ctx, t)
	if err != nil {
		return nil, err
	}
	defer cn.Close()
	w := &walker{t: t, cn: cn, base: dest}
	sh := cn.share
	res := &RestoreResult{Dest: dest}
	if o.InPlace {
		fi, err := sh.Stat(w.remote(""))
		if err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%s: restore in place: destination is not a directory (%v)", w.where(""), err)
		}
	} else if err := sh.Mkdir(w.remote(""), 0o755); err != nil {
		return nil, fmt.Errorf("%s: restore: create the destination (it must not exist): %w", w.where(""), err)
	}
	info, err := fs.Stat(fsys, subtree)
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", subtree, err)
	}
	prefix := subtree
	if !info.IsDir() {
		prefix = path.Dir(subtree)
	}
	type dirMeta struct {
		rel   string
		mtime time.Time
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
		if rel == "." {
			rel = ""
		}
		if err != nil {
			fail(walk.RelOrDot(rel), err)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			fail(walk.RelOrDot(rel), err)
			return nil
		}
		mode := fi.Mode()
		switch {
		case d.IsDir():
			if rel != "" {
				if err := sh.Mkdir(w.remote(rel), 0o755); err != nil {
					if st, serr := sh.Stat(w.remote(rel)); !(o.InPlace && serr == nil && st.IsDir()) {
						fail(rel, fmt.Errorf("mkdir %s: %w", w.where(rel), err))
						return fs.SkipDir
					}
				}
				res.Dirs++
			}
			dirs = append(dirs, dirMeta{rel, fi.ModTime()})
		case mode.IsRegular():
			n, err := w.restoreFile(ctx, fsys, name, rel, mode, fi.ModTime(), o.InPlace)
			res.Bytes += n
			if err != nil {
				fail(rel, fmt.Errorf("%s: %w", w.where(rel), err))
				return nil
			}
			res.Files++
		default:
			fail(rel, fmt.Errorf("%s: a %v cannot be restored over SMB", w.where(rel), mode.Type()))
		}
		return nil
	})
	if walkErr != nil {
		return res, fmt.Errorf("smb %s: restore into %s: %w", t.addr, dest, walkErr)
	}
	for _, d := range slices.Backward(dirs) {
		if err := sh.Chtimes(w.remote(d.rel), d.mtime, d.mtime); err != nil {
			fail(walk.RelOrDot(d.rel), fmt.Errorf("chtimes %s: %w", w.where(d.rel), err))
		}
	}
	return res, nil
}

func (w *walker) restoreFile(ctx context.Context, fsys fs.FS, name, rel string, mode fs.FileMode, mtime time.Time, inPlace bool) (int64, error) {
	src, err := fsys.Open(name)
	if err != nil {
		return 0, fmt.Errorf("read from the snapshot: %w", err)
	}
	defer src.Close()
	sh := w.cn.share
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if !inPlace {
		flags |= os.O_EXCL
	} else if st, err := sh.Stat(w.remote(rel)); err == nil && st.Mode()&0o200 == 0 {
		_ = sh.Chmod(w.remote(rel), 0o644) // clear read-only to replace it
	}
	f, err := sh.OpenFile(w.remote(rel), flags, 0o644)
	if err != nil {
		return 0, fmt.Errorf("create: %w", err)
	}
	done := w.cn.op()
	n, err := io.Copy(f, &ctxReader{ctx: ctx, r: src})
	done()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("write: %w", explain(err))
	}
	if err := sh.Chtimes(w.remote(rel), mtime, mtime); err != nil {
		return n, fmt.Errorf("chtimes: %w", err)
	}
	if mode&0o222 == 0 {
		// go-smb2 maps a mode without write bits to FILE_ATTRIBUTE_READONLY.
		if err := sh.Chmod(w.remote(rel), 0o444); err != nil {
			return n, fmt.Errorf("set read-only: %w", err)
		}
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
