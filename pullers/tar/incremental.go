package tar

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/pool"
)

// maxListing caps the bytes of the incremental file listing.
const maxListing = 512 << 20

// listed is one line of the host's file listing.
type listed struct {
	rel   string
	typ   byte // find %y: f d l c b p s
	size  int64
	mtime int64 // ns
	mode  fs.FileMode
	uid   uint32
	gid   uint32
}

// walkLess orders paths the way the walk emits them: depth first, each
// directory's names in byte order ("/" sorts before every other byte).
func walkLess(a, b string) bool { return walkCompare(a, b) < 0 }

func walkCompare(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return -1
		}
		if cb == '/' {
			return 1
		}
		if ca < cb {
			return -1
		}
		return 1
	}
	return len(a) - len(b)
}

// listTree lists src on the host (GNU find), in walk order.
func listTree(ctx context.Context, c *ssh.Client, src string, oneFS bool) ([]listed, error) {
	sess, err := c.NewSession()
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	defer sess.Close()
	out, err := sess.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	sess.Stderr = &limitWriter{w: &stderr, n: 64 << 10}
	xdev := ""
	if oneFS {
		xdev = " -xdev"
	}
	cmd := "LC_ALL=C find " + shellQuote(src) + " -mindepth 1" + xdev + ` -printf '%y %s %T@ %m %U %G %P\0'`
	if err := sess.Start(cmd); err != nil {
		return nil, ctxErr(ctx, err)
	}
	data, err := io.ReadAll(io.LimitReader(bufio.NewReader(out), maxListing+1))
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	if len(data) > maxListing {
		return nil, errors.New("file listing too long")
	}
	if err := sess.Wait(); err != nil {
		// find reports unreadable directories and goes on: the listing is
		// what could be seen; tar will complain about the rest.
		var exit *ssh.ExitError
		if !errors.As(err, &exit) || len(data) == 0 {
			return nil, fmt.Errorf("find: %v: %s", err, strings.TrimSpace(stderr.String()))
		}
	}
	var ls []listed
	for rec := range bytes.SplitSeq(data, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		l, err := parseListed(string(rec))
		if err != nil {
			return nil, fmt.Errorf("listing line %q: %w", rec, err)
		}
		ls = append(ls, l)
	}
	slices.SortFunc(ls, func(a, b listed) int { return walkCompare(a.rel, b.rel) })
	return ls, nil
}

func parseListed(s string) (listed, error) {
	f := strings.SplitN(s, " ", 7)
	if len(f) != 7 || len(f[0]) != 1 || f[6] == "" {
		return listed{}, errors.New("bad format")
	}
	l := listed{typ: f[0][0], rel: f[6]}
	var err error
	if l.size, err = strconv.ParseInt(f[1], 10, 64); err != nil || l.size < 0 {
		return l, errors.New("bad size")
	}
	sec, frac, _ := strings.Cut(f[2], ".")
	secs, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return l, errors.New("bad mtime")
	}
	frac = (frac + "000000000")[:9]
	ns, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return l, errors.New("bad mtime")
	}
	l.mtime = secs*1e9 + ns
	m, err := strconv.ParseUint(f[3], 8, 32)
	if err != nil {
		return l, errors.New("bad mode")
	}
	l.mode = fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		l.mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		l.mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		l.mode |= fs.ModeSticky
	}
	uid, err1 := strconv.ParseUint(f[4], 10, 32)
	gid, err2 := strconv.ParseUint(f[5], 10, 32)
	if err1 != nil || err2 != nil {
		return l, errors.New("bad owner")
	}
	l.uid, l.gid = uint32(uid), uint32(gid)
	return l, nil
}

type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// planItem is one path of an incremental pull: reused from the previous
// snapshot, or requested from tar.
type planItem struct {
	rel   string
	reuse *pool.Entry // nil: from the stream
}

// plan decides, in walk order, what to reuse and what tar must send.
func (r *reader) plan(ctx context.Context, ls []listed) ([]planItem, error) {
	items := []planItem{{rel: "."}}
	for i := range ls {
		l := &ls[i]
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if _, err := cleanName("./" + l.rel); err != nil || r.under(l.rel) {
			continue // tar would refuse it too; no request
		}
		if r.excludes.Match(l.rel) {
			if l.typ == 'd' {
				r.skipped = append(r.skipped, l.rel)
			}
			continue
		}
		if l.typ == 'f' && l.size > 0 && r.j.Previous != nil {
			prev, ok, err := r.j.Previous.Lookup(ctx, l.rel)
			if err == nil && ok && prev.Type == pool.TypeFile && prev.Size == l.size &&
				prev.ModTime == l.mtime && !prev.Content.IsZero() {
				e := prev
				e.Name = path.Base(l.rel)
				e.Mode, e.UID, e.GID = l.mode, l.uid, l.gid
				e.HardLink = 0
				if id, ok := r.links[l.rel]; ok {
					e.HardLink = r.group(id)
				}
				items = append(items, planItem{rel: l.rel, reuse: &e})
				continue
			}
		}
		items = append(items, planItem{rel: l.rel})
	}
	r.skipped = nil // the stream's own refusals are tracked afresh
	return items, nil
}

func (r *reader) group(id string) uint64 {
	g := r.groups[id]
	if g == 0 {
		g = uint64(len(r.groups) + 1)
		r.groups[id] = g
	}
	return g
}

// filesFrom is what tar reads with --null --files-from=-.
func filesFrom(items []planItem) io.Reader {
	var b bytes.Buffer
	for _, it := range items {
		if it.reuse != nil {
			continue
		}
		if it.rel == "." {
			b.WriteString(".\x00")
			continue
		}
		b.WriteString("./" + it.rel + "\x00")
	}
	return &b
}

// merge walks the plan and the stream in lockstep: both are in walk order.
// A requested path with no member vanished (tar says so on stderr); a
// member nobody requested is refused.
func (r *reader) merge(ctx context.Context, stdout io.Reader, items []planItem) error {
	sr := &streamReader{r: bufio.NewReaderSize(stdout, 256<<10)}
	tr := tar.NewReader(sr)
	var next *tar.Header
	nextRel := ""
	advance := func() error {
		h, err := tr.Next()
		if err == io.EOF {
			next = nil
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the tar stream: %w", err)
		}
		next = h
		nextRel, err = cleanName(h.Name)
		if err != nil {
			nextRel = "\xff" + h.Name // sorts last; refused when reached
		}
		return nil
	}
	if err := advance(); err != nil {
		return err
	}
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		if it.reuse != nil {
			if !r.rooted {
				if err := r.addRoot(ctx, nil); err != nil {
					return err
				}
			}
			if r.under(it.rel) {
				continue
			}
			if err := r.j.Sink.Add(ctx, it.rel, *it.reuse, nil); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if errors.Is(err, pool.ErrEntry) {
					r.recordError(it.rel, fmt.Errorf("%w (it is read again on the next full or changed pull)", err))
					continue
				}
				return fmt.Errorf("store %s: %w", it.rel, err)
			}
			r.prog.Files++
			r.prog.Skipped++
			r.prog.Bytes += it.reuse.Size
			r.report(it.rel)
			continue
		}
		// Members before this path were not requested (or are hostile).
		for next != nil && walkLess(nextRel, it.rel) {
			r.recordError(".", fmt.Errorf("unrequested tar member %q; skipped", next.Name))
			if err := advance(); err != nil {
				return err
			}
		}
		if next == nil || nextRel != it.rel {
			continue // vanished before tar reached it
		}
		if err := r.member(ctx, tr, sr, next); err != nil {
			return err
		}
		if err := advance(); err != nil {
			return err
		}
	}
	for next != nil {
		r.recordError(".", fmt.Errorf("unrequested tar member %q; skipped", next.Name))
		if err := advance(); err != nil {
			return err
		}
	}
	if !r.rooted {
		return r.addRoot(ctx, nil)
	}
	return nil
}
