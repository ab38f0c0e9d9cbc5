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
	"net"
	"path"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/internal/walk"
)

// Method is the source method name this puller registers.
const Method = "tar"

func init() {
	pullers.Register(Method, func() pullers.Puller { return New() })
}

// Limits on what the host may make us hold.
const (
	maxLinkList = 64 << 20 // bytes of the hard-link listing
	maxStderr   = 1 << 20  // bytes of tar's stderr kept
	pathMax     = 4096     // Linux PATH_MAX
)

// Puller pulls a directory as a tar stream over SSH. Make one with New;
// SeenHostKey reports the key of its last login.
type Puller struct {
	// OnHostKey, when set, is called with the server's host key after
	// every successful handshake.
	OnHostKey func(ssh.PublicKey)
	// Dial opens the TCP connection to the SSH server (e.g. through a
	// jump host); nil uses net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu   sync.Mutex
	seen ssh.PublicKey
}

var _ pullers.Puller = (*Puller)(nil)

// New returns a tar-over-SSH puller.
func New() *Puller { return &Puller{} }

// SeenHostKey returns the host key of the last login made without a pin
// (trust on first use), in authorized_keys format, or "". The appliance
// stores it as Options["host_key"].
func (p *Puller) SeenHostKey() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		return ""
	}
	return HostKeyString(p.seen)
}

// Pull runs tar on the host and stores its stream. See the package
// documentation.
func (p *Puller) Pull(ctx context.Context, j *pullers.Job) error {
	if j == nil || j.Sink == nil {
		return errors.New("tar pull: no sink")
	}
	t, err := parseTarget(j.Host, &j.Source)
	if err != nil {
		return fmt.Errorf("tar %s: %w", j.Host, err)
	}
	src := j.Source.Path
	if src == "" || strings.ContainsAny(src, "\x00\n") {
		return fmt.Errorf("tar %s: bad source path %q", t.addr, src)
	}
	where := fmt.Sprintf("tar %s:%s", t.addr, src)
	excludes, err := walk.ParseExcludes(j.Source.Excludes)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	client, stop, err := p.dial(ctx, t)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	defer func() { stop(); client.Close() }()

	links, err := hardLinks(ctx, client, src)
	if err != nil {
		return fmt.Errorf("%s: list hard links: %w", where, err)
	}
	r := &reader{p: p, j: j, where: where, excludes: excludes, links: links, groups: map[string]uint64{}}
	oneFS := j.Source.Options["one_file_system"] == "true"
	incremental := j.Previous != nil && j.Source.Options["full"] != "true"
	var items []planItem
	if incremental {
		ls, err := listTree(ctx, client, src, oneFS)
		if err != nil {
			return fmt.Errorf("%s: list files: %w", where, err)
		}
		// tar names explicit files by full path, which fails past
		// PATH_MAX; such a tree is pulled in full.
		for _, l := range ls {
			if len(src)+1+len(l.rel) >= pathMax {
				incremental = false
				break
			}
		}
		if incremental {
			if items, err = r.plan(ctx, ls); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		}
	}
	sess, err := client.NewSession()
	if err != nil {
		return fmt.Errorf("%s: session: %w", where, ctxErr(ctx, err))
	}
	defer sess.Close()
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	stderr := &lineCollector{max: maxStderr}
	sess.Stderr = stderr
	args := []string{"LC_ALL=C", "tar", "--create", "--file=-", "--format=posix",
		"--hard-dereference", "--sparse", "--xattrs", "--xattrs-include=*", "--ignore-failed-read",
		"--warning=no-file-ignored"}
	if oneFS {
		args = append(args, "--one-file-system")
	}
	if incremental {
		// Only the changed paths, in the plan's order, named on stdin.
		args = append(args, "-C", src, "--no-recursion", "--null", "--verbatim-files-from", "--files-from=-")
		sess.Stdin = filesFrom(items)
	} else {
		args = append(args, "--sort=name", "-C", src, ".")
	}
	var quoted []string
	for i, a := range args {
		if i == 0 {
			quoted = append(quoted, a)
			continue
		}
		quoted = append(quoted, shellQuote(a))
	}
	if err := sess.Start(strings.Join(quoted, " ")); err != nil {
		return fmt.Errorf("%s: start tar: %w", where, ctxErr(ctx, err))
	}
	var streamErr error
	if incremental {
		streamErr = r.merge(ctx, stdout, items)
	} else {
		streamErr = r.read(ctx, stdout)
	}
	if streamErr != nil {
		sess.Close()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: %w%s", where, streamErr, stderrTail(stderr))
	}
	io.Copy(io.Discard, io.LimitReader(stdout, 1<<20))
	waitErr := sess.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// tar's per-file complaints ("tar: ./x: Cannot open: Permission
	// denied") become per-file errors.
	n := 0
	for _, line := range stderr.lines() {
		rel, msg, ok := tarComplaint(line)
		if !ok {
			continue
		}
		n++
		r.prog.Errors++
		j.Sink.RecordError(rel, fmt.Errorf("%s/%s: %s", where, rel, msg))
	}
	var exit *ssh.ExitError
	switch {
	case waitErr == nil:
	case errors.As(waitErr, &exit) && (exit.ExitStatus() == 1 || exit.ExitStatus() == 2 && n > 0):
		// 1: some files differ (changed while read); 2 with complaints:
		// files that could not be read. Both are recorded per file.
	default:
		return fmt.Errorf("%s: tar: %w%s", where, waitErr, stderrTail(stderr))
	}
	r.report("")
	return nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// hardLinks lists the regular files with more than one link (GNU find),
// keyed by path relative to src, valued by device:inode. A host without
// GNU find gives no hard-link groups, not an error.
func hardLinks(ctx context.Context, c *ssh.Client, src string) (map[string]string, error) {
	sess, err := c.NewSession()
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	defer sess.Close()
	out, err := sess.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd := "LC_ALL=C find " + shellQuote(src) + " -type f -links +1 -printf '%D:%i %P\\0' 2>/dev/null"
	if err := sess.Start(cmd); err != nil {
		return nil, ctxErr(ctx, err)
	}
	data, err := io.ReadAll(io.LimitReader(out, maxLinkList+1))
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	if len(data) > maxLinkList {
		return nil, errors.New("hard-link listing too long")
	}
	sess.Wait() // find's status: a partial listing still helps
	links := map[string]string{}
	for rec := range bytes.SplitSeq(data, []byte{0}) {
		id, rel, ok := bytes.Cut(rec, []byte{' '})
		if ok && len(rel) > 0 {
			links[string(rel)] = string(id)
		}
	}
	return links, nil
}

// reader turns the tar stream into sink entries.
type reader struct {
	p        *Puller
	j        *pullers.Job
	where    string
	excludes walk.Excludes
	links    map[string]string // path -> dev:ino
	groups   map[string]uint64 // dev:ino -> HardLink id
	skipped  []string          // directories whose children are skipped
	prog     pullers.Progress
	rooted   bool
}

func (r *reader) recordError(rel string, err error) {
	r.prog.Errors++
	r.j.Sink.RecordError(rel, fmt.Errorf("%s/%s: %w", r.where, rel, err))
}

func (r *reader) report(rel string) {
	r.prog.Path = rel
	if r.j.Progress != nil {
		r.j.Progress(r.prog)
	}
}

// cleanName validates a member name: relative, no "..", no empty or "."
// elements after the leading "./". It returns "." for the root.
func cleanName(name string) (string, error) {
	n := strings.TrimPrefix(name, "./")
	n = strings.TrimSuffix(n, "/")
	if n == "" || n == "." {
		return ".", nil
	}
	if strings.HasPrefix(n, "/") {
		return "", fmt.Errorf("absolute member name %q", name)
	}
	for el := range strings.SplitSeq(n, "/") {
		if !pool.ValidName(el) {
			return "", fmt.Errorf("member name %q has an invalid element %q", name, el)
		}
	}
	return n, nil
}

// under reports whether rel is below one of the skipped directories.
func (r *reader) under(rel string) bool {
	for _, d := range r.skipped {
		if strings.HasPrefix(rel, d+"/") {
			return true
		}
	}
	return false
}

// streamReader tells the tar stream's failures apart from the sink's.
type streamReader struct {
	r   io.Reader
	err error
}

func (s *streamReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

func (r *reader) read(ctx context.Context, stdout io.Reader) error {
	sr := &streamReader{r: bufio.NewReaderSize(stdout, 256<<10)}
	tr := tar.NewReader(sr)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read the tar stream: %w", err)
		}
		if err := r.member(ctx, tr, sr, hdr); err != nil {
			return err
		}
	}
	if !r.rooted {
		return r.addRoot(ctx, nil)
	}
	return nil
}

// member stores one tar member (or records why not). An error fails the
// pull.
func (r *reader) member(ctx context.Context, tr *tar.Reader, sr *streamReader, hdr *tar.Header) error {
	rel, err := cleanName(hdr.Name)
	if err != nil {
		r.recordError(".", fmt.Errorf("%w; skipped", err))
		if hdr.Typeflag == tar.TypeDir {
			if n := strings.Trim(hdr.Name, "/"); n != "" {
				r.skipped = append(r.skipped, strings.TrimPrefix(n, "./"))
			}
		}
		return nil
	}
	if rel == "." {
		if r.rooted || hdr.Typeflag != tar.TypeDir {
			r.recordError(".", errors.New("a second or non-directory root member; skipped"))
			return nil
		}
	} else if !r.rooted {
		if err := r.addRoot(ctx, nil); err != nil {
			return err
		}
	}
	if rel != "." && (r.under(rel) || r.excludes.Match(rel)) {
		if hdr.Typeflag == tar.TypeDir {
			r.skipped = append(r.skipped, rel)
		}
		return nil
	}
	e, ok := r.entry(rel, hdr)
	if !ok {
		if hdr.Typeflag == tar.TypeDir {
			r.skipped = append(r.skipped, rel)
		}
		return nil
	}
	if rel == "." {
		return r.addRoot(ctx, &e)
	}
	var content io.Reader
	mr := &streamReader{r: tr}
	if e.Type == pool.TypeFile {
		content = mr
	}
	if err := r.j.Sink.Add(ctx, rel, e, content); err != nil {
		if mr.err != nil || sr.err != nil || ctx.Err() != nil {
			// The stream broke inside this member: nothing after it can
			// be trusted.
			cause := mr.err
			if sr.err != nil {
				cause = sr.err
			}
			return fmt.Errorf("read %s from the tar stream: %w", rel, ctxErr(ctx, cause))
		}
		if errors.Is(err, pool.ErrEntry) {
			r.recordError(rel, err)
			if e.Type == pool.TypeDir {
				r.skipped = append(r.skipped, rel)
			}
			return nil
		}
		return fmt.Errorf("store %s: %w", rel, err)
	}
	r.prog.Files++
	if e.Type == pool.TypeFile {
		r.prog.Bytes += e.Size
	}
	r.report(rel)
	return nil
}

func (r *reader) addRoot(ctx context.Context, e *pool.Entry) error {
	root := pool.Entry{Name: ".", Type: pool.TypeDir, Mode: 0o755}
	if e != nil {
		root = *e
	}
	if err := r.j.Sink.Add(ctx, ".", root, nil); err != nil {
		return fmt.Errorf("store the root: %w", err)
	}
	r.rooted = true
	r.prog.Files++
	r.report(".")
	return nil
}

// entry converts a header; ok is false (with an error recorded) for
// members that cannot be stored.
func (r *reader) entry(rel string, h *tar.Header) (pool.Entry, bool) {
	e := pool.Entry{
		Name:    path.Base(rel),
		Mode:    fs.FileMode(h.Mode & 0o777),
		UID:     uint32(h.Uid),
		GID:     uint32(h.Gid),
		User:    h.Uname,
		Group:   h.Gname,
		ModTime: h.ModTime.UnixNano(),
	}
	if h.Uid < 0 || h.Gid < 0 || h.Uid > 1<<32-1 || h.Gid > 1<<32-1 {
		e.UID, e.GID = 0, 0
	}
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
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && name != "" {
			if e.Xattrs == nil {
				e.Xattrs = map[string][]byte{}
			}
			e.Xattrs[name] = []byte(v)
		}
	}
	switch h.Typeflag {
	case tar.TypeReg: // the reader turns the old TypeRegA into TypeReg
		if h.Size < 0 {
			r.recordError(rel, fmt.Errorf("negative size %d", h.Size))
			return e, false
		}
		e.Type, e.Size = pool.TypeFile, h.Size
		if id, ok := r.links[rel]; ok {
			e.HardLink = r.group(id)
		}
	case tar.TypeDir:
		e.Type = pool.TypeDir
	case tar.TypeSymlink:
		if strings.ContainsRune(h.Linkname, 0) {
			r.recordError(rel, errors.New("symlink target contains NUL"))
			return e, false
		}
		e.Type, e.Target = pool.TypeSymlink, h.Linkname // recorded, never followed
	case tar.TypeChar, tar.TypeBlock:
		e.Type = pool.TypeCharDev
		if h.Typeflag == tar.TypeBlock {
			e.Type = pool.TypeBlockDev
		}
		e.Rdev = mkdev(uint64(h.Devmajor), uint64(h.Devminor))
	case tar.TypeFifo:
		e.Type = pool.TypeFIFO
	case tar.TypeLink:
		// tar runs with --hard-dereference, so an honest host never sends
		// one; a link to another member is not followed.
		r.recordError(rel, fmt.Errorf("hard-link member to %q not accepted", h.Linkname))
		return e, false
	default:
		r.recordError(rel, fmt.Errorf("unsupported tar member type %q", h.Typeflag))
		return e, false
	}
	return e, true
}

func mkdev(major, minor uint64) uint64 {
	return (major&0x00000fff)<<8 | (major&0xfffff000)<<32 | (minor&0x000000ff)<<0 | (minor&0xffffff00)<<12
}

// tarComplaint parses "tar: ./path: message" into the member path and the
// message. Lines that name no member are not per-file errors.
func tarComplaint(line string) (rel, msg string, ok bool) {
	rest, found := strings.CutPrefix(line, "tar: ")
	if !found {
		return "", "", false
	}
	i := strings.LastIndex(rest, ": ")
	if i <= 0 {
		return "", "", false
	}
	name, msg := rest[:i], rest[i+2:]
	// "tar: ./x: Cannot open: Permission denied": the name ends at the
	// first ": " after "./".
	if j := strings.Index(rest, ": "); j > 0 && strings.HasPrefix(rest, "./") {
		name, msg = rest[:j], rest[j+2:]
	}
	if !strings.HasPrefix(name, "./") && name != "." {
		return "", "", false
	}
	rel, err := cleanName(name)
	if err != nil {
		return "", "", false
	}
	return rel, "tar: " + msg, true
}

func stderrTail(c *lineCollector) string {
	lines := c.lines()
	if len(lines) == 0 {
		return ""
	}
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return ": " + strings.Join(lines, "; ")
}

// lineCollector keeps tar's stderr lines (up to max bytes).
type lineCollector struct {
	mu   sync.Mutex
	max  int
	n    int
	buf  bytes.Buffer
	full bool
}

func (c *lineCollector) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n+len(p) > c.max {
		c.full = true
		return len(p), nil
	}
	c.n += len(p)
	c.buf.Write(p)
	return len(p), nil
}

func (c *lineCollector) lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for l := range strings.SplitSeq(c.buf.String(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
