package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/pool"
)

func init() { executors["restore"] = runRestore }

// RestoreParams are the parameters of a restore job.
type RestoreParams struct {
	Snapshot string `json:"snapshot"` // snapshot ID (resolved from "latest" when the job was made)
	Host     string `json:"host"`
	Source   string `json:"source"`
	Path     string `json:"path,omitempty"` // inside the snapshot; "" = all of it
	To       string `json:"to"`             // absolute directory on the appliance
}

// cleanSnapPath normalises a path inside a snapshot: slash-separated,
// relative, no "..". "" and "." mean the root.
func cleanSnapPath(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" || p == "." {
		return ".", nil
	}
	for el := range strings.SplitSeq(p, "/") {
		if el == "" || el == "." || el == ".." || strings.ContainsRune(el, 0) {
			return "", badRequest("path %q: want a clean relative path inside the snapshot", p)
		}
	}
	return p, nil
}

// checkRestoreTarget makes sure to is an absolute path that is either
// missing or an empty directory: a restore never overwrites anything.
func checkRestoreTarget(to string) error {
	if !filepath.IsAbs(to) || filepath.Clean(to) != to {
		return badRequest("restore target %q: want a clean absolute directory path on the appliance", to)
	}
	ents, err := os.ReadDir(to)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return badRequest("restore target %s: %v", to, err)
	}
	if len(ents) > 0 {
		return badRequest("restore target %s is not empty: restores never overwrite; pick a new directory", to)
	}
	return nil
}

func runRestore(ctx context.Context, jc *jobCtx) error {
	s := jc.s
	var rp RestoreParams
	if err := json.Unmarshal(jc.job.Params, &rp); err != nil {
		return fmt.Errorf("job parameters: %w", err)
	}
	m, err := s.pool.Snapshot(ctx, rp.Snapshot)
	if err != nil {
		return err
	}
	sp, err := cleanSnapPath(rp.Path)
	if err != nil {
		return err
	}
	e, err := s.pool.Lookup(ctx, m.Root, sp)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", m.ID, err)
	}
	if err := checkRestoreTarget(rp.To); err != nil {
		return err
	}
	if err := os.MkdirAll(rp.To, 0o700); err != nil {
		return fmt.Errorf("restore target: %w", err)
	}
	root, err := os.OpenRoot(rp.To)
	if err != nil {
		return fmt.Errorf("restore target: %w", err)
	}
	defer root.Close()
	total := m.Bytes
	if e.Type == pool.TypeFile {
		total = e.Size
	}
	jc.update(func(p *Progress) { p.Phase, p.BytesTotal = "restoring", total })
	jc.logf("info", "restore %s/%s@%s:%s to %s", m.Host, m.Source, m.ID, sp, rp.To)
	r := &restorer{ctx: ctx, p: s.pool, root: root, jc: jc, chown: os.Geteuid() == 0}
	switch e.Type {
	case pool.TypeDir:
		if err := r.dirContents(e, "."); err != nil {
			return err
		}
		r.setMeta(".", &e)
	default:
		if err := r.entry(&e, path.Base(sp)); err != nil {
			return err
		}
	}
	jc.update(func(p *Progress) { p.Phase, p.Path = "done", "" })
	if r.skipped > 0 {
		jc.logf("warn", "skipped %d special files (devices, fifos, sockets)", r.skipped)
	}
	return nil
}

// restorer writes a tree below an os.Root, so no name or symlink in the
// snapshot can make it write outside the target.
type restorer struct {
	ctx     context.Context
	p       *pool.Pool
	root    *os.Root
	jc      *jobCtx
	chown   bool
	files   int64
	bytes   int64
	skipped int
}

func (r *restorer) dirContents(dir pool.Entry, rel string) error {
	es, err := r.p.ReadTree(r.ctx, dir.Subtree)
	if err != nil {
		return fmt.Errorf("read %s: %w", rel, err)
	}
	for i := range es {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		if err := r.entry(&es[i], path.Join(rel, es[i].Name)); err != nil {
			return err
		}
	}
	return nil
}

func (r *restorer) entry(e *pool.Entry, rel string) error {
	switch e.Type {
	case pool.TypeDir:
		if err := r.root.Mkdir(rel, 0o700); err != nil {
			return fmt.Errorf("restore %s: %w", rel, err)
		}
		if err := r.dirContents(*e, rel); err != nil {
			return err
		}
	case pool.TypeFile:
		if err := r.file(e, rel); err != nil {
			return err
		}
	case pool.TypeSymlink:
		if err := r.root.Symlink(e.Target, rel); err != nil {
			return fmt.Errorf("restore %s: %w", rel, err)
		}
	default:
		r.skipped++
		return nil
	}
	r.files++
	r.jc.update(func(p *Progress) { p.Files, p.Bytes, p.Path = r.files, r.bytes, rel })
	r.setMeta(rel, e)
	return nil
}

func (r *restorer) file(e *pool.Entry, rel string) error {
	f, err := r.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("restore %s: %w", rel, err)
	}
	cr, err := r.p.OpenContent(r.ctx, e)
	if err != nil {
		f.Close()
		return fmt.Errorf("restore %s: %w", rel, err)
	}
	n, err := io.Copy(f, cr)
	r.bytes += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", rel, err)
	}
	if n != e.Size {
		return fmt.Errorf("restore %s: wrote %d bytes, the snapshot says %d", rel, n, e.Size)
	}
	return nil
}

// setMeta applies ownership, mode and mtime; failures are not fatal (a
// restore as non-root cannot chown).
func (r *restorer) setMeta(rel string, e *pool.Entry) {
	if r.chown {
		r.root.Lchown(rel, int(e.UID), int(e.GID))
	}
	if e.Type == pool.TypeSymlink {
		return
	}
	r.root.Chmod(rel, e.Mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
	if e.ModTime != 0 {
		t := time.Unix(0, e.ModTime)
		r.root.Chtimes(rel, t, t)
	}
}

// resolveSnapshot finds the snapshot a request names: an ID, or "latest"
// (the newest complete snapshot of host and source).
func (s *Server) resolveSnapshot(ctx context.Context, p *principal, host, snap, source string) (*catalog.Snapshot, error) {
	if snap == "" {
		return nil, badRequest("snapshot is required (an ID from `cairn backup ls`, or latest)")
	}
	if snap == "latest" {
		if host == "" || source == "" {
			return nil, badRequest("latest needs a host and a source")
		}
		if ok, err := s.canSeeHost(ctx, p, host); err != nil {
			return nil, err
		} else if !ok {
			return nil, notFound("host %s: not found", host)
		}
		last, err := s.cat.LastSnapshot(ctx, host, source, true)
		if errors.Is(err, catalog.ErrNotFound) {
			return nil, notFound("no complete snapshot of %s/%s", host, source)
		}
		return last, err
	}
	row, err := s.visibleSnapshot(ctx, p, snap)
	if err != nil {
		return nil, err
	}
	if host != "" && row.Host != host {
		return nil, notFound("snapshot %s is not of host %s", snap, host)
	}
	return row, nil
}
