package ftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/pullers"
)

// RestoreStats counts what Restore uploaded.
type RestoreStats struct {
	Files, Dirs, Bytes int64
	Skipped            []string // entries FTP cannot create (symlinks, devices), by path
}

// Restore uploads the entry from (a file or a directory, slash-separated,
// "." for all) of tree — a snapshot view such as pool.SnapshotFS — to the
// FTP server of src (the same Options and Secret as the backup), into the
// NEW directory dir, which it creates with MKD; an existing dir is an
// error, so nothing on the server is overwritten. Files are sent with
// STOR and their mtimes set with MFMT/MDTM where the server allows
// (best effort). Symlinks and special files cannot be made over FTP and
// are listed in Skipped. host is the host name (the default address).
func Restore(ctx context.Context, host string, src pullers.Source, tree fs.FS, from, dir string) (RestoreStats, error) {
	var st RestoreStats
	cfg, err := parseConfig(host, &src)
	if err != nil {
		return st, fmt.Errorf("ftp restore %s: %w", host, err)
	}
	if !strings.HasPrefix(dir, "/") {
		return st, fmt.Errorf("ftp restore %s: target %q must be an absolute path", cfg.addr, dir)
	}
	dir = path.Clean(dir)
	if dir == "/" {
		return st, fmt.Errorf("ftp restore %s: target must be a new directory, not /", cfg.addr)
	}
	if cfg.tls && cfg.pinned == "" && cfg.roots == nil {
		// Uploads go only to a server we can authenticate; a restore does
		// not pin on first use.
		cfg.tofu = false
	}
	s, err := connect(ctx, cfg, true)
	if err != nil {
		return st, fmt.Errorf("ftp restore %s: %w", cfg.addr, err)
	}
	defer s.close()
	if err := s.c.MakeDir(dir); err != nil {
		return st, fmt.Errorf("ftp restore %s:%s: create the target directory (it must not exist): %w", cfg.addr, dir, ctxErr(ctx, err))
	}
	st.Dirs++
	fi, err := fs.Stat(tree, from)
	if err != nil {
		return st, fmt.Errorf("ftp restore: %s: %w", from, err)
	}
	base := dir
	if !fi.IsDir() {
		return st, upload(ctx, s, tree, from, base+"/"+path.Base(from), fi, &st)
	}
	var dirTimes []func()
	err = fs.WalkDir(tree, from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, from), "/")
		if from == "." {
			rel = p
		}
		if rel == "." || rel == "" {
			return nil
		}
		target := base + "/" + rel
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := s.c.MakeDir(target); err != nil {
				return fmt.Errorf("MKD %s: %w", target, err)
			}
			st.Dirs++
			mt := info.ModTime()
			dirTimes = append(dirTimes, func() { setTime(s, target, mt) })
		case info.Mode().IsRegular():
			return upload(ctx, s, tree, p, target, info, &st)
		default:
			st.Skipped = append(st.Skipped, rel)
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("ftp restore %s:%s: %w", cfg.addr, dir, ctxErr(ctx, err))
	}
	for i := len(dirTimes) - 1; i >= 0; i-- {
		dirTimes[i]()
	}
	return st, nil
}

func upload(ctx context.Context, s *session, tree fs.FS, p, target string, info fs.FileInfo, st *RestoreStats) error {
	f, err := tree.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	cr := &countReader{r: f}
	if err := s.c.Stor(target, cr); err != nil {
		return fmt.Errorf("STOR %s: %w", target, ctxErr(ctx, err))
	}
	if cr.n != info.Size() {
		return fmt.Errorf("STOR %s: sent %d of %d bytes", target, cr.n, info.Size())
	}
	st.Files++
	st.Bytes += cr.n
	setTime(s, target, info.ModTime())
	return nil
}

// setTime sets a remote mtime where the server supports it; failures are
// ignored (the content is what matters).
func setTime(s *session, target string, t time.Time) {
	if s.c.IsSetTimeSupported() && !t.IsZero() {
		_ = s.c.SetTime(target, t)
	}
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, err
	}
	return n, err
}
