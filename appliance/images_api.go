package appliance

// The image API: list image versions, download one (raw with HTTP ranges,
// or as a tar or zip), and restore one to its host: over SSH to a file
// or block device, or over SFTP to a file, writing only the blocks whose
// remote SHA-256 differs.
//
//	GET  /api/v1/images                     image snapshots the caller may see
//	GET  /api/v1/snapshots/{id}/image       ?format=raw (default), tar, zip
//	POST /api/v1/images/restore             ImageRestoreInput → job "image-restore" (admins:
//	                                        it overwrites the target)

import (
	"archive/tar"
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/images"
	"github.com/cairn-backup/cairn/images/sshsrc"
	"github.com/cairn-backup/cairn/pool"
)

func init() { executors["image-restore"] = runImageRestore }

// ImageBody is one image version in GET /api/v1/images.
type ImageBody struct {
	Snapshot string    `json:"snapshot"` // the placeholder snapshot's ID
	Host     string    `json:"host"`
	Source   string    `json:"source"`
	Time     time.Time `json:"time"`
	Path     string    `json:"path"` // in the restore tree: host/time/images/source.img
	Size     int64     `json:"size"`
	Stored   int64     `json:"stored_bytes"` // new bytes this version stored
	Image    string    `json:"image"`
	Version  string    `json:"version"`
}

// imageOf returns the image version a snapshot stands for.
func (s *Server) imageOf(ctx context.Context, snap *catalog.Snapshot) (name, id string, err error) {
	pm, err := s.pool.Snapshot(ctx, snap.ID)
	if err != nil {
		return "", "", err
	}
	name, id, ok := images.Placeholder(pm)
	if !ok {
		return "", "", badRequest("snapshot %s (%s/%s) is not an image", snap.ID, snap.Host, snap.Source)
	}
	return name, id, nil
}

func (s *Server) handleImageList(r *http.Request, p *principal) (any, error) {
	ctx := r.Context()
	ss, err := s.cat.Snapshots(ctx, r.URL.Query().Get("host"))
	if err != nil {
		return nil, err
	}
	out := []ImageBody{}
	seen := map[string]bool{}
	s.refreshTree()
	tree, _ := s.tree().(*images.Tree)
	for i := range ss {
		sn := &ss[i]
		ok, known := seen[sn.Host]
		if !known {
			if ok, err = s.canSeeHost(ctx, p, sn.Host); err != nil {
				return nil, err
			}
			seen[sn.Host] = ok
		}
		if !ok {
			continue
		}
		pm, err := s.pool.Snapshot(ctx, sn.ID)
		if err != nil {
			continue
		}
		name, id, isImg := images.Placeholder(pm)
		if !isImg {
			continue
		}
		size, _ := strconv.ParseInt(pm.Labels[images.LabelSize], 10, 64)
		b := ImageBody{Snapshot: sn.ID, Host: sn.Host, Source: sn.Source, Time: sn.Started, Size: size, Stored: sn.BytesNew,
			Image: name, Version: id,
			Path: sn.Host + "/" + sn.Started.UTC().Format(pool.SnapshotTimeFormat) + "/" + images.ImagesDir + "/" + sn.Source + ".img"}
		if tree != nil {
			if p, ok := tree.PathOf(sn.Host, sn.ID); ok {
				b.Path = p
			}
		}
		out = append(out, b)
	}
	return out, nil
}

// openSnapshotImage opens the image of a snapshot the caller may see.
func (s *Server) openSnapshotImage(ctx context.Context, p *principal, id string) (*catalog.Snapshot, *images.Image, error) {
	snap, err := s.visibleSnapshot(ctx, p, id)
	if err != nil {
		return nil, nil, err
	}
	name, vid, err := s.imageOf(ctx, snap)
	if err != nil {
		return nil, nil, err
	}
	store, err := s.imageStore(ctx, false)
	if err == nil && store == nil {
		err = errors.New("the appliance has no image pool")
	}
	if err != nil {
		return nil, nil, err
	}
	im, err := store.OpenVersion(ctx, name, vid)
	if err != nil {
		return nil, nil, err
	}
	return snap, im, nil
}

// handleImageDownload streams an image: raw with ranges (random access),
// or in a tar, tar.zst or zip (holes are sent as zeros).
func (s *Server) handleImageDownload(w http.ResponseWriter, r *http.Request, p *principal) {
	snap, im, err := s.openSnapshotImage(r.Context(), p, r.PathValue("id"))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.serveImage(w, r, p, snap, im, r.URL.Query().Get("format"))
}

// imageArchive serves GET /api/v1/snapshots/{id}/archive/ of an image
// snapshot: the image in the archive (default zip), not the placeholder's
// empty tree. It reports false for other snapshots.
func (s *Server) imageArchive(w http.ResponseWriter, r *http.Request, p *principal) bool {
	snap, err := s.visibleSnapshot(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return false // the archive handler answers
	}
	pm, err := s.pool.Snapshot(r.Context(), snap.ID)
	if err != nil {
		return false
	}
	if _, _, ok := images.Placeholder(pm); !ok {
		return false
	}
	if sp := strings.Trim(r.PathValue("path"), "/"); sp != "" && sp != "." {
		s.writeErr(w, r, notFound("%s: snapshot %s is an image; download it whole", sp, snap.ID))
		return true
	}
	_, im, err := s.openSnapshotImage(r.Context(), p, snap.ID)
	if err != nil {
		s.writeErr(w, r, err)
		return true
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "zip"
	}
	s.serveImage(w, r, p, snap, im, format)
	return true
}

func (s *Server) serveImage(w http.ResponseWriter, r *http.Request, p *principal, snap *catalog.Snapshot, im *images.Image, format string) {
	name := strings.Map(func(c rune) rune {
		if c == '/' || c == '\\' || c < 0x20 || c == '"' {
			return '_'
		}
		return c
	}, snap.Host+"-"+snap.Started.UTC().Format(pool.SnapshotTimeFormat)+"-"+snap.Source+".img")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	switch format {
	case "", "raw":
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
		http.ServeContent(w, r, "", snap.Started, im)
		return
	case "tar", "tar.zst", "zip":
	default:
		s.writeErr(w, r, badRequest("format %q: want raw, tar, tar.zst or zip", format))
		return
	}
	w.Header().Set("Content-Type", map[string]string{"tar": "application/x-tar", "tar.zst": "application/zstd", "zip": "application/zip"}[format])
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name + "." + format}))
	w.Header().Set("Cache-Control", "no-store")
	src := io.NewSectionReader(im, 0, im.Size())
	var err error
	switch format {
	case "tar", "tar.zst":
		var out io.Writer = w
		var zw *zstd.Encoder
		if format == "tar.zst" {
			if zw, err = zstd.NewWriter(w, zstd.WithEncoderConcurrency(1)); err != nil {
				break
			}
			out = zw
		}
		tw := tar.NewWriter(out)
		err = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o444, Size: im.Size(), ModTime: snap.Started, Typeflag: tar.TypeReg, Format: tar.FormatPAX})
		if err == nil {
			_, err = io.Copy(tw, src)
		}
		if err == nil {
			err = tw.Close()
		}
		if err == nil && zw != nil {
			err = zw.Close()
		}
	default:
		zw := zip.NewWriter(w)
		var fw io.Writer
		fw, err = zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: snap.Started})
		if err == nil {
			_, err = io.Copy(fw, src)
		}
		if err == nil {
			err = zw.Close()
		}
	}
	if err != nil {
		s.log.Warn("image download failed", "snapshot", snap.ID, "by", p.Name, "err", err)
		panic(http.ErrAbortHandler) // the client sees a broken archive, not a short valid one
	}
}

// ImageRestoreInput is the body of POST /api/v1/images/restore.
type ImageRestoreInput struct {
	Snapshot string `json:"snapshot"` // a snapshot ID, or "latest" with host and source
	Host     string `json:"host,omitempty"`
	Source   string `json:"source,omitempty"`
	// Path on the host to write (overwritten); default the source's own
	// path.
	Path string `json:"path,omitempty"`
	// Mode: "ssh" (dd over SSH; a file or, with device, a block device)
	// or "sftp" (a file). Default: sftp for image-sftp sources, else ssh.
	Mode   string `json:"mode,omitempty"`
	Device bool   `json:"device,omitempty"`
}

// ImageRestoreParams are the parameters of an image-restore job.
type ImageRestoreParams struct {
	Snapshot string `json:"snapshot"`
	Host     string `json:"host"`
	Source   string `json:"source"`
	Path     string `json:"path"`
	Mode     string `json:"mode"`
	Device   bool   `json:"device,omitempty"`
}

// ImageRestoreResult is the job's result.
type ImageRestoreResult struct {
	Mode         string `json:"mode"`
	Path         string `json:"path"`
	Blocks       int64  `json:"blocks"`
	Written      int64  `json:"written_blocks"`
	WrittenBytes int64  `json:"written_bytes"`
	Verified     bool   `json:"verified"`
}

func (s *Server) handleImageRestore(r *http.Request, p *principal) (any, error) {
	ctx := r.Context()
	var in ImageRestoreInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	snap, err := s.resolveSnapshot(ctx, p, in.Host, in.Snapshot, in.Source)
	if err != nil {
		return nil, err
	}
	if _, _, err := s.imageOf(ctx, snap); err != nil {
		return nil, err
	}
	_, src, err := s.snapshotSource(ctx, snap.Host, snap.Source)
	if err != nil {
		return nil, err
	}
	if src.Method != MethodImageSSH && src.Method != MethodImageSFTP && (src.Method != MethodImageRsync || src.Options["transport"] != "ssh") {
		return nil, badRequest("source %s is %s: images are restored over SSH or SFTP (image-ssh, image-sftp, image-rsync over ssh); download it instead", src.Name, src.Method)
	}
	mode := in.Mode
	if mode == "" {
		mode = map[bool]string{true: "sftp", false: "ssh"}[src.Method == MethodImageSFTP]
	}
	if mode != "ssh" && mode != "sftp" {
		return nil, badRequest("mode %q: want ssh or sftp", mode)
	}
	if in.Device && mode != "ssh" {
		return nil, badRequest("a block device is written over ssh (mode ssh)")
	}
	dest := in.Path
	if dest == "" {
		dest = src.Path
	}
	if !strings.HasPrefix(dest, "/") || strings.ContainsFunc(dest, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, badRequest("path %q: want an absolute path on the host", dest)
	}
	params, _ := json.Marshal(ImageRestoreParams{Snapshot: snap.ID, Host: snap.Host, Source: snap.Source, Path: dest, Mode: mode, Device: in.Device})
	j := &catalog.Job{Kind: "image-restore", Host: snap.Host, Manual: true, Params: params}
	if err := s.jobs.enqueue(ctx, j); err != nil {
		return nil, err
	}
	s.log.Info("image restore queued", "job", j.ID, "snapshot", snap.ID, "path", dest, "mode", mode, "by", p.Name)
	return created{s.jobBody(j)}, nil
}

// runImageRestore writes an image back to its host. Never retried: the
// target is in an unknown state after a failure, and the next run
// compares again anyway.
func runImageRestore(ctx context.Context, jc *jobCtx) error {
	s := jc.s
	var rp ImageRestoreParams
	if err := json.Unmarshal(jc.job.Params, &rp); err != nil {
		return permanent{fmt.Errorf("job parameters: %w", err)}
	}
	snap, err := s.cat.Snapshot(ctx, rp.Snapshot)
	if err != nil {
		return permanent{fmt.Errorf("snapshot %s: %w", rp.Snapshot, err)}
	}
	name, vid, err := s.imageOf(ctx, snap)
	if err != nil {
		return permanent{err}
	}
	store, err := s.imageStore(ctx, false)
	if err == nil && store == nil {
		err = errors.New("the appliance has no image pool")
	}
	if err != nil {
		return permanent{err}
	}
	im, err := store.OpenVersion(ctx, name, vid)
	if err != nil {
		return permanent{err}
	}
	h, src, err := s.snapshotSource(ctx, rp.Host, rp.Source)
	if err != nil {
		return permanent{err}
	}
	secret := map[string]string{}
	if src.Secret != nil {
		if secret, err = s.openSecret(src.Secret); err != nil {
			return permanent{fmt.Errorf("credentials: %w", err)}
		}
		if secret == nil {
			secret = map[string]string{}
		}
	}
	scrub := scrubber(secret)
	jump, err := newJump(src.Options, secret)
	if err != nil {
		return permanent{err}
	}
	defer jump.Close()
	var dial dialFunc
	if jump != nil {
		dial = jump.Dial
	}
	// The SSH connection of the source (image-sftp's is SSH too).
	sshSrc := *src
	sshSrc.Method = MethodImageSSH
	if rp.Mode == "sftp" {
		sshSrc.Method = MethodImageSFTP
	}
	c, err := s.dialImage(ctx, h, &sshSrc, secret, dial)
	if err != nil {
		return permanent{errors.New(scrub(err.Error()))}
	}
	defer c.Close()
	jc.update(func(p *Progress) { p.Phase, p.Path, p.BytesTotal = "comparing", rp.Path, im.Size() })
	jc.logf("info", "image restore of %s/%s %s to %s:%s over %s", snap.Host, snap.Source, snap.ID, h.Name, rp.Path, rp.Mode)
	res := ImageRestoreResult{Mode: rp.Mode, Path: rp.Path}
	progress := func(done, todo int64) {
		jc.update(func(p *Progress) { p.Phase, p.Bytes = "writing changed blocks", done*images.BlockSize })
	}
	if rp.Mode == "ssh" {
		rep, err := sshsrc.Restore(ctx, c.ssh, im, sshsrc.RestoreOptions{Path: rp.Path, Device: rp.Device, Progress: progress})
		res.Blocks, res.Written, res.WrittenBytes, res.Verified = rep.Blocks, rep.Written, rep.WrittenBytes, rep.Verified
		if err != nil {
			return permanent{errors.New(scrub(err.Error()))}
		}
	} else if err := restoreImageSFTP(ctx, jc, c, im, rp.Path, &res); err != nil {
		return permanent{errors.New(scrub(err.Error()))}
	}
	jc.update(func(p *Progress) { p.Phase, p.Result = "done", res })
	jc.logf("info", "image restore: %d of %d blocks differed and were written (%d bytes); verified %v", res.Written, res.Blocks, res.WrittenBytes, res.Verified)
	return nil
}

// restoreImageSFTP writes im to a file over SFTP: the host hashes the file
// with stock tools over the same SSH connection when it can (else every
// block is read back over SFTP and compared), only differing blocks are
// written, and the file is compared again at the end.
func restoreImageSFTP(ctx context.Context, jc *jobCtx, c *imageConn, im *images.Image, path string, res *ImageRestoreResult) error {
	m := im.Manifest()
	res.Blocks = m.NumBlocks()
	f, err := c.sftp.OpenFile(path, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return fmt.Errorf("sftp open %s: %w", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return fmt.Errorf("sftp stat %s: %w", path, err)
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("sftp %s: not a regular file", path)
	}
	if err := f.Truncate(m.Size); err != nil {
		return fmt.Errorf("sftp truncate %s: %w", path, err)
	}
	want, err := sshsrc.WantHashes(ctx, im)
	if err != nil {
		return err
	}
	differ := func() ([]int64, error) {
		_, have, err := sshsrc.RemoteHashes(ctx, c.ssh, path)
		if err != nil {
			jc.logf("warn", "image restore: the host cannot hash %s (%v); comparing over SFTP", path, err)
			have = nil
			buf := make([]byte, images.BlockSize)
			for i := range want {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				b := buf[:m.BlockLen(int64(i))]
				if _, err := f.ReadAt(b, int64(i)*images.BlockSize); err != nil && !errors.Is(err, io.EOF) {
					return nil, fmt.Errorf("sftp read %s: %w", path, err)
				}
				have = append(have, sha256.Sum256(b))
			}
		}
		var todo []int64
		for i := range want {
			if i >= len(have) || have[i] != want[i] {
				todo = append(todo, int64(i))
			}
		}
		return todo, nil
	}
	todo, err := differ()
	if err != nil {
		return err
	}
	buf := make([]byte, images.BlockSize)
	for k, i := range todo {
		b := buf[:m.BlockLen(i)]
		if _, err := im.ReadAtContext(ctx, b, i*images.BlockSize); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if _, err := f.WriteAt(b, i*images.BlockSize); err != nil {
			return fmt.Errorf("sftp write %s at %d: %w", path, i*images.BlockSize, err)
		}
		res.Written++
		res.WrittenBytes += int64(len(b))
		jc.update(func(p *Progress) { p.Phase, p.Bytes = "writing changed blocks", int64(k+1)*images.BlockSize })
	}
	if len(todo) > 0 {
		if left, err := differ(); err != nil {
			return fmt.Errorf("verify: %w", err)
		} else if len(left) > 0 {
			return fmt.Errorf("verify %s: block %d differs after writing", path, left[0])
		}
	}
	res.Verified = true
	return nil
}

// restoreImageTo restores an image snapshot into a directory on the
// appliance as <source>.img, sparse (holes are not written). It reports
// false for other snapshots.
func (s *Server) restoreImageTo(ctx context.Context, jc *jobCtx, m *pool.Manifest, root *os.Root) (bool, error) {
	name, id, ok := images.Placeholder(m)
	if !ok {
		return false, nil
	}
	store, err := s.imageStore(ctx, false)
	if err == nil && store == nil {
		err = errors.New("the appliance has no image pool")
	}
	if err != nil {
		return true, err
	}
	im, err := store.OpenVersion(ctx, name, id)
	if err != nil {
		return true, err
	}
	fn := m.Source + ".img"
	f, err := root.OpenFile(fn, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return true, fmt.Errorf("restore target: %w", err)
	}
	jc.update(func(p *Progress) { p.Phase, p.Path, p.BytesTotal = "restoring", fn, im.Size() })
	jc.logf("info", "restore image %s/%s@%s to %s", m.Host, m.Source, m.ID, fn)
	mf := im.Manifest()
	buf := make([]byte, images.BlockSize)
	for i := range mf.NumBlocks() {
		if err := ctx.Err(); err != nil {
			f.Close()
			return true, err
		}
		if _, zero, _ := mf.Block(i); zero {
			continue
		}
		b := buf[:mf.BlockLen(i)]
		if _, err := im.ReadAtContext(ctx, b, i*images.BlockSize); err != nil && !errors.Is(err, io.EOF) {
			f.Close()
			return true, err
		}
		if _, err := f.WriteAt(b, i*images.BlockSize); err != nil {
			f.Close()
			return true, fmt.Errorf("restore %s: %w", fn, err)
		}
		jc.update(func(p *Progress) { p.Files, p.Bytes = 0, (i+1)*images.BlockSize })
	}
	if err := f.Truncate(im.Size()); err != nil {
		f.Close()
		return true, fmt.Errorf("restore %s: %w", fn, err)
	}
	if err := f.Close(); err != nil {
		return true, fmt.Errorf("restore %s: %w", fn, err)
	}
	jc.update(func(p *Progress) { p.Phase, p.Files, p.Bytes, p.Path = "done", 1, im.Size(), "" })
	return true, nil
}
