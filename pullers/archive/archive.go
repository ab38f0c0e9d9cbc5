package archive

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// ErrRefused marks an archive refused as hostile or malformed; nothing of
// it joins a snapshot.
var ErrRefused = errors.New("archive refused")

// Options bound an import.
type Options struct {
	// MaxRatio caps the bytes unpacked (decompressed stream, or zip
	// members) per byte of archive read, against zip and gzip bombs.
	// 0 means DefaultMaxRatio; negative means no cap. The first MiB is
	// always allowed.
	MaxRatio float64
	// MaxBytes caps the unpacked bytes in total; 0 means no cap.
	MaxBytes int64
	// MaxEntries caps the number of members; 0 means DefaultMaxEntries.
	MaxEntries int
	// TempDir holds a zip archive read from a stream (zip needs random
	// access); "" is os.TempDir(). Tar archives are never spooled.
	TempDir string
	// XZ is the xz binary for .xz archives (Debian package xz-utils);
	// "" is "xz" from PATH.
	XZ string
	// Progress, when set, is called after each member.
	Progress func(pullers.Progress)
}

// Defaults.
const (
	DefaultMaxRatio   = 200
	DefaultMaxEntries = 5_000_000
)

// Sink is where an import goes: a pullers.Sink that can also store a
// content before its entry (*pool.Writer implements it).
type Sink interface {
	pullers.Sink
	StoreContent(ctx context.Context, r io.Reader) (pool.Entry, error)
	// Flush waits until stored contents are in the pool.
	Flush(ctx context.Context) error
}

// Stats are what an import added.
type Stats struct {
	Format              string // "tar", "tar+gzip", "tar+zstd", "tar+xz", "zip"
	Files, Dirs, Links  int64
	Bytes, ArchiveBytes int64
}

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// node is one member, indexed by its clean path.
type node struct {
	e        pool.Entry
	explicit bool     // given by the archive (not a parent made up)
	kids     []string // names of children (directories)
}

// importer collects an archive's members, then adds them in walk order.
type importer struct {
	o     Options
	sink  Sink
	nodes map[string]*node
	st    Stats
	in    *countReader // archive bytes read
	out   int64        // bytes unpacked
	links uint64
	now   time.Time
	bomb  error // the first cap passed
}

// Import reads a tar (plain, gzip, zstd or xz) or zip archive from r
// and adds its contents to sink as a source tree: "." first, then every
// member in walk order. Hostile archives are refused with ErrRefused:
// members named with "..", absolute paths, backslashes or NUL; the same
// path twice, or as a file and a directory; symlinks whose target leaves
// the tree; hard links to members not in the archive; more unpacked
// bytes than MaxRatio per archive byte (a bomb), or than MaxBytes.
//
// File contents are stored as they stream by (sink.StoreContent), so
// members may come in any order; only a zip read from a non-file stream
// is first copied to TempDir. Nothing is added to the sink unless the
// whole archive was read and accepted.
func Import(ctx context.Context, r io.Reader, sink Sink, o Options) (Stats, error) {
	if o.MaxRatio == 0 {
		o.MaxRatio = DefaultMaxRatio
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	im := &importer{o: o, sink: sink, nodes: map[string]*node{}, in: &countReader{r: r}, now: time.Now()}
	im.nodes["."] = &node{e: pool.Entry{Name: ".", Type: pool.TypeDir, Mode: 0o755, ModTime: im.now.UnixNano()}}
	br := bufio.NewReaderSize(im.in, 64<<10)
	magic, _ := br.Peek(262 + 6)
	var err error
	switch {
	case bytes.HasPrefix(magic, []byte("PK\x03\x04")) || bytes.HasPrefix(magic, []byte("PK\x05\x06")):
		im.st.Format = "zip"
		err = im.zipStream(ctx, br)
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		im.st.Format = "tar+gzip"
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(br); err == nil {
			err = im.tar(ctx, zr)
		} else {
			err = refuse("gzip: %v", err)
		}
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		im.st.Format = "tar+zstd"
		var zr *zstd.Decoder
		zr, err = zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20), zstd.WithDecoderMaxMemory(1<<30))
		if err == nil {
			err = im.tar(ctx, zr)
			zr.Close()
		}
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		im.st.Format = "tar+xz"
		err = im.xz(ctx, br)
	case len(magic) == 0:
		err = refuse("empty input")
	case len(magic) >= 262 && bytes.Equal(magic[257:262], []byte("ustar")) || len(magic) >= 512:
		im.st.Format = "tar"
		err = im.tar(ctx, br)
	default:
		err = refuse("not a tar, tar.gz, tar.zst, tar.xz or zip archive")
	}
	im.st.ArchiveBytes = im.in.n.Load()
	if err != nil {
		return im.st, err
	}
	if err := sink.Flush(ctx); err != nil {
		return im.st, err
	}
	return im.st, im.add(ctx, ".", im.nodes["."])
}

// countReader counts the archive bytes read (atomically: with xz the
// reading happens in exec's copying goroutine).
type countReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// unpacked counts bytes coming out of the decompressor (or zip members)
// and fails the read when the ratio or total cap is passed.
type unpacked struct {
	r  io.Reader
	im *importer
}

func (u *unpacked) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	u.im.out += int64(n)
	if e := u.im.checkBomb(); e != nil {
		return n, e
	}
	return n, err
}

func (im *importer) checkBomb() error {
	if im.bomb == nil && im.o.MaxBytes > 0 && im.out > im.o.MaxBytes {
		im.bomb = refuse("more than %d bytes unpacked (the cap)", im.o.MaxBytes)
	}
	if im.bomb == nil && im.o.MaxRatio > 0 && im.out > 1<<20 && float64(im.out) > im.o.MaxRatio*float64(max(im.in.n.Load(), 1)) {
		im.bomb = refuse("%d bytes unpacked from %d archive bytes: more than %g:1 (a zip bomb?)", im.out, im.in.n.Load(), im.o.MaxRatio)
	}
	return im.bomb
}

// cleanName checks a member name and returns its clean relative path
// ("." for the root). A leading "./" is fine; "..", absolute paths,
// backslashes, NUL and empty elements inside are not.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", refuse("a member with an empty name")
	}
	if strings.HasPrefix(name, "/") {
		return "", refuse("absolute path %q", name)
	}
	if strings.ContainsAny(name, "\\\x00") {
		return "", refuse("member name %q contains a backslash or NUL", name)
	}
	n := strings.TrimSuffix(name, "/")
	for strings.HasPrefix(n, "./") {
		n = n[2:]
	}
	if n == "" || n == "." {
		return ".", nil
	}
	for el := range strings.SplitSeq(n, "/") {
		if el == ".." {
			return "", refuse("member %q leaves the tree (..)", name)
		}
		if el == "" || el == "." || !pool.ValidName(el) {
			return "", refuse("member name %q has an empty, \".\" or invalid element", name)
		}
	}
	if len(n) > 32<<10 {
		return "", refuse("member name of %d bytes", len(n))
	}
	return n, nil
}

// put indexes a member at clean path p, making up missing parents.
func (im *importer) put(p string, e pool.Entry) error {
	if len(im.nodes) >= im.o.MaxEntries {
		return refuse("more than %d members", im.o.MaxEntries)
	}
	if p == "." {
		if e.Type != pool.TypeDir {
			return refuse("the archive root is a %s, not a directory", e.Type)
		}
		root := im.nodes["."]
		kids := root.kids
		e.Name = "."
		*root = node{e: e, explicit: true, kids: kids}
		return nil
	}
	if old, ok := im.nodes[p]; ok {
		if old.e.Type == pool.TypeDir && e.Type == pool.TypeDir && !old.explicit {
			old.e, old.explicit = withName(e, path.Base(p)), true
			return nil
		}
		if old.e.Type == pool.TypeDir && e.Type == pool.TypeDir {
			return refuse("directory %q appears twice", p)
		}
		return refuse("%q appears twice", p)
	}
	parent := path.Dir(p)
	if parent != "." {
		pn, ok := im.nodes[parent]
		if !ok {
			if err := im.put(parent, pool.Entry{Type: pool.TypeDir, Mode: 0o755, ModTime: im.now.UnixNano()}); err != nil {
				return err
			}
			im.nodes[parent].explicit = false
			pn = im.nodes[parent]
		}
		if pn.e.Type != pool.TypeDir {
			return refuse("%q is inside %q, which is a %s", p, parent, pn.e.Type)
		}
	}
	im.nodes[p] = &node{e: withName(e, path.Base(p)), explicit: true}
	pp := im.nodes[parent]
	pp.kids = append(pp.kids, path.Base(p))
	return nil
}

func withName(e pool.Entry, name string) pool.Entry {
	e.Name = name
	return e
}

// checkLink refuses a symlink at p whose target leaves the tree.
func checkLink(p, target string) error {
	if target == "" {
		return refuse("symlink %q has no target", p)
	}
	if strings.HasPrefix(target, "/") {
		return refuse("symlink %q points to the absolute path %q, out of the tree", p, target)
	}
	if strings.ContainsRune(target, 0) {
		return refuse("symlink %q: target contains NUL", p)
	}
	j := path.Join(path.Dir(p), target)
	if j == ".." || strings.HasPrefix(j, "../") {
		return refuse("symlink %q points to %q, out of the tree", p, target)
	}
	return nil
}

// content stores one member's data (read through the bomb checks).
func (im *importer) content(ctx context.Context, p string, r io.Reader) (pool.Entry, error) {
	e, err := im.sink.StoreContent(ctx, r)
	switch {
	case err == nil:
		return e, nil
	case im.bomb != nil:
		return e, im.bomb
	case errors.Is(err, pool.ErrEntry):
		return e, refuse("member %q: %v", p, err)
	}
	return e, err
}

// add adds the node at p and, for a directory, its subtree.
func (im *importer) add(ctx context.Context, p string, n *node) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := im.sink.Add(ctx, p, n.e, nil); err != nil {
		return fmt.Errorf("add %s: %w", p, err)
	}
	switch n.e.Type {
	case pool.TypeDir:
		im.st.Dirs++
	case pool.TypeFile:
		im.st.Files++
		im.st.Bytes += n.e.Size
	default:
		im.st.Links++
	}
	if im.o.Progress != nil {
		im.o.Progress(pullers.Progress{Files: im.st.Files + im.st.Dirs + im.st.Links, Bytes: im.st.Bytes, Path: p})
	}
	if n.e.Type != pool.TypeDir {
		return nil
	}
	slices.Sort(n.kids)
	for _, k := range n.kids {
		cp := k
		if p != "." {
			cp = p + "/" + k
		}
		if err := im.add(ctx, cp, im.nodes[cp]); err != nil {
			return err
		}
	}
	return nil
}

// tar reads a tar stream (already decompressed).
func (im *importer) tar(ctx context.Context, r io.Reader) error {
	tr := tar.NewReader(&unpacked{r: r, im: im})
	type hard struct{ p, target string }
	var hards []hard
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if im.bomb != nil {
				return im.bomb
			}
			return refuse("tar: %v", err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		p, err := cleanName(h.Name)
		if err != nil {
			return err
		}
		e := pool.Entry{Mode: fs.FileMode(h.Mode) & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky),
			UID: uint32(h.Uid), GID: uint32(h.Gid), User: h.Uname, Group: h.Gname, ModTime: h.ModTime.UnixNano()}
		if h.Mode&0o4000 != 0 {
			e.Mode |= fs.ModeSetuid
		}
		if h.Mode&0o2000 != 0 {
			e.Mode |= fs.ModeSetgid
		}
		if h.Mode&0o1000 != 0 {
			e.Mode |= fs.ModeSticky
		}
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && x != "" {
				if e.Xattrs == nil {
					e.Xattrs = map[string][]byte{}
				}
				e.Xattrs[x] = []byte(v)
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			e.Type = pool.TypeDir
		case tar.TypeReg, tar.TypeGNUSparse:
			c, err := im.content(ctx, p, tr)
			if err != nil {
				return err
			}
			e.Type, e.Size, e.Content, e.Chunked = pool.TypeFile, c.Size, c.Content, c.Chunked
		case tar.TypeSymlink:
			if err := checkLink(p, h.Linkname); err != nil {
				return err
			}
			e.Type, e.Target = pool.TypeSymlink, h.Linkname
		case tar.TypeLink:
			t, err := cleanName(h.Linkname)
			if err != nil || t == "." {
				return refuse("hard link %q to %q: %v", p, h.Linkname, err)
			}
			hards = append(hards, hard{p, t})
			e.Type = pool.TypeFile // content filled in below
		case tar.TypeChar, tar.TypeBlock:
			e.Type = pool.TypeCharDev
			if h.Typeflag == tar.TypeBlock {
				e.Type = pool.TypeBlockDev
			}
			e.Rdev = mkdev(uint64(h.Devmajor), uint64(h.Devminor))
		case tar.TypeFifo:
			e.Type = pool.TypeFIFO
		default:
			return refuse("member %q has the unsupported tar type %q", p, h.Typeflag)
		}
		if err := im.put(p, e); err != nil {
			return err
		}
	}
	// Hard links take their target's content; both join one group.
	for _, hl := range hards {
		t, ok := im.nodes[hl.target]
		if !ok || t.e.Type != pool.TypeFile || !t.explicit || slices.ContainsFunc(hards, func(x hard) bool { return x.p == hl.target }) {
			return refuse("hard link %q points to %q, which is not a regular file of the archive", hl.p, hl.target)
		}
		if t.e.HardLink == 0 {
			im.links++
			t.e.HardLink = im.links
		}
		n := im.nodes[hl.p]
		n.e.Size, n.e.Content, n.e.Chunked, n.e.HardLink = t.e.Size, t.e.Content, t.e.Chunked, t.e.HardLink
	}
	return nil
}

func mkdev(major, minor uint64) uint64 {
	return (major&0xfff)<<8 | (major&^0xfff)<<32 | minor&0xff | (minor&^0xff)<<12
}

// xz decompresses with the xz binary (xz-utils).
func (im *importer) xz(ctx context.Context, r io.Reader) error {
	bin := im.o.XZ
	if bin == "" {
		bin = "xz"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return fmt.Errorf("a .xz archive needs the xz program (Debian package xz-utils): %w", err)
	}
	xctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(xctx, path, "--decompress", "--stdout", "--single-stream", "--memlimit=1GiB")
	cmd.Stdin = r
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("xz: %w", err)
	}
	terr := im.tar(ctx, out)
	if terr != nil {
		cancel()
		cmd.Wait()
		return terr
	}
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return refuse("xz: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// zipStream spools a zip read from a stream to a temp file (zip needs
// random access), unless r is a file already.
func (im *importer) zipStream(ctx context.Context, r io.Reader) error {
	if f, ok := im.in.r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			im.in.n.Store(fi.Size())
			return im.zip(ctx, f, fi.Size())
		}
	}
	tmp, err := os.CreateTemp(im.o.TempDir, "cairn-import-*.zip")
	if err != nil {
		return fmt.Errorf("zip spool: %w", err)
	}
	os.Remove(tmp.Name())
	defer tmp.Close()
	n, err := io.Copy(tmp, r)
	if err != nil {
		return fmt.Errorf("zip spool: %w", err)
	}
	return im.zip(ctx, tmp, n)
}

func (im *importer) zip(ctx context.Context, ra io.ReaderAt, size int64) error {
	zr, err := zip.NewReader(ra, size)
	if err != nil {
		return refuse("zip: %v", err)
	}
	for _, f := range zr.File {
		if err := ctx.Err(); err != nil {
			return err
		}
		p, err := cleanName(f.Name)
		if err != nil {
			return err
		}
		if im.o.MaxRatio > 0 && f.UncompressedSize64 > 1<<20 && float64(f.UncompressedSize64) > im.o.MaxRatio*float64(max(f.CompressedSize64, 1)) {
			return refuse("member %q: %d bytes from %d compressed: more than %g:1 (a zip bomb?)", p, f.UncompressedSize64, f.CompressedSize64, im.o.MaxRatio)
		}
		m := f.Mode()
		e := pool.Entry{Mode: m & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), ModTime: f.Modified.UnixNano()}
		if f.Modified.IsZero() {
			e.ModTime = im.now.UnixNano()
		}
		switch {
		case m.IsDir() || strings.HasSuffix(f.Name, "/"):
			e.Type = pool.TypeDir
			if e.Mode&fs.ModePerm == 0 {
				e.Mode |= 0o755
			}
		case m&fs.ModeSymlink != 0:
			rc, err := f.Open()
			if err != nil {
				return refuse("member %q: %v", p, err)
			}
			t, err := io.ReadAll(io.LimitReader(rc, 4097))
			rc.Close()
			if err != nil || len(t) > 4096 {
				return refuse("symlink %q: unreadable or too long target", p)
			}
			if err := checkLink(p, string(t)); err != nil {
				return err
			}
			e.Type, e.Target = pool.TypeSymlink, string(t)
		case m.IsRegular():
			rc, err := f.Open()
			if err != nil {
				return refuse("member %q: %v", p, err)
			}
			c, err := im.content(ctx, p, &unpacked{r: rc, im: im})
			rc.Close()
			if err != nil {
				return err
			}
			e.Type, e.Size, e.Content, e.Chunked = pool.TypeFile, c.Size, c.Content, c.Chunked
			if e.Mode&fs.ModePerm == 0 {
				e.Mode |= 0o644
			}
		default:
			return refuse("member %q is a %v, not a file, directory or symlink", p, m.Type())
		}
		if err := im.put(p, e); err != nil {
			return err
		}
	}
	return nil
}
