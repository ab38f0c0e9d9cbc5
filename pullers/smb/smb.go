package smb

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hirochachacha/go-smb2"
	"golang.org/x/sync/semaphore"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/internal/ahead"
	"github.com/cairn-backup/cairn/pullers/internal/walk"
)

// Method is the source method name this puller registers.
const Method = "smb"

func init() {
	pullers.Register(Method, func() pullers.Puller { return New() })
}

// Limits against a hostile or looping server.
const (
	DefaultMaxDepth   = 256
	DefaultMaxEntries = 1 << 20 // per directory
	// DefaultMaxDirs directories are descended into per pull.
	DefaultMaxDirs = 1 << 20
	// DefaultWorkers files are fetched at once over the one session.
	DefaultWorkers = 8
	// DefaultMaxInFlight caps the file content held in memory between
	// the fetches and the sink.
	DefaultMaxInFlight = 64 << 20
)

// ErrAuth is returned when the server refuses the credentials. It wraps
// pullers.ErrPermanent.
var ErrAuth = fmt.Errorf("login refused: %w", pullers.ErrPermanent)

// Puller pulls a directory of an SMB share. New makes one.
type Puller struct {
	// Dial opens the TCP connection; nil uses net.Dialer.
	Dial       func(ctx context.Context, network, addr string) (net.Conn, error)
	MaxDepth   int // 0: DefaultMaxDepth
	MaxEntries int // names per directory; 0: DefaultMaxEntries
	// MaxDirs directories are descended into per pull; 0: DefaultMaxDirs.
	MaxDirs int
	// Dialect, when non-zero, forces one SMB dialect (0x0311 for 3.1.1).
	Dialect uint16
	// Workers files are fetched at once; 0: DefaultWorkers, 1: one at a time.
	Workers int
	// MaxInFlight caps the file content buffered ahead of the sink;
	// 0: DefaultMaxInFlight.
	MaxInFlight int64
}

var _ pullers.Puller = (*Puller)(nil)

// New returns an SMB puller.
func New() *Puller { return &Puller{} }

type target struct {
	addr, user, domain, password, share string
	timeout                             time.Duration
}

func parseTarget(s pullers.Source) (*target, error) {
	o := s.Options
	if o["host"] == "" {
		return nil, errors.New("smb: no host (Options[\"host\"])")
	}
	port := o["port"]
	if port == "" {
		port = "445"
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return nil, fmt.Errorf("smb %s: bad port %q", o["host"], port)
	}
	t := &target{addr: net.JoinHostPort(o["host"], port), user: o["user"], domain: o["domain"],
		password: s.Secret["password"], share: o["share"], timeout: time.Minute}
	if t.share == "" || strings.ContainsAny(t.share, `\/`) {
		return nil, fmt.Errorf("smb %s: bad or no share %q (Options[\"share\"])", t.addr, t.share)
	}
	if t.user == "" {
		return nil, fmt.Errorf("smb %s: no user (Options[\"user\"])", t.addr)
	}
	if v := o["timeout"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("smb %s: bad timeout %q", t.addr, v)
		}
		t.timeout = d
	}
	return t, nil
}

// conn is a mounted share with a watchdog: when the server sends nothing
// useful for timeout while an operation waits, the connection is closed
// and the operation fails with errStalled instead of hanging.
type conn struct {
	raw     net.Conn
	sess    *smb2.Session
	share   *smb2.Share
	stop    func() bool
	last    atomic.Int64 // unix nanos of the last completed operation
	busy    atomic.Int32
	stalled atomic.Bool
	done    chan struct{}
	once    sync.Once
	ctx     context.Context
	credits *semaphore.Weighted
}

var errStalled = errors.New("the server stopped answering")

// Close ends the session; it may be called more than once.
func (c *conn) Close() {
	c.once.Do(func() {
		close(c.done)
		c.stop()
		c.share.Umount()
		c.sess.Logoff()
		c.raw.Close()
	})
}

// creditBalance is the most SMB credits go-smb2 keeps (its default,
// given explicitly); credits is a semaphore of as many.
const creditBalance = 128

// Credits an operation costs: go-smb2 charges one per 64 KiB of the
// larger of request and reply buffer, and asks for a 1 MiB reply buffer
// for QUERY_INFO (File.Stat), QUERY_DIRECTORY (Readdir) and IOCTL.
const (
	costSmall = 1  // CREATE, CLOSE, a READ of up to 64 KiB
	costBig   = 16 // Stat, Readdir, Readlink
)

// opc is op for an operation that costs n credits. The concurrent
// fetches of a pull take their credits here first: when go-smb2 finds
// fewer credits in its balance than a request needs, it sends the request
// with too low a charge and the server rejects it (Samba:
// "CreditCharge too low"; the operation fails with an invalid
// parameter). Keeping the credits of all requests in flight within the
// balance means each one finds its full charge.
func (c *conn) opc(n int64) func() {
	if err := c.credits.Acquire(c.ctx, n); err != nil {
		return c.op() // cancelled: the operation fails at once anyway
	}
	done := c.op()
	return func() {
		done()
		c.credits.Release(n)
	}
}

// op brackets one server operation for the watchdog.
func (c *conn) op() func() {
	c.busy.Add(1)
	return func() {
		c.last.Store(time.Now().UnixNano())
		c.busy.Add(-1)
	}
}

func (c *conn) watch(timeout time.Duration) {
	c.last.Store(time.Now().UnixNano())
	tick := time.NewTicker(min(timeout/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
			if c.busy.Load() > 0 && time.Since(time.Unix(0, c.last.Load())) > timeout {
				c.stalled.Store(true)
				c.raw.Close()
				return
			}
		}
	}
}

func (p *Puller) dial(ctx context.Context, t *target) (*conn, error) {
	dialer := p.Dial
	if dialer == nil {
		d := &net.Dialer{Timeout: t.timeout}
		dialer = d.DialContext
	}
	raw, err := dialer(ctx, "tcp", t.addr)
	if err != nil {
		return nil, fmt.Errorf("smb %s: connect: %w", t.addr, err)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	_ = raw.SetDeadline(time.Now().Add(t.timeout))
	d := &smb2.Dialer{
		Negotiator:       smb2.Negotiator{SpecifiedDialect: p.Dialect},
		MaxCreditBalance: creditBalance,
		Initiator:        &smb2.NTLMInitiator{User: t.user, Password: t.password, Domain: t.domain},
	}
	sess, err := d.DialContext(ctx, raw)
	if err != nil {
		stop()
		raw.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("smb %s: %w", t.addr, ctx.Err())
		}
		var re *smb2.ResponseError
		if errors.As(err, &re) && (re.Code == statusLogonFailure || re.Code == statusAccountRestriction ||
			re.Code == statusAccessDenied) {
			return nil, fmt.Errorf("smb %s: %w: user %q: %v", t.addr, ErrAuth, t.user, err)
		}
		return nil, fmt.Errorf("smb %s: negotiate and log in: %w", t.addr, explain(err))
	}
	_ = raw.SetDeadline(time.Time{})
	sess = sess.WithContext(ctx)
	share, err := sess.Mount(t.share)
	if err != nil {
		sess.Logoff()
		stop()
		raw.Close()
		if errors.Is(err, os.ErrPermission) || strings.Contains(err.Error(), "ACCESS_DENIED") {
			return nil, fmt.Errorf("smb %s: mount share %q: %w: %v (wrong user, or the share requires encryption, which needs SMB 3)", t.addr, t.share, ErrAuth, err)
		}
		return nil, fmt.Errorf("smb %s: mount share %q: %w", t.addr, t.share, explain(err))
	}
	c := &conn{raw: raw, sess: sess, share: share.WithContext(ctx), stop: stop, done: make(chan struct{}),
		ctx: ctx, credits: semaphore.NewWeighted(creditBalance)}
	go c.watch(t.timeout)
	return c, nil
}

// NTSTATUS codes ([MS-ERREF] 2.3.1).
const (
	statusAccessDenied       = 0xC0000022
	statusLogonFailure       = 0xC000006D
	statusAccountRestriction = 0xC000006E
)

// explain adds what to do about go-smb2's known limits.
func explain(err error) error {
	if err != nil && strings.Contains(err.Error(), "signing required") {
		return fmt.Errorf("%w (go-smb2 rejects the unsigned interim responses a server with mandatory signing sends; "+
			"set 'server signing = auto' or require encryption ('smb encrypt = required') on the server)", err)
	}
	return err
}

// Pull walks the source into j.Sink. See the package documentation.
func (p *Puller) Pull(ctx context.Context, j *pullers.Job) error {
	if j == nil || j.Sink == nil {
		return errors.New("smb pull: no sink")
	}
	t, err := parseTarget(j.Source)
	if err != nil {
		return err
	}
	w := &walker{p: p, j: j, t: t, base: cleanBase(j.Source.Path)}
	w.maxDepth, w.maxEntries = p.MaxDepth, p.MaxEntries
	if w.maxDepth <= 0 {
		w.maxDepth = DefaultMaxDepth
	}
	if w.maxEntries <= 0 {
		w.maxEntries = DefaultMaxEntries
	}
	if w.maxDirs = p.MaxDirs; w.maxDirs <= 0 {
		w.maxDirs = DefaultMaxDirs
	}
	if v := j.Source.Options["full"]; v != "" {
		if w.full, err = strconv.ParseBool(v); err != nil {
			return fmt.Errorf("smb %s: option full=%q: want true or false", t.addr, v)
		}
	}
	if w.excludes, err = walk.ParseExcludes(j.Source.Excludes); err != nil {
		return fmt.Errorf("smb %s: %w", t.addr, err)
	}
	w.pipe = walk.New(walk.Config{Job: j, Workers: p.Workers, MaxBytes: p.MaxInFlight,
		Where: w.where, Explain: explain, Fetch: w.fetch,
		Full: func(string) bool { return w.full },
		Store: func(ctx context.Context, rel string, _ pool.Entry, b *ahead.Buffer) error {
			return w.store(ctx, rel, b)
		},
		Interrupted: func(ctx context.Context) error { return w.fatal(ctx, "", ctx.Err()) },
		Close:       func() { w.cn.Close() }})
	w.cn, err = p.dial(ctx, t)
	if err != nil {
		return err
	}
	defer func() { w.cn.Close() }()
	done := w.cn.opc(costBig)
	fi, err := w.cn.share.Stat(w.remote(""))
	done()
	if err != nil {
		return w.fatal(ctx, "", fmt.Errorf("source: %w", err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: source is not a directory", w.where(""))
	}
	e := w.entry(".", fi)
	if err := j.Sink.Add(ctx, ".", e, nil); err != nil {
		return fmt.Errorf("%s: store the root: %w", w.where(""), err)
	}
	w.pipe.Added(&e)
	return w.pipe.Run(ctx, func(ctx context.Context) error {
		w.lister = walk.NewLister(ctx, walk.ListerConfig[[]os.FileInfo]{
			List:     func(_ context.Context, rel string) ([]os.FileInfo, error) { return w.list(rel) },
			Children: w.children, InFlight: listAhead, Held: listHeld})
		defer w.lister.Close()
		return w.walkDir(ctx, "", 0, fi, nil)
	})
}

// cleanBase turns Source.Path into a share-relative slash path ("" for
// the share root).
func cleanBase(p string) string {
	p = path.Clean("/" + strings.ReplaceAll(p, `\`, "/"))
	return strings.TrimPrefix(p, "/")
}

// walker is the state of one pull. As in pullers/sftp, the walk runs on
// the producer of a walk.Pipe, with its listings from a walk.Lister.
type walker struct {
	p          *Puller
	j          *pullers.Job
	t          *target
	cn         *conn
	base       string
	excludes   walk.Excludes
	maxDepth   int
	maxEntries int
	maxDirs    int
	full       bool

	dirs     int  // directories descended into (producer)
	dirsOver bool // the MaxDirs error was recorded

	pipe   *walk.Pipe
	lister *walk.Lister[[]os.FileInfo]
}

// Listing ahead: listAhead directories listed at once while the walk
// works (each holds costBig credits), listHeld at most in flight or
// waiting for it.
const (
	listAhead = 4
	listHeld  = 16
)

// head is what a fetch tells the consumer before the content.
type head struct {
	e      pool.Entry // from the open handle
	err    error      // why the file could not be opened or stat'ed
	opened bool       // err came after the open
}

// remote is the share-relative path of rel, as go-smb2 wants it.
func (w *walker) remote(rel string) string {
	p := path.Join(w.base, rel)
	if p == "." || p == "" {
		return ""
	}
	return strings.ReplaceAll(p, "/", `\`)
}

func (w *walker) where(rel string) string {
	return fmt.Sprintf(`smb //%s/%s/%s`, w.t.addr, w.t.share, path.Join(w.base, rel))
}

// fatal wraps an error that ends the pull, naming a stall for what it is.
func (w *walker) fatal(ctx context.Context, rel string, err error) error {
	if w.cn.stalled.Load() {
		return fmt.Errorf("%s: %w for %v (no reply); gave up", w.where(rel), errStalled, w.t.timeout)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%s: %w", w.where(rel), explain(err))
}

// broken: the connection is gone (stalled, closed, cancelled).
func (w *walker) broken(ctx context.Context) bool {
	if ctx.Err() != nil || w.cn.stalled.Load() {
		return true
	}
	done := w.cn.opc(costBig)
	_, err := w.cn.share.Stat(w.remote(""))
	done()
	return err != nil
}

// Attribute bits ([MS-FSCC] 2.6).
const (
	attrReadonly = 0x1
	attrHidden   = 0x2
	attrDir      = 0x10
	attrReparse  = 0x400
)

// entry converts SMB metadata: the type from the attributes, mtime
// (LastWriteTime, 100 ns), size; the DOS attributes in Extra["smb.attrs"].
// SMB carries no POSIX mode: 0755 for directories, 0644 for files (0444
// when read-only).
func (w *walker) entry(name string, fi os.FileInfo) pool.Entry {
	e := pool.Entry{Name: name, ModTime: fi.ModTime().UnixNano()}
	var attrs uint32
	if st, ok := fi.(*smb2.FileStat); ok {
		attrs = st.FileAttributes
	}
	e.Extra = map[string]string{"smb.attrs": fmt.Sprintf("0x%08x", attrs)}
	switch {
	case attrs&attrReparse != 0 && attrs&attrDir == 0 || fi.Mode()&fs.ModeSymlink != 0:
		e.Type, e.Mode = pool.TypeSymlink, 0o777
	case attrs&attrDir != 0 || fi.IsDir():
		e.Type, e.Mode = pool.TypeDir, 0o755
	default:
		e.Type, e.Mode, e.Size = pool.TypeFile, 0o644, max(fi.Size(), 0)
		if attrs&attrReadonly != 0 {
			e.Mode = 0o444
		}
	}
	return e
}

// list reads a directory in batches, at most maxEntries names.
func (w *walker) list(rel string) ([]os.FileInfo, error) {
	done := w.cn.opc(costBig)
	defer done()
	d, err := w.cn.share.Open(w.remote(rel))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	var out []os.FileInfo
	for {
		fis, err := d.Readdir(1024)
		out = append(out, fis...)
		w.cn.last.Store(time.Now().UnixNano())
		if len(out) > w.maxEntries {
			return out[:w.maxEntries], fmt.Errorf("more than %d names in one directory; kept the first %d", w.maxEntries, w.maxEntries)
		}
		if errors.Is(err, io.EOF) || (err == nil && len(fis) == 0) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// ancestor is a directory on the path of the walk: its path, depth and
// signatures (dirSig).
type ancestor struct {
	rel       string
	depth     int
	sig, list [sha256.Size]byte
}

// maxProbePath bounds the paths a cycle probe asks for (Linux's PATH_MAX
// on the server; Samba resolves no longer path).
const maxProbePath = 4 << 10

// maxProbeRepeats bounds the repetitions a cycle probe lists: Samba
// resolves at most 40 links in a path (and reports more as "not found").
const maxProbeRepeats = 30

// dirSig is what identifies a directory, since go-smb2 exposes no file
// IDs. list is a hash of every listed name with its attributes, size and
// change and write times (appendStat), in name order; sig adds the
// directory's own. A server that follows a link back to an ancestor
// lists that same directory again, so the signatures match; distinct
// directories match only if all those times agree to the 100 ns, which a
// file system with coarse timestamps does give a tree made at once, so a
// match is confirmed by cycleProbe.
func dirSig(own os.FileInfo, fis []os.FileInfo) (sig, list [sha256.Size]byte) {
	list = listSig(fis)
	return sha256.Sum256(appendStat(list[:], own, true)), list
}

func listSig(fis []os.FileInfo) [sha256.Size]byte {
	sorted := slices.Clone(fis)
	slices.SortFunc(sorted, func(a, b os.FileInfo) int { return strings.Compare(a.Name(), b.Name()) })
	var b []byte
	for _, fi := range sorted {
		b = append(b, fi.Name()...)
		b = appendStat(append(b, 0), fi, false)
	}
	return sha256.Sum256(b)
}

// appendStat appends fi's attributes, change and write times and size;
// for a directory's own (as listed in its parent, where Samba derives
// it from the name the link has) less the hidden bit. Not the creation
// time: Samba reports the least of the other three times when the file
// system keeps none, and the access time changes as the walk reads.
func appendStat(b []byte, fi os.FileInfo, own bool) []byte {
	if st, ok := fi.(*smb2.FileStat); ok {
		attrs := st.FileAttributes
		if own {
			attrs &^= attrHidden
		}
		b = binary.LittleEndian.AppendUint32(b, attrs)
		for _, t := range []time.Time{st.ChangeTime, st.LastWriteTime} {
			b = binary.LittleEndian.AppendUint64(b, uint64(t.UnixNano()))
		}
	} else {
		b = binary.LittleEndian.AppendUint64(b, uint64(fi.ModTime().UnixNano()))
	}
	return binary.LittleEndian.AppendUint64(b, uint64(fi.Size()))
}

// cycleProbe confirms that rel (at depth), whose signature equals its
// ancestor a's, is a directory cycle: the path from a to rel, appended
// to rel again and again, must keep naming a directory with a's listing,
// maxProbeRepeats times (fewer if the path gets deeper than MaxDepth or
// longer than maxProbePath). A cycle does so; an honest tree whose times
// merely coincide ends or differs on the way, unless it repeats the same
// listing maxProbeRepeats times in a row (then it is cut as a cycle; see
// doc.go). The repeat cap also keeps the probe below the number of links
// Samba resolves in one path: past it, Samba answers "not found", which
// would look like an honest end. The probe lists one directory per
// repetition, along one path; an error other than "not found" or "not a
// directory" is one the walk would meet down this path too, and the
// cycle is taken as confirmed.
func (w *walker) cycleProbe(ctx context.Context, rel string, depth int, a ancestor) bool {
	step := rel
	if a.rel != "" {
		step = rel[len(a.rel)+1:]
	}
	period := depth - a.depth
	for p, n := rel, 0; depth <= w.maxDepth && len(p) <= maxProbePath && n < maxProbeRepeats; depth, n = depth+period, n+1 {
		if ctx.Err() != nil {
			return false
		}
		p += "/" + step
		fis, err := w.list(p)
		if err != nil && len(fis) < w.maxEntries { // not cut at MaxEntries as a's was
			// Gone or no directory: an honest tree ends. Anything else
			// (Samba resolves at most 40 links in a path) the walk
			// would meet down this path too.
			s := fmt.Sprint(err)
			return !errors.Is(err, os.ErrNotExist) && !strings.Contains(s, "NOT_FOUND") && !strings.Contains(s, "NOT_A_DIRECTORY")
		}
		if listSig(fis) != a.list {
			return false
		}
	}
	return true
}

// probeHook, when set (by tests), is told of each cycle probe.
var probeHook func(rel, ancestor string)

// walkDir lists rel (whose own metadata is own; anc are the directories
// above it) and visits its entries. A directory that is one of its
// ancestors over again is a cycle: it is kept, with no children, and an
// error names it.
func (w *walker) walkDir(ctx context.Context, rel string, depth int, own os.FileInfo, anc []ancestor) error {
	fis, err := w.lister.Get(ctx, rel, depth)
	if err != nil {
		if w.broken(ctx) {
			return w.fatal(ctx, rel, fmt.Errorf("read directory: %w", err))
		}
		if err := w.pipe.Fail(ctx, walk.RelOrDot(rel), fmt.Errorf("read directory: %w", vanished(err))); err != nil {
			return err
		}
	}
	sig, list := dirSig(own, fis)
	for _, a := range anc {
		if a.sig != sig {
			continue
		}
		if probeHook != nil {
			probeHook(rel, a.rel)
		}
		if w.cycleProbe(ctx, rel, depth, a) {
			return w.pipe.Fail(ctx, walk.RelOrDot(rel), fmt.Errorf("directory cycle: %s is %s (the server follows a link back to it); not descended",
				walk.RelOrDot(rel), walk.RelOrDot(a.rel)))
		}
	}
	anc = append(anc[:len(anc):len(anc)], ancestor{rel: rel, depth: depth, sig: sig, list: list})
	return w.pipe.Listed(ctx, rel, fis, validName, w.excludes, func(child string, fi os.FileInfo) error {
		return w.visit(ctx, child, fi, depth+1, anc)
	})
}

// validName: the name can be one path element (no backslash either).
func validName(name string) bool {
	return pool.ValidName(name) && !strings.ContainsRune(name, '\\')
}

// maxRel is the longest path the walk descends into.
const maxRel = 32 << 10

// children (the Lister's) names the subdirectories of rel at depth that
// walkDir and visit will descend into. A cycle found by walkDir, or the
// MaxDirs limit, may leave a few of them listed ahead for nothing.
func (w *walker) children(rel string, depth int, fis []os.FileInfo, _ error) []string {
	if depth+1 > w.maxDepth {
		return nil
	}
	return walk.SubDirs(rel, fis, validName, w.excludes, func(child string, fi os.FileInfo) bool {
		return len(child) <= maxRel && w.entry(path.Base(child), fi).Type == pool.TypeDir
	})
}

func vanished(err error) error {
	if errors.Is(err, os.ErrNotExist) || strings.Contains(fmt.Sprint(err), "OBJECT_NAME_NOT_FOUND") ||
		strings.Contains(fmt.Sprint(err), "OBJECT_PATH_NOT_FOUND") {
		return fmt.Errorf("vanished during backup: %w", err)
	}
	return err
}

func (w *walker) visit(ctx context.Context, rel string, fi os.FileInfo, depth int, anc []ancestor) error {
	e := w.entry(path.Base(rel), fi)
	switch e.Type {
	case pool.TypeDir:
		// The server may follow symlinks to directories: bound the depth
		// (walkDir also stops at cycles) and the directories in all.
		if depth > w.maxDepth || len(rel) > maxRel {
			return w.pipe.Fail(ctx, rel, fmt.Errorf("nested deeper than %d directories or 32 KiB; not descended", w.maxDepth))
		}
		if err := w.pipe.Add(ctx, rel, e); err != nil {
			return err
		}
		if w.dirs++; w.dirs > w.maxDirs {
			if w.dirsOver {
				return nil
			}
			w.dirsOver = true
			return w.pipe.Fail(ctx, rel, fmt.Errorf("more than %d directories in the source; this and later directories kept empty", w.maxDirs))
		}
		return w.walkDir(ctx, rel, depth, fi, anc)
	case pool.TypeSymlink:
		done := w.cn.opc(costBig)
		target, err := w.cn.share.Readlink(w.remote(rel))
		done()
		if err != nil {
			if w.broken(ctx) {
				return w.fatal(ctx, rel, err)
			}
			return w.pipe.Fail(ctx, rel, fmt.Errorf("readlink: %w", vanished(err)))
		}
		e.Target = strings.ReplaceAll(target, `\`, "/")
		return w.pipe.Add(ctx, rel, e)
	}
	return w.pipe.File(ctx, rel, e)
}

// store (consumer) adds the file fetched into b.
func (w *walker) store(ctx context.Context, rel string, b *ahead.Buffer) error {
	defer b.Close()
	v, err := b.Wait(ctx)
	if err != nil {
		return w.fatal(ctx, rel, err)
	}
	h := v.(head)
	if h.err != nil {
		if !h.opened && w.broken(ctx) {
			return w.fatal(ctx, rel, h.err)
		}
		w.pipe.RecordError(rel, h.err)
		return nil
	}
	if err := w.j.Sink.Add(ctx, rel, h.e, b); err != nil {
		if ctx.Err() != nil || w.cn.stalled.Load() {
			return w.fatal(ctx, rel, err)
		}
		if !errors.Is(err, pool.ErrEntry) {
			return fmt.Errorf("%s: store: %w", w.where(rel), err)
		}
		if w.broken(ctx) {
			return w.fatal(ctx, rel, err)
		}
		w.pipe.RecordError(rel, err)
		return nil
	}
	w.pipe.Added(&h.e)
	return nil
}

// Reads: readChunk bytes (4 credits) per READ, readDepth of them in
// flight per file: 1 MiB, as 16 reads of 64 KiB were, in a quarter of
// the requests.
const (
	readChunk = 256 << 10
	readDepth = 4
)

// fetch (on a worker) opens rel and reads it into b, with the metadata
// the server sent with the open handle (the CREATE response; see
// openStat): no QUERY_INFO, and size and content belong together.
func (w *walker) fetch(rel string, listed pool.Entry) ahead.Func {
	remote := w.remote(rel)
	return func(ctx context.Context, b *ahead.Buffer) error {
		done := w.cn.opc(costSmall)
		f, err := w.cn.share.Open(remote)
		done()
		if err != nil {
			b.Ready(head{err: fmt.Errorf("open: %w", vanished(err))})
			return nil
		}
		defer func() {
			done := w.cn.opc(costSmall)
			f.Close()
			done()
		}()
		var fi os.FileInfo
		if st := openStat(f); st != nil {
			fi = st
		} else {
			done := w.cn.opc(costBig)
			fi, err = f.Stat()
			done()
			if err != nil {
				b.Ready(head{err: fmt.Errorf("stat: %w", err), opened: true})
				return nil
			}
		}
		e := w.entry(listed.Name, fi)
		if e.Type != pool.TypeFile {
			b.Ready(head{err: errors.New("replaced during backup (no longer a regular file)"), opened: true})
			return nil
		}
		b.Ready(head{e: e})
		return ahead.ReadAll(ctx, &opReaderAt{c: w.cn, r: f}, e.Size, readChunk, readDepth, b) // at most size+1 bytes
	}
}

// openStat is the metadata go-smb2 took from the CREATE response of f
// (times, attributes, end of file: what QUERY_INFO would say of the
// handle). go-smb2 v1.1.0 keeps it in an unexported field and answers
// File.Stat with a QUERY_INFO, a round trip and 16 credits per file; nil
// when the field is not there as expected (another go-smb2), and then
// the caller asks the server.
func openStat(f *smb2.File) *smb2.FileStat {
	v := reflect.ValueOf(f).Elem().FieldByName("fileStat")
	if !v.IsValid() || v.Type() != reflect.TypeFor[*smb2.FileStat]() {
		return nil
	}
	return *(**smb2.FileStat)(unsafe.Pointer(v.UnsafeAddr()))
}

// opReaderAt marks each read as one operation for the watchdog.
type opReaderAt struct {
	c *conn
	r io.ReaderAt
}

func (o *opReaderAt) ReadAt(p []byte, off int64) (int, error) {
	done := o.c.opc(int64(max(1, (len(p)+64<<10-1)/(64<<10))))
	defer done()
	return o.r.ReadAt(p, off)
}
