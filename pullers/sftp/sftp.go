package sftp

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
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
	"github.com/cairn-backup/cairn/pullers/internal/ahead"
	"github.com/cairn-backup/cairn/pullers/internal/walk"
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
	DefaultMaxEntries   = 1 << 20 // names per directory
	// DefaultWorkers files are fetched at once over the one session.
	DefaultWorkers = 8
	// DefaultMaxInFlight caps the file content held in memory between
	// the fetches and the sink.
	DefaultMaxInFlight = 64 << 20
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
	MaxEntries   int   // names per directory; 0: DefaultMaxEntries
	Workers      int   // files fetched at once; 0: DefaultWorkers, 1: one at a time
	MaxInFlight  int64 // bytes of file content buffered ahead of the sink; 0: DefaultMaxInFlight

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
	w.maxEntries = p.MaxEntries
	if w.maxEntries <= 0 {
		w.maxEntries = DefaultMaxEntries
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
	if w.excludes, err = walk.ParseExcludes(j.Source.Excludes); err != nil {
		return fmt.Errorf("sftp %s: %w", t.addr, err)
	}
	w.pipe = walk.New(walk.Config{Job: j, Workers: p.Workers, MaxBytes: p.MaxInFlight,
		Where: w.where, Full: w.fullRead, Fetch: w.fetch, Store: w.storeFile,
		Close: func() { w.conn().Close() }})
	w.cn, err = p.dial(ctx, t)
	if err != nil {
		return err
	}
	defer func() { w.conn().Close() }()

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
		w.pipe.Added(&e)
		return w.run(ctx, func(ctx context.Context) error { return w.walkDir(ctx, "", 0) })
	}
	// Several paths: each at its own absolute location below a synthetic
	// root; the directories on the way are stat'ed.
	w.base = "/"
	root := pool.Entry{Name: ".", Type: pool.TypeDir, Mode: 0o755}
	if err := j.Sink.Add(ctx, ".", root, nil); err != nil {
		return fmt.Errorf("sftp %s: store the root: %w", t.addr, err)
	}
	w.pipe.Added(&root)
	return w.run(ctx, func(ctx context.Context) error {
		for _, r := range roots {
			if err := w.walkRoot(ctx, strings.TrimPrefix(r, "/")); err != nil {
				return err
			}
		}
		return nil
	})
}

// walker is the state of one pull: the walk runs on the producer of a
// walk.Pipe, with its listings from a walk.Lister.
type walker struct {
	p          *Puller
	j          *pullers.Job
	t          *target
	base       string // remote path of the snapshot root
	excludes   walk.Excludes
	maxDepth   int
	maxList    int64
	maxEntries int
	retries    int
	full       bool
	every      int64 // full_every in days; 0: never
	day        int64

	cnMu    sync.Mutex
	cn      *conn
	redials int

	pipe   *walk.Pipe
	lister *walk.Lister[[]os.FileInfo]

	dirsSeen map[string]bool // producer only: multi-path directories already emitted
}

// head is what a fetch tells the consumer before the content.
type head struct {
	cn  *conn      // the session the fetch used
	e   pool.Entry // from the open handle
	err error      // why the file could not be opened or stat'ed
}

func (w *walker) conn() *conn {
	w.cnMu.Lock()
	defer w.cnMu.Unlock()
	return w.cn
}

// Listing ahead: listAhead directories listed at once over the session
// while the walk works, listHeld at most in flight or waiting for it.
const (
	listAhead = 8
	listHeld  = 32
)

// run runs walk on the pipe's producer with a Lister.
func (w *walker) run(ctx context.Context, walkFn func(context.Context) error) error {
	return w.pipe.Run(ctx, func(ctx context.Context) error {
		w.lister = walk.NewLister(ctx, walk.ListerConfig[[]os.FileInfo]{
			List: w.listDir, Children: w.children, InFlight: listAhead, Held: listHeld})
		defer w.lister.Close()
		return walkFn(ctx)
	})
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
		var fi os.FileInfo
		err := w.retry(ctx, func(cn *conn) (err error) {
			fi, err = cn.c.Lstat(w.remote(cur))
			return err
		})
		if fe := (*fatalError)(nil); errors.As(err, &fe) {
			return fe.error
		}
		if err != nil {
			return w.pipe.Fail(ctx, cur, fmt.Errorf("stat: %w", err))
		}
		e := w.entry(els[i], fi)
		if i == len(els)-1 {
			return w.visit(ctx, cur, e, 0)
		}
		if e.Type != pool.TypeDir {
			return w.pipe.Fail(ctx, cur, errors.New("not a directory on the way to a source path"))
		}
		if err := w.pipe.Add(ctx, cur, e); err != nil {
			return err
		}
		w.dirsSeen[cur] = true
	}
	return nil
}

// list reads the directory rel: at most maxList bytes of listing and
// maxEntries names, counted as the server's replies arrive.
func (w *walker) list(ctx context.Context, cn *conn, rel string) ([]os.FileInfo, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	remote := w.remote(rel)
	m := cn.in.arm(remote, w.maxList, int64(w.maxEntries), cancel)
	fis, err := cn.c.ReadDirContext(lctx, remote)
	over := cn.in.disarm(m)
	if err == nil && over == "" && len(fis) <= w.maxEntries {
		return fis, nil
	}
	if ctx.Err() != nil || (err != nil && over == "" && lctx.Err() == nil) {
		return fis, err // cancelled, or the server's error
	}
	fis = fis[:min(len(fis), w.maxEntries)]
	var terr error
	if over == "bytes" {
		terr = fmt.Errorf("listing longer than %d bytes; kept the first %d entries", w.maxList, len(fis))
	} else {
		terr = fmt.Errorf("more than %d names in one directory; kept the first %d", w.maxEntries, len(fis))
	}
	if err != nil {
		// The session may still be answering the abandoned listing.
		if rerr := w.redial(ctx, cn); rerr != nil {
			return nil, &fatalError{rerr}
		}
	}
	return fis, &listTruncated{terr}
}

type listTruncated struct{ error }

// fatalError ends the pull: no session could be had.
type fatalError struct{ error }

func (e *fatalError) Unwrap() error { return e.error }

// listDir (the Lister's List, on any goroutine) lists rel.
func (w *walker) listDir(ctx context.Context, rel string) (fis []os.FileInfo, err error) {
	err = w.retry(ctx, func(cn *conn) (err error) {
		fis, err = w.list(ctx, cn, rel)
		return err
	})
	return fis, err
}

// children (the Lister's) names the subdirectories of rel at depth that
// walkDir and visit will descend into.
func (w *walker) children(rel string, depth int, fis []os.FileInfo, _ error) []string {
	if depth+1 > w.maxDepth {
		return nil
	}
	return walk.SubDirs(rel, fis, pool.ValidName, w.excludes, func(_ string, fi os.FileInfo) bool {
		return typeOf(rawMode(fi), fi.Mode()) == pool.TypeDir
	})
}

func rawMode(fi os.FileInfo) uint32 {
	if st, ok := fi.Sys().(*sftp.FileStat); ok {
		return st.Mode
	}
	return 0
}

// walkDir emits the children of rel ("" for the root).
func (w *walker) walkDir(ctx context.Context, rel string, depth int) error {
	fis, err := w.lister.Get(ctx, rel, depth)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if fe := (*fatalError)(nil); errors.As(err, &fe) {
			return fe.error
		}
		if err := w.pipe.Fail(ctx, walk.RelOrDot(rel), fmt.Errorf("read directory: %w", err)); err != nil {
			return err
		}
	}
	// The server's names are hostile: pkg/sftp already took path.Base;
	// drop what cannot be one name, and duplicates.
	return w.pipe.Listed(ctx, rel, fis, pool.ValidName, w.excludes, func(child string, fi os.FileInfo) error {
		return w.visit(ctx, child, w.entry(path.Base(child), fi), depth+1)
	})
}

func (w *walker) visit(ctx context.Context, rel string, e pool.Entry, depth int) error {
	switch e.Type {
	case pool.TypeDir:
		if depth > w.maxDepth {
			return w.pipe.Fail(ctx, rel, fmt.Errorf("nested deeper than %d directories; not descended", w.maxDepth))
		}
		if err := w.pipe.Add(ctx, rel, e); err != nil {
			return err
		}
		return w.walkDir(ctx, rel, depth)
	case pool.TypeFile:
		return w.pipe.File(ctx, rel, e)
	case pool.TypeSymlink:
		target, err := w.readLink(ctx, rel)
		if err != nil {
			var fe *fatalError
			if errors.As(err, &fe) {
				return fe.error
			}
			return w.pipe.Fail(ctx, rel, fmt.Errorf("readlink: %w", vanished(err)))
		}
		if strings.IndexByte(target, 0) >= 0 || len(target) > 64<<10 {
			return w.pipe.Fail(ctx, rel, errors.New("the server sent an invalid symlink target"))
		}
		e.Target = target
		return w.pipe.Add(ctx, rel, e)
	default:
		return w.pipe.Add(ctx, rel, e)
	}
}

// retry runs op on the current session. When op failed because the
// session dropped (also under another request: listings and fetches run
// at the same time), it runs again on a new one, Retries times. A failed
// reconnect is a *fatalError.
func (w *walker) retry(ctx context.Context, op func(cn *conn) error) error {
	for attempt := 0; ; attempt++ {
		cn := w.conn()
		err := op(cn)
		var lt *listTruncated
		var fe *fatalError
		if err == nil || ctx.Err() != nil || errors.As(err, &lt) || errors.As(err, &fe) || !w.lost(cn) {
			return err
		}
		if rerr := w.redial(ctx, cn); rerr != nil {
			return &fatalError{rerr}
		}
		if attempt >= w.retries {
			return err
		}
	}
}

// readLink reads the target of the symlink rel.
func (w *walker) readLink(ctx context.Context, rel string) (target string, err error) {
	err = w.retry(ctx, func(cn *conn) (err error) {
		target, err = cn.c.ReadLink(w.remote(rel))
		return err
	})
	return target, err
}

// vanished rewords "does not exist" for a file listed a moment ago.
func vanished(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("vanished during backup: %w", err)
	}
	return err
}

// lost: cn was replaced, or does not answer.
func (w *walker) lost(cn *conn) bool {
	if cn == nil {
		return false
	}
	if cn != w.conn() {
		return true
	}
	return !cn.alive()
}

// redial replaces the session old (unless another goroutine did already).
func (w *walker) redial(ctx context.Context, old *conn) error {
	w.cnMu.Lock()
	defer w.cnMu.Unlock()
	if w.cn != old {
		return nil
	}
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

// storeFile (consumer) adds a fetched file. When the fetch failed because
// the session dropped, the file is fetched again on a new session
// (Retries times), then recorded as a per-file error.
func (w *walker) storeFile(ctx context.Context, rel string, e pool.Entry, b *ahead.Buffer) error {
	for attempt := 0; ; attempt++ {
		done, ferr, cn, fatal := w.store(ctx, rel, b)
		if fatal != nil {
			return fatal
		}
		if done {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt >= w.retries || !w.lost(cn) {
			w.pipe.RecordError(rel, ferr)
			return nil // a file error, not the connection: no retry
		}
		if err := w.redial(ctx, cn); err != nil {
			return err
		}
		b = w.pipe.Refetch(rel, e)
	}
}

// store adds the file fetched into b. done: stored. ferr: why this file
// failed, cn: on which session. fatal: the pull must stop.
func (w *walker) store(ctx context.Context, rel string, b *ahead.Buffer) (done bool, ferr error, cn *conn, fatal error) {
	defer b.Close()
	v, err := b.Wait(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return false, nil, nil, ctx.Err()
		}
		return false, err, nil, nil
	}
	h := v.(head)
	if h.err != nil {
		return false, h.err, h.cn, nil
	}
	err = w.j.Sink.Add(ctx, rel, h.e, b)
	if err == nil {
		w.pipe.Added(&h.e)
		return true, nil, nil, nil
	}
	if ctx.Err() != nil {
		return false, nil, nil, ctx.Err()
	}
	if !errors.Is(err, pool.ErrEntry) {
		return false, nil, nil, fmt.Errorf("%s: store: %w", w.where(rel), err)
	}
	if rerr := b.Err(); rerr != nil && !errors.Is(rerr, ahead.ErrClosed) {
		return false, fmt.Errorf("read: %w", rerr), h.cn, nil
	}
	return false, err, h.cn, nil
}

// Reads: readChunk bytes per request (pkg/sftp's packet size), readDepth
// requests in flight per file.
const (
	readChunk = 32 << 10
	readDepth = 64
)

// fetch (on a worker) opens rel, takes its metadata from the open handle
// and reads it into b. For a file that fits its buffer, the FSTAT and the
// reads go out together; a larger one is stat'ed first. The metadata goes
// to the consumer through b.Ready, so size and content belong together.
func (w *walker) fetch(rel string, listed pool.Entry) ahead.Func {
	remote := w.remote(rel)
	return func(ctx context.Context, b *ahead.Buffer) error {
		cn := w.conn()
		f, err := cn.c.Open(remote)
		if err != nil {
			b.Ready(head{cn: cn, err: fmt.Errorf("open: %w", vanished(err))})
			return nil
		}
		defer f.Close()
		var fi os.FileInfo
		if listed.Size+1 <= b.Cap() {
			var serr error
			statDone := make(chan struct{})
			go func() {
				defer close(statDone)
				fi, serr = f.Stat()
			}()
			rerr := ahead.ReadAll(ctx, f, listed.Size, readChunk, readDepth, b)
			<-statDone
			if serr != nil {
				b.Ready(head{cn: cn, err: fmt.Errorf("stat: %w", serr)})
				return nil
			}
			if e := w.entry(listed.Name, fi); e.Type == pool.TypeFile && e.Size == listed.Size {
				b.Ready(head{cn: cn, e: e})
				return rerr
			}
			b.Discard() // changed since the listing: read it again below
		} else if fi, err = f.Stat(); err != nil {
			b.Ready(head{cn: cn, err: fmt.Errorf("stat: %w", err)})
			return nil
		}
		e := w.entry(listed.Name, fi)
		if e.Type != pool.TypeFile {
			b.Ready(head{cn: cn, err: errors.New("replaced during backup (no longer a regular file)")})
			return nil
		}
		b.Ready(head{cn: cn, e: e})
		return ahead.ReadAll(ctx, f, e.Size, readChunk, readDepth, b) // at most size+1 bytes
	}
}
