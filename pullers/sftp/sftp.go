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
		w.added(&e)
		return w.run(ctx, func(ctx context.Context) error { return w.walkDir(ctx, "", 0) })
	}
	// Several paths: each at its own absolute location below a synthetic
	// root; the directories on the way are stat'ed.
	w.base = "/"
	root := pool.Entry{Name: ".", Type: pool.TypeDir, Mode: 0o755}
	if err := j.Sink.Add(ctx, ".", root, nil); err != nil {
		return fmt.Errorf("sftp %s: store the root: %w", t.addr, err)
	}
	w.added(&root)
	return w.run(ctx, func(ctx context.Context) error {
		for _, r := range roots {
			if err := w.walkRoot(ctx, strings.TrimPrefix(r, "/")); err != nil {
				return err
			}
		}
		return nil
	})
}

// walker is the state of one pull. The walk (listing directories,
// deciding what to fetch, starting the fetches) runs on one goroutine, the
// producer; the sink is fed on another, the consumer (the caller of
// Pull), in walk order, from the items the producer sends; the fetches
// run on the ahead.Fetcher's workers in between.
type walker struct {
	p          *Puller
	j          *pullers.Job
	t          *target
	base       string // remote path of the snapshot root
	excludes   []string
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

	f       *ahead.Fetcher
	out     chan item
	walkErr error // the producer's, read after out is closed

	progMu sync.Mutex
	prog   pullers.Progress

	dirsSeen map[string]bool // producer only: multi-path directories already emitted
}

type itemKind uint8

const (
	itemAdd  itemKind = iota // a non-file entry (or an empty file's)
	itemFile                 // a file being fetched into buf
	itemSkip                 // a file reused from the previous snapshot
	itemErr                  // a per-file error
)

// item is one step of the walk, for the consumer.
type item struct {
	kind itemKind
	rel  string
	e    pool.Entry // itemSkip: the listed entry, skip is what to add
	skip pool.Entry
	buf  *ahead.Buffer
	err  error
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

// run feeds the sink from a producer running walk, with the files
// fetched ahead by a Fetcher.
func (w *walker) run(ctx context.Context, walk func(context.Context) error) error {
	workers, maxBytes := w.p.Workers, w.p.MaxInFlight
	if workers <= 0 {
		workers = DefaultWorkers
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxInFlight
	}
	w.f = ahead.New(ctx, workers, maxBytes, 0)
	w.out = make(chan item, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(w.out)
		w.walkErr = walk(w.f.Context())
	}()
	err := w.consume(ctx)
	// Stop the producer and the fetches: closing the session ends any
	// request still waiting for the server.
	w.f.Stop()
	w.conn().Close()
	<-done
	w.f.Wait()
	if err != nil {
		return err
	}
	w.report()
	return nil
}

func (w *walker) consume(ctx context.Context) error {
	rejected := "" // a directory the sink rejected: its subtree is dropped
	for {
		var it item
		var ok bool
		select {
		case it, ok = <-w.out:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			if w.walkErr != nil && ctx.Err() != nil {
				return ctx.Err()
			}
			return w.walkErr
		}
		if err := ctx.Err(); err != nil {
			if it.buf != nil {
				it.buf.Close()
			}
			return err
		}
		if rejected != "" && strings.HasPrefix(it.rel, rejected+"/") {
			if it.buf != nil {
				it.buf.Close()
			}
			continue
		}
		var err error
		switch it.kind {
		case itemErr:
			w.recordError(it.rel, it.err)
		case itemAdd:
			var ok bool
			ok, err = w.add(ctx, it.rel, it.e)
			if !ok && err == nil && it.e.Type == pool.TypeDir {
				rejected = it.rel
			}
		case itemSkip:
			err = w.storeSkip(ctx, it)
		case itemFile:
			err = w.storeFile(ctx, it.rel, it.e, it.buf)
		}
		if err != nil {
			return err
		}
	}
}

// emit hands it to the consumer (producer side).
func (w *walker) emit(ctx context.Context, it item) error {
	select {
	case w.out <- it:
		return nil
	case <-ctx.Done():
		if it.buf != nil {
			it.buf.Close()
		}
		return ctx.Err()
	}
}

// fail records a per-file error found by the producer.
func (w *walker) fail(ctx context.Context, rel string, err error) error {
	return w.emit(ctx, item{kind: itemErr, rel: rel, err: err})
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

// recordError, added and report are the consumer's; setPath the
// producer's. Progress is called under progMu, so never concurrently.
func (w *walker) recordError(rel string, err error) {
	w.j.Sink.RecordError(rel, fmt.Errorf("%s: %w", w.where(rel), err))
	w.progMu.Lock()
	w.prog.Errors++
	w.reportLocked()
	w.progMu.Unlock()
}

func (w *walker) report() {
	w.progMu.Lock()
	w.prog.Path = ""
	w.reportLocked()
	w.progMu.Unlock()
}

func (w *walker) reportLocked() {
	if w.j.Progress != nil {
		w.j.Progress(w.prog)
	}
}

// setPath reports rel as the current path: the producer calls it before
// it starts fetching rel, so a Progress hook that changes the source sees
// every later file fetched after it returns.
func (w *walker) setPath(rel string) {
	w.progMu.Lock()
	w.prog.Path = rel
	w.reportLocked()
	w.progMu.Unlock()
}

func (w *walker) added(e *pool.Entry) {
	w.progMu.Lock()
	w.prog.Files++
	if e.Type == pool.TypeFile {
		w.prog.Bytes += e.Size
	}
	w.reportLocked()
	w.progMu.Unlock()
}

func (w *walker) skipped() {
	w.progMu.Lock()
	w.prog.Skipped++
	w.progMu.Unlock()
}

// add stores a non-file entry; a rejected entry is a per-file error.
func (w *walker) add(ctx context.Context, rel string, e pool.Entry) (bool, error) {
	if err := w.j.Sink.Add(ctx, rel, e, nil); err != nil {
		return false, w.addFailed(ctx, rel, err)
	}
	w.added(&e)
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
		fi, err := w.conn().c.Lstat(w.remote(cur))
		if err != nil {
			return w.fail(ctx, cur, fmt.Errorf("stat: %w", err))
		}
		e := w.entry(els[i], fi)
		if i == len(els)-1 {
			return w.visit(ctx, cur, e, 0)
		}
		if e.Type != pool.TypeDir {
			return w.fail(ctx, cur, errors.New("not a directory on the way to a source path"))
		}
		if err := w.emitAdd(ctx, cur, e); err != nil {
			return err
		}
		w.dirsSeen[cur] = true
	}
	return nil
}

func (w *walker) emitAdd(ctx context.Context, rel string, e pool.Entry) error {
	w.setPath(rel)
	return w.emit(ctx, item{kind: itemAdd, rel: rel, e: e})
}

// list reads the directory rel: at most maxList bytes of listing and
// maxEntries names, counted as the server's replies arrive.
func (w *walker) list(ctx context.Context, cn *conn, rel string) ([]os.FileInfo, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cn.in.arm(w.maxList, int64(w.maxEntries), cancel)
	fis, err := cn.c.ReadDirContext(lctx, w.remote(rel))
	over := cn.in.disarm()
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
			return nil, rerr
		}
	}
	return fis, &listTruncated{terr}
}

type listTruncated struct{ error }

// walkDir emits the children of rel ("" for the root).
func (w *walker) walkDir(ctx context.Context, rel string, depth int) error {
	cn := w.conn()
	fis, err := w.list(ctx, cn, rel)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var lt *listTruncated
		if !errors.As(err, &lt) {
			if fatal := w.connLost(ctx, cn); fatal != nil {
				return fatal
			}
		}
		if err := w.fail(ctx, relOrDot(rel), fmt.Errorf("read directory: %w", err)); err != nil {
			return err
		}
	}
	// The server's names are hostile: pkg/sftp already took path.Base;
	// drop what cannot be one name, and duplicates.
	byName := make(map[string]os.FileInfo, len(fis))
	names := make([]string, 0, len(fis))
	for _, fi := range fis {
		name := fi.Name()
		if !pool.ValidName(name) {
			if err := w.fail(ctx, relOrDot(rel), fmt.Errorf("the server listed an invalid name %q", name)); err != nil {
				return err
			}
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
			return w.fail(ctx, rel, fmt.Errorf("nested deeper than %d directories; not descended", w.maxDepth))
		}
		if err := w.emitAdd(ctx, rel, e); err != nil {
			return err
		}
		return w.walkDir(ctx, rel, depth)
	case pool.TypeFile:
		return w.visitFile(ctx, rel, e)
	case pool.TypeSymlink:
		cn := w.conn()
		target, err := cn.c.ReadLink(w.remote(rel))
		if err != nil {
			if fatal := w.connLost(ctx, cn); fatal != nil {
				return fatal
			}
			return w.fail(ctx, rel, fmt.Errorf("readlink: %w", vanished(err)))
		}
		if strings.IndexByte(target, 0) >= 0 || len(target) > 64<<10 {
			return w.fail(ctx, rel, errors.New("the server sent an invalid symlink target"))
		}
		e.Target = target
		return w.emitAdd(ctx, rel, e)
	default:
		return w.emitAdd(ctx, rel, e)
	}
}

// vanished rewords "does not exist" for a file listed a moment ago.
func vanished(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("vanished during backup: %w", err)
	}
	return err
}

// connLost checks the session cn after an error; a dead one is replaced.
// It returns an error only when no new session can be had.
func (w *walker) connLost(ctx context.Context, cn *conn) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !w.lost(cn) {
		return nil
	}
	return w.redial(ctx, cn)
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

// visitFile (producer) emits a file: reused when size and mtime match the
// previous snapshot, else fetched ahead.
func (w *walker) visitFile(ctx context.Context, rel string, e pool.Entry) error {
	w.setPath(rel)
	if prev, ok := w.previous(ctx, rel); ok && !w.fullRead(rel) && prev.Type == pool.TypeFile &&
		prev.Size == e.Size && prev.ModTime == e.ModTime && e.Size > 0 && !prev.Content.IsZero() {
		skip := e
		skip.Content, skip.Chunked = prev.Content, prev.Chunked
		return w.emit(ctx, item{kind: itemSkip, rel: rel, e: e, skip: skip})
	}
	b, err := w.f.Start(e.Size, w.fetch(rel, e))
	if err != nil {
		return err
	}
	return w.emit(ctx, item{kind: itemFile, rel: rel, e: e, buf: b})
}

// storeSkip (consumer) adds a reused file; when its content is gone from
// the pool, the file is read after all.
func (w *walker) storeSkip(ctx context.Context, it item) error {
	err := w.j.Sink.Add(ctx, it.rel, it.skip, nil)
	if err == nil {
		w.skipped()
		w.added(&it.skip)
		return nil
	}
	if !errors.Is(err, pool.ErrContentMissing) || ctx.Err() != nil {
		return w.addFailed(ctx, it.rel, err)
	}
	return w.storeFile(ctx, it.rel, it.e, w.f.Direct(it.e.Size, w.fetch(it.rel, it.e)))
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
			w.recordError(rel, ferr)
			return nil // a file error, not the connection: no retry
		}
		if err := w.redial(ctx, cn); err != nil {
			return err
		}
		b = w.f.Direct(e.Size, w.fetch(rel, e))
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
		w.added(&h.e)
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
