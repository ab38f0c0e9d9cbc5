package sftp

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// Method is the source method name this puller registers.
const Method = "sftp"

func init() {
	pullers.Register(Method, func() pullers.Puller { return New() })
}

// Defaults for the limits that keep a hostile server from making a pull
// loop or eat memory.
const (
	DefaultMaxDepth     = 256
	DefaultMaxListBytes = 64 << 20
	DefaultRetries      = 2
)

// Puller pulls over SFTP. Make one with New; one Puller runs one pull
// (or restore) at a time; SeenHostKey reports the key of its last login.
type Puller struct {
	// OnHostKey, when set, is called with the server's host key after
	// every successful handshake (also when it matched the pinned key).
	OnHostKey func(ssh.PublicKey)
	// Dial opens the TCP connection; nil uses net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the clock for Options["full_every"]; nil is time.Now.
	Now func() time.Time
	// Log receives reconnects; nil discards.
	Log *slog.Logger

	MaxDepth     int   // directory nesting; 0: DefaultMaxDepth
	MaxListBytes int64 // bytes the server may send for one listing; 0: DefaultMaxListBytes
	Retries      int   // extra attempts for a file after a dropped connection; 0: DefaultRetries, <0: none

	mu   sync.Mutex
	seen ssh.PublicKey
}

var _ pullers.Puller = (*Puller)(nil)

// New returns an SFTP puller with the default limits.
func New() *Puller { return &Puller{} }

// SeenHostKey returns the host key of the last successful login in
// authorized_keys format ("ssh-ed25519 AAAA…"), or "". The appliance
// stores it as Options["host_key"] after a first pull (trust on first use).
func (p *Puller) SeenHostKey() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		return ""
	}
	return HostKeyString(p.seen)
}

func (p *Puller) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Paths returns the remote paths of s: Source.Path and the comma-separated
// Options["paths"], cleaned, without duplicates or paths inside another.
func Paths(s pullers.Source) ([]string, error) {
	var ps []string
	add := func(p string) error {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil
		}
		if strings.ContainsRune(p, 0) {
			return fmt.Errorf("path %q contains NUL", p)
		}
		ps = append(ps, path.Clean(p))
		return nil
	}
	if err := add(s.Path); err != nil {
		return nil, err
	}
	for p := range strings.SplitSeq(s.Options["paths"], ",") {
		if err := add(p); err != nil {
			return nil, err
		}
	}
	if len(ps) == 0 {
		return nil, errors.New("no path (Source.Path or Options[\"paths\"])")
	}
	if len(ps) > 1 {
		for _, p := range ps {
			if !path.IsAbs(p) {
				return nil, fmt.Errorf("path %q: with several paths, each must be absolute", p)
			}
		}
	}
	slices.Sort(ps)
	ps = slices.Compact(ps)
	var out []string
	for _, p := range ps {
		if !slices.ContainsFunc(out, func(q string) bool { return q == "/" || strings.HasPrefix(p, q+"/") }) {
			out = append(out, p) // not inside a path already kept
		}
	}
	return out, nil
}

// Pull walks the source into j.Sink. See the package documentation.
func (p *Puller) Pull(ctx context.Context, j *pullers.Job) error {
	if j == nil || j.Sink == nil {
		return errors.New("sftp pull: no sink")
	}
	t, err := parseTarget(j.Source)
	if err != nil {
		return err
	}
	roots, err := Paths(j.Source)
	if err != nil {
		return fmt.Errorf("sftp %s: %w", t.addr, err)
	}
	w := &walker{p: p, j: j, t: t, dirsSeen: map[string]bool{}}
	w.maxDepth = p.MaxDepth
	if w.maxDepth <= 0 {
		w.maxDepth = DefaultMaxDepth
	}
	w.maxList = p.MaxListBytes
	if w.maxList <= 0 {
		w.maxList = DefaultMaxListBytes
	}
	w.retries = p.Retries
	if w.retries == 0 {
		w.retries = DefaultRetries
	} else if w.retries < 0 {
		w.retries = 0
	}
	if err := w.options(); err != nil {
		return err
	}
	for _, pat := range j.Source.Excludes {
		pat = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(pat, "./"), "/"), "/")
		if pat == "" {
			continue
		}
		if _, err := path.Match(pat, ""); err != nil {
			return fmt.Errorf("sftp %s: exclude pattern %q: %w", t.addr, pat, err)
		}
		w.excludes = append(w.excludes, pat)
	}
	w.cn, err = p.dial(ctx, t)
	if err != nil {
		return err
	}
	defer func() { w.cn.Close() }()

	if len(roots) == 1 {
		w.base = roots[0]
		st, err := w.cn.c.Stat(w.base) // the root is what the user named: follow it
		if err != nil {
			return fmt.Errorf("sftp %s:%s: source: %w", t.addr, w.base, err)
		}
		if !st.IsDir() {
			return fmt.Errorf("sftp %s:%s: source is not a directory", t.addr, w.base)
		}
		e := w.entry(".", st)
		if err := j.Sink.Add(ctx, ".", e, nil); err != nil {
			return fmt.Errorf("sftp %s:%s: store the root: %w", t.addr, w.base, err)
		}
		w.added(".", &e)
		if err := w.walkDir(ctx, "", 0); err != nil {
			return err
		}
	} else {
		// Several paths: each at its own absolute location below a
		// synthetic root; the directories on the way are stat'ed.
		w.base = "/"
		root := pool.Entry{Name: ".", Type: pool.TypeDir, Mode: 0o755}
		if err := j.Sink.Add(ctx, ".", root, nil); err != nil {
			return fmt.Errorf("sftp %s: store the root: %w", t.addr, err)
		}
		w.added(".", &root)
		for _, r := range roots {
			if err := w.walkRoot(ctx, strings.TrimPrefix(r, "/")); err != nil {
				return err
			}
		}
	}
	w.report("")
	return nil
}

// walker is the state of one pull, used by one goroutine.
type walker struct {
	p        *Puller
	j        *pullers.Job
	t        *target
	cn       *conn
	base     string // remote path of the snapshot root
	excludes []string
	maxDepth int
	maxList  int64
	retries  int
	full     bool
	every    int64 // full_every in days; 0: never
	day      int64
	prog     pullers.Progress
	dirsSeen map[string]bool // multi-path: directories already emitted
	redials  int
}

func (w *walker) options() error {
	o := w.j.Source.Options
	if v := o["full"]; v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("sftp %s: option full=%q: want true or false", w.t.addr, v)
		}
		w.full = b
	}
	if v := o["full_every"]; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("sftp %s: option full_every=%q: want a number of days", w.t.addr, v)
		}
		w.every = n
		now := time.Now
		if w.p.Now != nil {
			now = w.p.Now
		}
		w.day = now().Unix() / 86400
	}
	return nil
}

// fullRead: the incremental skip is off for rel in this run. With
// full_every=N every file is re-read once every N days, a different
// 1/N of the files each day (by a hash of the path).
func (w *walker) fullRead(rel string) bool {
	if w.full {
		return true
	}
	if w.every <= 0 {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(rel))
	return (int64(h.Sum64()%uint64(w.every))+w.day)%w.every == 0
}

func (w *walker) remote(rel string) string {
	if rel == "" || rel == "." {
		return w.base
	}
	return path.Join(w.base, rel)
}

func (w *walker) where(rel string) string {
	return fmt.Sprintf("sftp %s:%s", w.t.addr, w.remote(rel))
}

func (w *walker) excluded(rel string) bool {
	for _, pat := range w.excludes {
		if ok, _ := path.Match(pat, rel); ok {
			return true
		}
		if !strings.Contains(pat, "/") {
			if ok, _ := path.Match(pat, path.Base(rel)); ok {
				return true
			}
		}
	}
	return false
}

func (w *walker) recordError(rel string, err error) {
	w.prog.Errors++
	w.j.Sink.RecordError(rel, fmt.Errorf("%s: %w", w.where(rel), err))
}

func (w *walker) report(rel string) {
	w.prog.Path = rel
	if w.j.Progress != nil {
		w.j.Progress(w.prog)
	}
}

func (w *walker) added(rel string, e *pool.Entry) {
	w.prog.Files++
	if e.Type == pool.TypeFile {
		w.prog.Bytes += e.Size
	}
	w.report(rel)
}

// add stores a non-file entry; a rejected entry is a per-file error.
func (w *walker) add(ctx context.Context, rel string, e pool.Entry) (bool, error) {
	if err := w.j.Sink.Add(ctx, rel, e, nil); err != nil {
		return false, w.addFailed(ctx, rel, err)
	}
	w.added(rel, &e)
	return true, nil
}

func (w *walker) addFailed(ctx context.Context, rel string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, pool.ErrEntry) {
		w.recordError(rel, err)
		return nil
	}
	return fmt.Errorf("%s: store: %w", w.where(rel), err)
}

// entry converts SFTP attributes (v3: mode, uid, gid, mtime in seconds,
// size) to an Entry.
func (w *walker) entry(name string, fi os.FileInfo) pool.Entry {
	e := pool.Entry{Name: name, ModTime: fi.ModTime().Unix() * 1e9}
	var raw uint32
	if st, ok := fi.Sys().(*sftp.FileStat); ok {
		raw = st.Mode
		e.UID, e.GID = st.UID, st.GID
	}
	e.Type = typeOf(raw, fi.Mode())
	e.Mode = permOf(raw)
	if e.Type == pool.TypeFile {
		e.Size = max(fi.Size(), 0)
	}
	return e
}

func typeOf(raw uint32, m fs.FileMode) pool.EntryType {
	switch raw & 0o170000 {
	case 0o040000:
		return pool.TypeDir
	case 0o120000:
		return pool.TypeSymlink
	case 0o100000:
		return pool.TypeFile
	case 0o020000:
		return pool.TypeCharDev
	case 0o060000:
		return pool.TypeBlockDev
	case 0o010000:
		return pool.TypeFIFO
	case 0o140000:
		return pool.TypeSocket
	}
	switch {
	case m.IsDir():
		return pool.TypeDir
	case m&fs.ModeSymlink != 0:
		return pool.TypeSymlink
	}
	return pool.TypeFile
}

func permOf(raw uint32) fs.FileMode {
	m := fs.FileMode(raw & 0o777)
	if raw&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if raw&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if raw&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// walkRoot emits the directories leading to rel (multi-path mode), then
// walks rel itself.
func (w *walker) walkRoot(ctx context.Context, rel string) error {
	els := strings.Split(rel, "/")
	for i := range els {
		cur := strings.Join(els[:i+1], "/")
		if w.dirsSeen[cur] {
			continue
		}
		fi, err := w.cn.c.Lstat(w.remote(cur))
		if err != nil {
			w.recordError(cur, fmt.Errorf("stat: %w", err))
			return nil
		}
		e := w.entry(els[i], fi)
		if i == len(els)-1 {
			return w.visit(ctx, cur, e, 0)
		}
		if e.Type != pool.TypeDir {
			w.recordError(cur, errors.New("not a directory on the way to a source path"))
			return nil
		}
		if ok, err := w.add(ctx, cur, e); !ok || err != nil {
			return err
		}
		w.dirsSeen[cur] = true
	}
	return nil
}

// list reads the directory rel, at most maxList bytes of listing.
func (w *walker) list(ctx context.Context, rel string) ([]os.FileInfo, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w.cn.in.arm(w.maxList, cancel)
	fis, err := w.cn.c.ReadDirContext(lctx, w.remote(rel))
	w.cn.in.disarm()
	if err != nil && ctx.Err() == nil && lctx.Err() != nil {
		err = fmt.Errorf("listing longer than %d bytes; kept the first %d entries", w.maxList, len(fis))
		// The session may still be answering the abandoned listing.
		if rerr := w.redial(ctx); rerr != nil {
			return nil, rerr
		}
		return fis, &listTruncated{err}
	}
	return fis, err
}

type listTruncated struct{ error }

// walkDir emits the children of rel ("" for the root).
func (w *walker) walkDir(ctx context.Context, rel string, depth int) error {
	fis, err := w.list(ctx, rel)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var lt *listTruncated
		if !errors.As(err, &lt) {
			if fatal := w.connLost(ctx, err); fatal != nil {
				return fatal
			}
		}
		w.recordError(relOrDot(rel), fmt.Errorf("read directory: %w", err))
	}
	// The server's names are hostile: pkg/sftp already took path.Base;
	// drop what cannot be one name, and duplicates.
	byName := make(map[string]os.FileInfo, len(fis))
	names := make([]string, 0, len(fis))
	for _, fi := range fis {
		name := fi.Name()
		if !pool.ValidName(name) {
			w.recordError(relOrDot(rel), fmt.Errorf("the server listed an invalid name %q", name))
			continue
		}
		if _, dup := byName[name]; dup {
			continue
		}
		byName[name] = fi
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		child := name
		if rel != "" {
			child = rel + "/" + name
		}
		if w.excluded(child) {
			continue
		}
		if err := w.visit(ctx, child, w.entry(name, byName[name]), depth+1); err != nil {
			return err
		}
	}
	return nil
}

func relOrDot(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

func (w *walker) visit(ctx context.Context, rel string, e pool.Entry, depth int) error {
	switch e.Type {
	case pool.TypeDir:
		if depth > w.maxDepth {
			w.recordError(rel, fmt.Errorf("nested deeper than %d directories; not descended", w.maxDepth))
			return nil
		}
		if ok, err := w.add(ctx, rel, e); !ok || err != nil {
			return err
		}
		return w.walkDir(ctx, rel, depth)
	case pool.TypeFile:
		return w.visitFile(ctx, rel, e)
	case pool.TypeSymlink:
		target, err := w.cn.c.ReadLink(w.remote(rel))
		if err != nil {
			if fatal := w.connLost(ctx, err); fatal != nil {
				return fatal
			}
			w.recordError(rel, fmt.Errorf("readlink: %w", vanished(err)))
			return nil
		}
		if strings.IndexByte(target, 0) >= 0 || len(target) > 64<<10 {
			w.recordError(rel, errors.New("the server sent an invalid symlink target"))
			return nil
		}
		e.Target = target
		_, err = w.add(ctx, rel, e)
		return err
	default:
		_, err := w.add(ctx, rel, e)
		return err
	}
}

// vanished rewords "does not exist" for a file listed a moment ago.
func vanished(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("vanished during backup: %w", err)
	}
	return err
}

// connLost checks the session after err; a dead one is replaced. It
// returns an error only when no new session can be had.
func (w *walker) connLost(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if w.cn.alive() {
		return nil
	}
	return w.redial(ctx)
}

func (w *walker) redial(ctx context.Context) error {
	w.redials++
	if w.redials > 10 {
		return fmt.Errorf("sftp %s: the connection dropped %d times; giving up", w.t.addr, w.redials)
	}
	w.p.log().Warn("sftp: reconnecting", "addr", w.t.addr, "attempt", w.redials)
	w.cn.Close()
	cn, err := w.p.dial(ctx, w.t)
	if err != nil {
		return fmt.Errorf("sftp %s: reconnect after a dropped connection: %w", w.t.addr, err)
	}
	w.cn = cn
	return nil
}

func (w *walker) previous(ctx context.Context, rel string) (pool.Entry, bool) {
	if w.j.Previous == nil {
		return pool.Entry{}, false
	}
	e, ok, err := w.j.Previous.Lookup(ctx, rel)
	if err != nil || !ok {
		return pool.Entry{}, false
	}
	return e, true
}

func (w *walker) visitFile(ctx context.Context, rel string, e pool.Entry) error {
	if prev, ok := w.previous(ctx, rel); ok && !w.fullRead(rel) && prev.Type == pool.TypeFile &&
		prev.Size == e.Size && prev.ModTime == e.ModTime && e.Size > 0 && !prev.Content.IsZero() {
		skip := e
		skip.Content, skip.Chunked = prev.Content, prev.Chunked
		err := w.j.Sink.Add(ctx, rel, skip, nil)
		if err == nil {
			w.prog.Skipped++
			w.added(rel, &skip)
			return nil
		}
		if !errors.Is(err, pool.ErrContentMissing) || ctx.Err() != nil {
			return w.addFailed(ctx, rel, err)
		}
	}
	var lastErr error
	for attempt := 0; attempt <= w.retries; attempt++ {
		done, ferr, fatal := w.readFile(ctx, rel, e)
		if fatal != nil {
			return fatal
		}
		if done {
			return nil
		}
		lastErr = ferr
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if w.cn.alive() {
			break // a file error, not the connection: no retry
		}
		if err := w.redial(ctx); err != nil {
			return err
		}
	}
	w.recordError(rel, lastErr)
	return nil
}

// readFile opens rel, takes its metadata from the open handle and streams
// it into the sink through pipelined concurrent reads. done: stored.
// ferr: why this file failed. fatal: the pull must stop.
func (w *walker) readFile(ctx context.Context, rel string, e pool.Entry) (done bool, ferr, fatal error) {
	f, err := w.cn.c.Open(w.remote(rel))
	if err != nil {
		return false, fmt.Errorf("open: %w", vanished(err)), nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("stat: %w", err), nil
	}
	ne := w.entry(e.Name, fi)
	if ne.Type != pool.TypeFile {
		return false, errors.New("replaced during backup (no longer a regular file)"), nil
	}
	e = ne
	if e.Size == 0 {
		var one [1]byte
		if n, _ := f.Read(one[:]); n > 0 {
			return false, errors.New("the server says size 0 but sends data"), nil
		}
		_, err := w.add(ctx, rel, e)
		return err == nil, nil, err
	}
	pr, pw := io.Pipe()
	res := make(chan error, 1)
	go func() {
		_, err := f.WriteTo(&capWriter{w: pw, left: e.Size + 1})
		pw.CloseWithError(err)
		res <- err
	}()
	err = w.j.Sink.Add(ctx, rel, e, pr)
	pr.CloseWithError(errStopped)
	rerr := <-res
	if err == nil {
		w.added(rel, &e)
		return true, nil, nil
	}
	if ctx.Err() != nil {
		return false, nil, ctx.Err()
	}
	if !errors.Is(err, pool.ErrEntry) {
		return false, nil, fmt.Errorf("%s: store: %w", w.where(rel), err)
	}
	if rerr != nil && !errors.Is(rerr, errStopped) && !errors.Is(rerr, errTooLong) {
		return false, fmt.Errorf("read: %w", rerr), nil
	}
	return false, err, nil
}

var (
	errStopped = errors.New("reader closed")
	errTooLong = errors.New("the server sent more data than the file's size")
)

// capWriter passes at most left bytes (size+1: enough for the sink to see
// a file that is longer than its size) and then fails, so a server that
// sends forever is cut off.
type capWriter struct {
	w    io.Writer
	left int64
}

func (c *capWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.left {
		n, err := c.w.Write(p[:c.left])
		c.left -= int64(n)
		if err == nil {
			err = errTooLong
		}
		return n, err
	}
	n, err := c.w.Write(p)
	c.left -= int64(n)
	return n, err
}
