package ftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/internal/walk"
)

// Method is the source method name this puller registers.
const Method = "ftp"

func init() {
	pullers.Register(Method, func() pullers.Puller { return New() })
}

// Puller pulls a directory tree over FTP or explicit FTPS. The zero value
// is ready to use; one Puller may run several pulls at once.
type Puller struct {
	// MaxListing caps the bytes of one directory listing (0: 64 MiB).
	MaxListing int64
	// MaxDepth caps directory nesting below the source root (0: 256).
	MaxDepth int
	// MaxEntries caps the names kept from one directory listing (0:
	// DefaultMaxEntries); Options["max_dir_entries"] overrides it.
	MaxEntries int
	// OnFingerprint, when set, is called with the server certificate's
	// fingerprint ("sha256:<hex>") after every TLS login (also when it
	// matched the pin or chained to the roots).
	OnFingerprint func(fingerprint string)
	// Dial opens the control and data connections of a pull (e.g.
	// through a jump host); nil uses net.Dialer. A data connection is
	// still only made to the control connection's IP address.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu   sync.Mutex
	seen string
}

// SeenFingerprint returns the fingerprint ("sha256:<hex>") of the server
// certificate of the last TLS login that was trusted on first use (no pin,
// not verified by the roots), or "". The appliance stores it as
// Options["tls_fingerprint"] after a first pull.
func (p *Puller) SeenFingerprint() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen
}

var _ pullers.Puller = (*Puller)(nil)

// New returns an FTP puller with the default limits.
func New() *Puller { return &Puller{} }

// maxReconnects bounds how often one pull re-opens a broken control
// connection.
const maxReconnects = 5

// Pull walks j.Source.Path on the server into j.Sink. See the package
// documentation.
func (p *Puller) Pull(ctx context.Context, j *pullers.Job) error {
	if j == nil || j.Sink == nil {
		return errors.New("ftp pull: no sink")
	}
	cfg, err := parseConfig(j.Host, &j.Source)
	if err != nil {
		return fmt.Errorf("ftp %s: %w", j.Host, err)
	}
	cfg.dial = p.Dial
	root := j.Source.Path
	if root == "" {
		root = "/"
	}
	if !strings.HasPrefix(root, "/") {
		root = "/" + root
	}
	root = path.Clean(root)
	w := &walker{p: p, j: j, cfg: cfg, root: root, maxListing: p.MaxListing, maxDepth: p.MaxDepth, maxEntries: p.MaxEntries}
	if cfg.maxEntries > 0 {
		w.maxEntries = cfg.maxEntries
	}
	if w.maxEntries <= 0 {
		w.maxEntries = DefaultMaxEntries
	}
	if w.maxListing <= 0 {
		w.maxListing = defaultMaxListing
	}
	if w.maxDepth <= 0 {
		w.maxDepth = defaultMaxDepth
	}
	w.excludes, err = walk.ParseExcludes(j.Source.Excludes)
	if err != nil {
		return fmt.Errorf("ftp %s: %w", cfg.addr, err)
	}
	if err := w.open(ctx); err != nil {
		return fmt.Errorf("ftp %s: %w", cfg.addr, err)
	}
	defer func() { w.s.close() }()

	now := time.Now()
	if err := w.s.c.ChangeDir(root); err != nil {
		return fmt.Errorf("ftp %s:%s: open source: %w", cfg.addr, root, ctxErr(ctx, err))
	}
	rootEntry := pool.Entry{Name: ".", Type: pool.TypeDir, Mode: 0o755, ModTime: now.UnixNano()}
	if err := j.Sink.Add(ctx, ".", rootEntry, nil); err != nil {
		return fmt.Errorf("ftp %s: store the root: %w", cfg.addr, err)
	}
	w.added(".", &rootEntry)
	if err := w.walkDir(ctx, "", 0); err != nil {
		return err
	}
	w.report("")
	return nil
}

// open connects and logs in. A server that offers MLSD keeps it; one that
// does not is reconnected with "LIST -a" so hidden files are listed.
func (w *walker) open(ctx context.Context) error {
	s, err := connect(ctx, w.cfg, false)
	if err != nil {
		return err
	}
	if !s.mlsd {
		s.close()
		if s, err = connect(ctx, w.cfg, true); err != nil {
			return err
		}
	}
	w.s = s
	if fp, verified := s.fingerprint(); w.cfg.tls && fp != "" {
		if w.p.OnFingerprint != nil {
			w.p.OnFingerprint(fp)
		}
		if !verified && w.cfg.pinned == "" {
			// Trust on first use: report it for the caller to pin, and
			// hold reconnects of this pull to it.
			w.p.mu.Lock()
			w.p.seen = fp
			w.p.mu.Unlock()
			w.cfg.pinned = fp
		}
	}
	return nil
}

// reconnect replaces a broken session after a transport error.
func (w *walker) reconnect(ctx context.Context, cause error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	w.reconnects++
	if w.reconnects > maxReconnects {
		return fmt.Errorf("ftp %s: connection keeps failing: %w", w.cfg.addr, cause)
	}
	w.s.close()
	s, err := connect(ctx, w.cfg, !w.s.mlsd)
	if err != nil {
		return fmt.Errorf("ftp %s: reconnect after %v: %w", w.cfg.addr, cause, err)
	}
	w.s = s
	return nil
}

// protocolErr reports whether err is an FTP reply (the connection is
// still usable) rather than a transport failure.
func protocolErr(err error) bool {
	var te *textproto.Error
	return errors.As(err, &te)
}

type walker struct {
	p          *Puller
	j          *pullers.Job
	cfg        *config
	s          *session
	root       string
	excludes   walk.Excludes
	maxListing int64
	maxDepth   int
	maxEntries int
	reconnects int
	prog       pullers.Progress
}

func (w *walker) remote(rel string) string {
	if rel == "" {
		return w.root
	}
	if w.root == "/" {
		return "/" + rel
	}
	return w.root + "/" + rel
}

func (w *walker) recordError(rel string, err error) {
	w.prog.Errors++
	w.j.Sink.RecordError(relOrDot(rel), fmt.Errorf("ftp %s:%s: %w", w.cfg.addr, w.remote(rel), err))
}

func relOrDot(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
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

func (w *walker) add(ctx context.Context, rel string, e pool.Entry, r io.Reader) (bool, error) {
	if err := w.j.Sink.Add(ctx, rel, e, r); err != nil {
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
	return fmt.Errorf("ftp %s: store %s: %w", w.cfg.addr, rel, err)
}

// maxLineErrors caps the per-file errors one listing records for bad
// lines and names; the rest are counted in one more error.
const maxLineErrors = 100

// readDir lists the directory rel and parses it as it streams. Bad lines
// and hostile names are per-file errors; the good entries, at most
// maxEntries of them (the first listed), are returned sorted by name,
// without duplicates.
func (w *walker) readDir(ctx context.Context, rel string) ([]ListEntry, error) {
	dir := w.remote(rel)
	out, errs, err := w.listDir(dir)
	if err != nil && !protocolErr(err) && !errors.Is(err, ErrListingTooLong) && !errors.Is(err, errListingCut) && ctx.Err() == nil {
		// The control connection broke (perhaps on an earlier command):
		// reconnect and try once more.
		if err := w.reconnect(ctx, err); err != nil {
			return nil, err
		}
		out, errs, err = w.listDir(dir)
	}
	if err == nil || errors.Is(err, errListingCut) {
		// A listing that failed is dropped whole, its bad lines too.
		for _, e := range errs {
			w.recordError(rel, e)
		}
	}
	switch {
	case errors.Is(err, errListingCut):
		w.recordError(rel, fmt.Errorf("%w: more than %d names; kept the first %d listed (option max_dir_entries)", ErrTooManyEntries, w.maxEntries, w.maxEntries))
	case err != nil:
		w.recordError(rel, fmt.Errorf("list directory: %w", ctxErr(ctx, err)))
		if protocolErr(err) || errors.Is(err, ErrListingTooLong) {
			return nil, nil
		}
		return nil, w.reconnect(ctx, err)
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	dedup := out[:0]
	for i, e := range out {
		if i > 0 && e.Name == out[i-1].Name {
			w.recordError(rel, fmt.Errorf("server listed %q twice; kept the first", e.Name))
			continue
		}
		dedup = append(dedup, e)
	}
	return dedup, nil
}

// listDir changes to dir and lists it (the listing has no path argument,
// so no server globs or option-parses a name), parsing each line as it
// arrives. It returns the acceptable entries and the per-line errors (at
// most maxLineErrors+1). errListingCut: more than maxEntries names.
func (w *walker) listDir(dir string) ([]ListEntry, []error, error) {
	if err := w.s.c.ChangeDir(dir); err != nil {
		return nil, nil, err
	}
	var out []ListEntry
	var errs []error
	bad := 0
	fail := func(format string, args ...any) {
		bad++
		if bad <= maxLineErrors {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	now := time.Now()
	mlsd := w.s.mlsd
	err := w.s.list(w.maxListing, func(line string, long bool) bool {
		if long {
			fail("listing line %q: longer than %d bytes", truncate(line, 200), maxLineLen)
			return true
		}
		var e ListEntry
		var err error
		if mlsd {
			e, err = ParseMLSDLine(line)
		} else {
			e, err = ParseListLine(line, now)
		}
		if errors.Is(err, errSkip) {
			return true
		}
		if err != nil {
			fail("listing line %q: %w", truncate(line, 200), err)
			return true
		}
		if e.Name == "." || e.Name == ".." {
			return true
		}
		if !pool.ValidName(e.Name) || strings.ContainsAny(e.Name, "\r\n") {
			fail("server listed a hostile or invalid name %q; skipped", truncate(e.Name, 200))
			return true
		}
		if len(out) >= w.maxEntries {
			return false
		}
		out = append(out, e)
		return true
	})
	if bad > maxLineErrors {
		errs = append(errs, fmt.Errorf("%d more bad listing lines not shown", bad-maxLineErrors))
	}
	return out, errs, err
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// walkDir emits the children of the directory rel ("" for the root).
func (w *walker) walkDir(ctx context.Context, rel string, depth int) error {
	entries, err := w.readDir(ctx, rel)
	if err != nil {
		return err
	}
	for _, le := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		child := le.Name
		if rel != "" {
			child = rel + "/" + le.Name
		}
		if w.excludes.Match(child) {
			continue
		}
		e := entryOf(&le)
		switch e.Type {
		case pool.TypeDir:
			if depth+1 > w.maxDepth {
				w.recordError(child, fmt.Errorf("deeper than %d levels; not descended", w.maxDepth))
				continue
			}
			stored, err := w.add(ctx, child, e, nil)
			if err != nil {
				return err
			}
			if stored {
				if err := w.walkDir(ctx, child, depth+1); err != nil {
					return err
				}
			}
		case pool.TypeFile:
			if err := w.visitFile(ctx, child, le, e); err != nil {
				return err
			}
		default:
			if _, err := w.add(ctx, child, e, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// entryOf converts a listing entry to a pool entry (no content).
func entryOf(le *ListEntry) pool.Entry {
	e := pool.Entry{Name: le.Name, Type: le.Type, User: le.User, Group: le.Group,
		Target: le.Target, Rdev: le.Rdev}
	if le.HasMode {
		e.Mode = le.Mode
	} else if le.Type == pool.TypeDir {
		e.Mode = 0o755
	} else {
		e.Mode = 0o644
	}
	if le.HasUID {
		e.UID = le.UID
	}
	if le.HasGID {
		e.GID = le.GID
	}
	if !le.ModTime.IsZero() {
		e.ModTime = le.ModTime.UnixNano()
	}
	if le.Type == pool.TypeFile {
		e.Size = le.Size
	}
	return e
}

func (w *walker) visitFile(ctx context.Context, rel string, le ListEntry, e pool.Entry) error {
	remote := w.remote(rel)
	if !le.Precise {
		if err := w.mdtm(ctx, remote, &e); err != nil {
			return err
		}
	}
	if prev, ok := w.previous(ctx, rel); ok && prev.Type == pool.TypeFile &&
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
	for attempt := 0; ; attempt++ {
		done, sizeErr, err := w.retr(ctx, rel, e)
		if err != nil || done {
			return err
		}
		// The transfer's length differed from the listed size: the file
		// changed since it was listed, or the server lies. Ask for its
		// size and time again and retry once; a second mismatch is a
		// per-file error and nothing is stored (never a mix of versions).
		if attempt > 0 {
			w.recordError(rel, sizeErr)
			return nil
		}
		n, err := w.s.c.FileSize(remote)
		if err != nil || n < 0 || n == e.Size {
			if err != nil && !protocolErr(err) {
				w.recordError(rel, sizeErr)
				return w.reconnect(ctx, err)
			}
			w.recordError(rel, sizeErr)
			return nil
		}
		e.Size = n
		if err := w.mdtm(ctx, remote, &e); err != nil {
			return err
		}
	}
}

// mdtm sets e.ModTime from MDTM (exact seconds) when the server has it. A
// refused MDTM keeps the listing's time.
func (w *walker) mdtm(ctx context.Context, remote string, e *pool.Entry) error {
	if !w.s.c.IsGetTimeSupported() {
		return nil
	}
	t, err := w.s.c.GetTime(remote)
	switch {
	case err == nil && !t.IsZero():
		e.ModTime = t.UnixNano()
	case err != nil && !protocolErr(err):
		if err := w.reconnect(ctx, err); err != nil {
			return err
		}
		if t, err := w.s.c.GetTime(remote); err == nil && !t.IsZero() {
			e.ModTime = t.UnixNano()
		}
	}
	return nil
}

// retr transfers one file into the sink. done is false when the transfer
// was longer or shorter than e.Size (sizeErr says how); per-file errors
// are recorded; err fails the pull.
func (w *walker) retr(ctx context.Context, rel string, e pool.Entry) (done bool, sizeErr, err error) {
	remote := w.remote(rel)
	resp, err := w.s.c.Retr(remote)
	if err != nil && !protocolErr(err) {
		// A broken control connection: reconnect and try once more.
		if err := w.reconnect(ctx, err); err != nil {
			return true, nil, err
		}
		resp, err = w.s.c.Retr(remote)
	}
	if err != nil {
		w.recordError(rel, fmt.Errorf("RETR: %w", ctxErr(ctx, err)))
		if !protocolErr(err) {
			return true, nil, w.reconnect(ctx, err)
		}
		return true, nil, nil
	}
	r := &exactReader{ctx: ctx, r: resp, size: e.Size, left: e.Size}
	addErr := w.j.Sink.Add(ctx, rel, e, r)
	closeErr := resp.Close()
	if closeErr != nil && !protocolErr(closeErr) && ctx.Err() == nil {
		if err := w.reconnect(ctx, closeErr); err != nil {
			return true, nil, err
		}
	}
	if addErr != nil {
		if r.err != nil && ctx.Err() == nil {
			if errors.Is(r.err, errSizeMismatch) {
				return false, r.err, nil
			}
			w.recordError(rel, r.err)
			return true, nil, nil
		}
		return true, nil, w.addFailed(ctx, rel, addErr)
	}
	w.added(rel, &e)
	if closeErr != nil {
		w.recordError(rel, fmt.Errorf("the server reported a failed transfer after sending all %d bytes: %w", e.Size, ctxErr(ctx, closeErr)))
	}
	return true, nil, nil
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

// errSizeMismatch marks a transfer longer or shorter than the listed size.
var errSizeMismatch = errors.New("transfer length differs from the listed size")

// exactReader yields exactly size bytes of a transfer and then checks
// that the transfer ends there. A short or long transfer, or a read
// error, fails the read (so the sink rejects the entry) and is remembered
// in err, so the puller can tell it from a failing sink.
type exactReader struct {
	ctx  context.Context
	r    io.Reader
	size int64
	left int64
	err  error
}

func (r *exactReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	if r.left <= 0 {
		if r.more() {
			r.err = fmt.Errorf("%w: the server sent more than the listed %d bytes (changed, or a lying size)", errSizeMismatch, r.size)
			return 0, r.err
		}
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.r.Read(p)
	r.left -= int64(n)
	if n > 0 {
		return n, nil
	}
	if err == nil {
		return 0, nil
	}
	if err == io.EOF {
		r.err = fmt.Errorf("%w: the server sent only %d of the listed %d bytes (changed, or a lying size)", errSizeMismatch, r.size-r.left, r.size)
	} else {
		r.err = fmt.Errorf("read: %w", err)
	}
	return 0, r.err
}

// more reports whether the transfer has data beyond size.
func (r *exactReader) more() bool {
	var one [1]byte
	for range 100 {
		n, err := r.r.Read(one[:])
		if n > 0 {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}
