package appliance

import (
	"archive/tar"
	"archive/zip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cairn-backup/cairn/pool"
)

// archiveWriter is what a directory download writes entries to.
type archiveWriter interface {
	// add writes one entry at name (slash path inside the archive); r is
	// the content of a regular file, else nil.
	add(name string, e *pool.Entry, r io.Reader) error
	Close() error
}

// handleSnapshotArchive streams a directory of a snapshot as zip, tar or
// tar.zst (?format=, default zip): no temp files, constant memory. Entry
// names are pool names under one top directory, so they hold no ".." and
// are never absolute.
func (s *Server) handleSnapshotArchive(w http.ResponseWriter, r *http.Request, p *principal) {
	if s.imageArchive(w, r, p) { // images_api.go: an image snapshot downloads its image
		return
	}
	snap, sp, e, err := s.snapshotEntry(r, p)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "zip"
	}
	top := path.Base(sp)
	if sp == "." {
		top = snap.Host + "-" + snap.Started.UTC().Format(pool.SnapshotTimeFormat) + "-" + snap.Source
	}
	top = strings.Map(func(c rune) rune {
		if c == '/' || c == '\\' || c < 0x20 {
			return '_'
		}
		return c
	}, top)
	var ctype, ext string
	switch format {
	case "zip":
		ctype, ext = "application/zip", ".zip"
	case "tar":
		ctype, ext = "application/x-tar", ".tar"
	case "tar.zst":
		ctype, ext = "application/zstd", ".tar.zst"
	default:
		s.writeErr(w, r, badRequest("format %q: want zip, tar or tar.zst", format))
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": top + ext}))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	var aw archiveWriter
	var zw *zstd.Encoder
	switch format {
	case "zip":
		aw = &zipArchive{zw: zip.NewWriter(w)}
	case "tar":
		aw = &tarArchive{tw: tar.NewWriter(w)}
	case "tar.zst":
		if zw, err = zstd.NewWriter(w, zstd.WithEncoderConcurrency(1)); err != nil {
			s.writeErr(w, r, err)
			return
		}
		aw = &tarArchive{tw: tar.NewWriter(zw)}
	}
	err = s.archiveEntry(r.Context(), aw, top, e)
	if err == nil {
		err = aw.Close()
	}
	if err == nil && zw != nil {
		err = zw.Close()
	}
	if err != nil {
		// The status is sent: cut the stream so the client sees a broken
		// archive rather than a short valid one.
		s.log.Warn("archive download failed", "snapshot", snap.ID, "path", sp, "by", p.Name, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// archiveComponent makes a file name safe as one archive path component:
// a backslash is a separator to Windows extractors (so `..\..\x` would
// climb out of the extraction directory), so it becomes U+FF3C, which
// looks the same and separates nothing. "/", "." and ".." cannot be pool
// names. Restores and WebDAV keep the exact names.
func archiveComponent(n string) string { return strings.ReplaceAll(n, `\`, "\uFF3C") }

// archiveEntry writes e at name and, for a directory, everything below.
func (s *Server) archiveEntry(ctx context.Context, aw archiveWriter, name string, e *pool.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch e.Type {
	case pool.TypeFile:
		cr, err := s.pool.OpenContent(ctx, e)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return aw.add(name, e, cr)
	case pool.TypeDir:
		if err := aw.add(name, e, nil); err != nil {
			return err
		}
		es, err := s.pool.ReadTree(ctx, e.Subtree)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		for i := range es {
			if err := s.archiveEntry(ctx, aw, name+"/"+archiveComponent(es[i].Name), &es[i]); err != nil {
				return err
			}
		}
		return nil
	}
	return aw.add(name, e, nil)
}

type tarArchive struct{ tw *tar.Writer }

func (a *tarArchive) add(name string, e *pool.Entry, r io.Reader) error {
	h := &tar.Header{Name: name, Uid: int(e.UID), Gid: int(e.GID), Uname: e.User, Gname: e.Group,
		ModTime: time.Unix(0, e.ModTime), Format: tar.FormatPAX}
	// tar keeps setuid etc. in its own bits.
	h.Mode = int64(e.Mode.Perm())
	if e.Mode&fs.ModeSetuid != 0 {
		h.Mode |= 0o4000
	}
	if e.Mode&fs.ModeSetgid != 0 {
		h.Mode |= 0o2000
	}
	if e.Mode&fs.ModeSticky != 0 {
		h.Mode |= 0o1000
	}
	switch e.Type {
	case pool.TypeFile:
		h.Typeflag, h.Size = tar.TypeReg, e.Size
	case pool.TypeDir:
		h.Typeflag, h.Name = tar.TypeDir, name+"/"
	case pool.TypeSymlink:
		h.Typeflag, h.Linkname = tar.TypeSymlink, e.Target
	case pool.TypeCharDev, pool.TypeBlockDev:
		h.Typeflag = tar.TypeChar
		if e.Type == pool.TypeBlockDev {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor = int64((e.Rdev >> 8) & 0xfff)
		h.Devminor = int64((e.Rdev & 0xff) | ((e.Rdev >> 12) & 0xfff00))
	case pool.TypeFIFO:
		h.Typeflag = tar.TypeFifo
	default:
		return nil // sockets cannot be archived
	}
	if err := a.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("tar %s: %w", name, err)
	}
	if r != nil {
		n, err := io.Copy(a.tw, r)
		if err != nil {
			return fmt.Errorf("tar %s: %w", name, err)
		}
		if n != e.Size {
			return fmt.Errorf("tar %s: content is %d bytes, entry says %d", name, n, e.Size)
		}
	}
	return nil
}

func (a *tarArchive) Close() error { return a.tw.Close() }

type zipArchive struct{ zw *zip.Writer }

func (a *zipArchive) add(name string, e *pool.Entry, r io.Reader) error {
	h := &zip.FileHeader{Name: name, Modified: time.Unix(0, e.ModTime), Method: zip.Deflate}
	switch e.Type {
	case pool.TypeFile:
		h.SetMode(e.Mode.Perm())
	case pool.TypeDir:
		h.Name, h.Method = name+"/", zip.Store
		h.SetMode(fs.ModeDir | e.Mode.Perm())
	case pool.TypeSymlink:
		// Info-ZIP convention: the target is the content.
		h.Method = zip.Store
		h.SetMode(fs.ModeSymlink | 0o777)
		r = strings.NewReader(e.Target)
	default:
		return nil // devices, FIFOs and sockets have no zip form
	}
	w, err := a.zw.CreateHeader(h)
	if err != nil {
		return fmt.Errorf("zip %s: %w", name, err)
	}
	if r != nil {
		if _, err := io.Copy(w, r); err != nil {
			return fmt.Errorf("zip %s: %w", name, err)
		}
	}
	return nil
}

func (a *zipArchive) Close() error { return a.zw.Close() }
