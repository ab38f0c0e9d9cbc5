package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/ftp"
	"github.com/cairn-backup/cairn/pullers/sftp"
	"github.com/cairn-backup/cairn/pullers/smb"
)

func init() { executors["restore"] = runRestore }

// RestoreParams are the parameters of a restore job.
type RestoreParams struct {
	Snapshot string `json:"snapshot"` // snapshot ID (resolved from "latest" when the job was made)
	Host     string `json:"host"`
	Source   string `json:"source"`
	Path     string `json:"path,omitempty"` // inside the snapshot; "" = all of it
	To       string `json:"to"`             // absolute directory on the appliance
	// ToHost writes back to the source's host over its method instead,
	// into Dest there (default: a new cairn-restore-<time> directory);
	// InPlace overwrites the source path itself.
	ToHost  bool   `json:"to_host,omitempty"`
	InPlace bool   `json:"in_place,omitempty"`
	Dest    string `json:"dest,omitempty"`
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
	if rp.ToHost {
		return s.restoreToHost(ctx, jc, &rp, m, sp, e.Type == pool.TypeDir)
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
	if done, err := s.restoreImageTo(ctx, jc, m, root); done { // images_api.go
		return err
	}
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

func (r *restorer) file(e *pool.Entry, rel string) (err error) {
	f, err := r.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("restore %s: %w", rel, err)
	}
	defer func() {
		if err != nil {
			r.root.Remove(rel) // no empty or short file that looks restored
		}
	}()
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

// RestoreToHostInput is the body of POST /api/v1/restores: RestoreInput,
// plus to_host to write the snapshot back to its host over the source's
// method (sftp, smb, ftp) instead of into a directory on the appliance.
type RestoreToHostInput struct {
	Host     string `json:"host,omitempty"`
	Snapshot string `json:"snapshot"`
	Source   string `json:"source,omitempty"`
	Path     string `json:"path,omitempty"`
	To       string `json:"to,omitempty"` // must be empty with to_host
	ToHost   bool   `json:"to_host,omitempty"`
	// InPlace overwrites the source path on the host (admins only; not
	// for ftp). Default: a new directory cairn-restore-<time> in it.
	InPlace bool `json:"in_place,omitempty"`
	// Dest is the directory on the host to create and fill instead.
	Dest string `json:"dest,omitempty"`
}

// handleRestores is POST /api/v1/restores: a restore to the host, or else
// the restore to a directory on the appliance (handleRestore).
func (s *Server) handleRestores(r *http.Request, p *principal) (any, error) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err != nil {
		return nil, badRequest("request body: %v", err)
	}
	var in RestoreToHostInput
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, badRequest("request body: %v", err)
	}
	if !in.ToHost {
		if in.InPlace || in.Dest != "" {
			return nil, badRequest("in_place and dest need to_host")
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		return s.handleRestore(r, p)
	}
	ctx := r.Context()
	if in.To != "" {
		return nil, badRequest("give either to (a directory on the appliance) or to_host, not both")
	}
	if in.InPlace && p.rank() < roleAdmin {
		return nil, forbidden("only admins may restore in place (overwriting files on the host)")
	}
	if in.Dest != "" && (strings.ContainsRune(in.Dest, 0) || path.Clean(in.Dest) == "/") {
		return nil, badRequest("dest %q: want a new directory on the host", in.Dest)
	}
	snap, err := s.resolveSnapshot(ctx, p, in.Host, in.Snapshot, in.Source)
	if err != nil {
		return nil, err
	}
	sp, err := cleanSnapPath(in.Path)
	if err != nil {
		return nil, err
	}
	_, src, err := s.snapshotSource(ctx, snap.Host, snap.Source)
	if err != nil {
		return nil, err
	}
	if err := checkHostRestoreMethod(src.Method, in.InPlace); err != nil {
		return nil, err
	}
	root, err := pool.ParseDigest(snap.Root)
	if err != nil {
		return nil, err
	}
	if _, err := s.pool.Lookup(ctx, root, sp); err != nil {
		if errors.Is(err, pool.ErrNotFound) {
			return nil, notFound("%s: no such path in snapshot %s", sp, snap.ID)
		}
		return nil, err
	}
	params, _ := json.Marshal(RestoreParams{Snapshot: snap.ID, Host: snap.Host, Source: snap.Source, Path: sp,
		ToHost: true, InPlace: in.InPlace, Dest: in.Dest})
	j := &catalog.Job{Kind: "restore", Host: snap.Host, Manual: true, Params: params}
	if err := s.jobs.enqueue(ctx, j); err != nil {
		return nil, err
	}
	s.log.Info("restore to host queued", "job", j.ID, "snapshot", snap.ID, "path", sp, "method", src.Method,
		"in_place", in.InPlace, "by", p.Name)
	return created{s.jobBody(j)}, nil
}

// snapshotSource finds the host and the (current) source a snapshot was
// taken from.
func (s *Server) snapshotSource(ctx context.Context, host, source string) (*catalog.Host, *catalog.Source, error) {
	h, err := s.cat.Host(ctx, host)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil, nil, notFound("host %s no longer exists: restore to the appliance instead", host)
	}
	if err != nil {
		return nil, nil, err
	}
	srcs, err := s.cat.Sources(ctx, h.ID)
	if err != nil {
		return nil, nil, err
	}
	for i := range srcs {
		if srcs[i].Name == source {
			return h, &srcs[i], nil
		}
	}
	return nil, nil, notFound("host %s has no source %s any more: restore to the appliance instead", host, source)
}

// restoreToHost writes the snapshot subtree sp back to the source's host
// with the source's method and credentials. A restore is never retried:
// a second run would write a second copy.
func (s *Server) restoreToHost(ctx context.Context, jc *jobCtx, rp *RestoreParams, m *pool.Manifest, sp string, isDir bool) error {
	h, src, err := s.snapshotSource(ctx, rp.Host, rp.Source)
	if err != nil {
		return permanent{err}
	}
	if err := checkHostRestoreMethod(src.Method, rp.InPlace); err != nil {
		return permanent{err}
	}
	ps, scrub, err := s.pullerSource(h, src)
	if err != nil {
		return permanent{err}
	}
	dest := rp.Dest
	if rp.InPlace && dest == "" && sp != "." {
		// In place, a subtree goes back where it came from.
		if dest, err = inPlaceDest(ps, sp, isDir); err != nil {
			return permanent{err}
		}
	}
	// Through the source's jump host, like its backups (jump.go).
	sftpPl, smbPl := sftp.New(), smb.New()
	var jump *jumpHost
	switch src.Method {
	case sftp.Method:
		jump, err = jumpFor(sftpPl, ps)
	case smb.Method:
		jump, err = jumpFor(smbPl, ps)
	default:
		if ps.Options["jump"] != "" {
			err = permanent{fmt.Errorf("a restore to the host over %s cannot go through the jump host yet (sftp and smb can)", src.Method)}
		}
	}
	if err != nil {
		return permanent{errors.New(scrub(err.Error()))}
	}
	defer jump.Close()
	fsys := s.pool.SnapshotFS(ctx, m)
	jc.update(func(p *Progress) { p.Phase, p.BytesTotal = "restoring", m.Bytes })
	jc.logf("info", "restore %s/%s@%s:%s to the host over %s (in place: %v)", m.Host, m.Source, m.ID, sp, src.Method, rp.InPlace)
	res := hostRestoreResult{Method: src.Method}
	switch src.Method {
	case sftp.Method:
		r, err := sftpPl.Restore(ctx, fsys, sp, ps, sftp.RestoreOptions{Dest: dest, InPlace: rp.InPlace, Now: s.now})
		if err != nil {
			return permanent{errors.New(scrub(err.Error()))}
		}
		res.Dest, res.Files, res.Dirs, res.Bytes, res.Errors = r.Dest, r.Files+r.Symlinks, r.Dirs, r.Bytes, r.Errors
	case smb.Method:
		r, err := smbPl.Restore(ctx, fsys, sp, ps, smb.RestoreOptions{Dest: dest, InPlace: rp.InPlace, Now: s.now})
		if err != nil {
			return permanent{errors.New(scrub(err.Error()))}
		}
		res.Dest, res.Files, res.Dirs, res.Bytes, res.Errors = r.Dest, r.Files, r.Dirs, r.Bytes, r.Errors
	case ftp.Method:
		if dest == "" {
			base := ps.Path
			if !strings.HasPrefix(base, "/") {
				base = "/" + base
			}
			dest = path.Join(base, sftp.RestoreDirName(s.now()))
		}
		st, err := ftp.Restore(ctx, h.Name, ps, fsys, sp, dest)
		if err != nil {
			return permanent{errors.New(scrub(err.Error()))}
		}
		res.Dest, res.Files, res.Dirs, res.Bytes, res.Skipped = dest, st.Files, st.Dirs, st.Bytes, st.Skipped
	default:
		return permanent{fmt.Errorf("method %s %w", src.Method, errNoHostRestore)}
	}
	for i := range res.Errors {
		res.Errors[i] = scrub(res.Errors[i])
	}
	jc.update(func(p *Progress) {
		p.Phase, p.Path, p.Files, p.Bytes, p.Errors, p.Result = "done", "", res.Files, res.Bytes, int64(len(res.Errors)), res
	})
	for i, e := range res.Errors {
		if i == maxLoggedFileErrors {
			jc.logf("warn", "%d more entries failed: see the job's result", len(res.Errors)-i)
			break
		}
		jc.logf("warn", "%s", e)
	}
	if len(res.Skipped) > 0 {
		jc.logf("warn", "%d entries cannot be made over %s (symlinks, special files) and were skipped", len(res.Skipped), src.Method)
	}
	jc.logf("info", "restored %d files, %d directories, %d bytes to %s on %s", res.Files, res.Dirs, res.Bytes, res.Dest, h.Name)
	if len(res.Errors) > 0 {
		return permanent{fmt.Errorf("restore to %s on %s: %d entries failed (first: %s)", res.Dest, h.Name, len(res.Errors), res.Errors[0])}
	}
	return nil
}

// inPlaceDest is the directory on the host that an in-place restore of
// the snapshot path sp writes into: the directory sp was pulled from (for
// a file or link, the directory that holds it).
func inPlaceDest(ps pullers.Source, sp string, isDir bool) (string, error) {
	var base string
	switch ps.Method {
	case sftp.Method:
		roots, err := sftp.Paths(ps)
		if err != nil {
			return "", err
		}
		base = "/" // several paths are stored at their own location
		if len(roots) == 1 {
			base = roots[0]
		}
	case smb.Method:
		base = strings.TrimPrefix(path.Clean("/"+strings.ReplaceAll(ps.Path, `\`, "/")), "/")
	default:
		return "", fmt.Errorf("method %s %w in place", ps.Method, errNoHostRestore)
	}
	if !isDir {
		sp = path.Dir(sp)
	}
	return path.Join(base, sp), nil
}
