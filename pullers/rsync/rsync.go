package rsync

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	//lint:ignore SA1019 rsync protocol 27 mandates MD4 block and file checksums
	"golang.org/x/crypto/md4"
	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// Method is the source method name this puller registers.
const Method = "rsync"

func init() {
	pullers.Register(Method, func() pullers.Puller { return New() })
}

// Basis is an optional interface of a pullers.Previous: it opens the
// content of a previous snapshot's file, the basis of a delta transfer.
// *pool.Pool's OpenContent has this shape. Without it, changed files are
// transferred whole.
type Basis interface {
	OpenContent(ctx context.Context, e *pool.Entry) (*pool.ContentReader, error)
}

// Puller pulls from an rsync sender. One Puller runs one pull at a time.
type Puller struct {
	// Dial opens the TCP connection; nil uses net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Log receives the server's messages; nil discards.
	Log *slog.Logger
	// MaxEntries bounds the file list; 0: 5,000,000.
	MaxEntries int
	// Protocol caps the protocol version offered (27, 30 or 31); 0: 31.
	// Below 30 there are no xattrs or ACLs.
	Protocol int

	received   atomic.Int64
	negotiated atomic.Int32
	mu         sync.Mutex
	seen       ssh.PublicKey
}

var _ pullers.Puller = (*Puller)(nil)

// New returns a puller with the default limits.
func New() *Puller { return &Puller{} }

// BytesReceived is the number of bytes read from the server in the last
// pull (protocol overhead included).
func (p *Puller) BytesReceived() int64 { return p.received.Load() }

// Negotiated is the protocol version of the last pull (27, 30 or 31).
func (p *Puller) Negotiated() int { return int(p.negotiated.Load()) }

// SeenHostKey is the SSH host key of the last login, authorized_keys
// format, or "".
func (p *Puller) SeenHostKey() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		return ""
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(p.seen)))
}

func (p *Puller) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.New(slog.DiscardHandler)
}

// item is one entry of the plan, in walk order. It is kept small (a
// pull holds one per entry): the pool.Entry is built when the item is
// stored, and what only changed files need (the previous version, the
// xattr values asked for) lives in maps of the xfer.
type item struct {
	f       *file
	head    sumHead     // block-sum header sent with the request
	content pool.Digest // the previous snapshot's content of an unchanged file
	link    uint32      // Entry.HardLink, 0 for none
	flags   uint8
}

const (
	itemReq     = 1 << iota // an answer is expected from the sender
	itemXfer                // protocol 30: the data is requested (ITEM_TRANSFER)
	itemBasis               // the request carries the basis block sums
	itemChunked             // content names a chunk list
)

func (it *item) has(f uint8) bool { return it.flags&f != 0 }

func (it *item) rel() string { return it.f.name }

// Pull implements pullers.Puller. See the package documentation.
func (p *Puller) Pull(ctx context.Context, j *pullers.Job) error {
	if j == nil || j.Sink == nil {
		return errors.New("rsync pull: no sink")
	}
	t, err := parseTarget(j.Source)
	if err != nil {
		return err
	}
	p.received.Store(0)
	var s *session
	if t.ssh {
		s, err = p.openSSH(ctx, t)
	} else {
		s, err = p.openDaemon(ctx, t)
	}
	if err != nil {
		return err
	}
	p.negotiated.Store(int32(s.proto))
	stop := context.AfterFunc(ctx, func() { s.closer() })
	defer func() {
		stop()
		s.closer()
	}()
	err = p.transfer(ctx, t, s, j)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil && s.stderr != nil {
		if m := s.stderr.String(); m != "" {
			err = fmt.Errorf("%w (remote: %s)", err, short(m))
		}
	}
	return err
}

// transfer runs the protocol after the version exchange.
func (p *Puller) transfer(ctx context.Context, t *target, s *session, j *pullers.Job) error {
	if s.proto >= 30 {
		return p.transfer30(ctx, t, s, j)
	}
	return p.transfer27(ctx, t, s, j)
}

// transfer27 is protocol 27 after the version exchange.
func (p *Puller) transfer27(ctx context.Context, t *target, s *session, j *pullers.Job) error {
	raw := &rawReader{r: s.in}
	seed, err := raw.int32("checksum seed")
	if err != nil {
		return fmt.Errorf("%s: %w", t, err)
	}
	for _, pat := range j.Source.Excludes {
		if pat == "" || strings.ContainsAny(pat, "\n\x00") {
			continue
		}
		rule := "- " + pat
		putInt(s.out, int32(len(rule)))
		s.out.WriteString(rule)
	}
	putInt(s.out, 0)
	if err := s.out.Flush(); err != nil {
		return fmt.Errorf("%s: send excludes: %w", t, err)
	}
	dm := newDemux(s.in)
	r := &rawReader{r: dm}
	list, err := readFileList(r, flistOpts{owner: true, devices: true, links: true, hard: true, maxEntries: p.MaxEntries})
	if err != nil {
		return fmt.Errorf("%s: file list: %w", t, err)
	}
	x := &xfer{p: p, t: t, s: s, j: j, dm: dm, r: r, seed: seed, proto: 27}
	if !t.numeric {
		if x.users, err = readIDList(r, "user"); err == nil {
			x.groups, err = readIDList(r, "group")
		}
		if err != nil {
			return fmt.Errorf("%s: file list: %w", t, err)
		}
	}
	if _, err := r.int32("io error flag"); err != nil {
		return fmt.Errorf("%s: file list: %w", t, err)
	}
	plan, err := x.plan(ctx, list)
	if err != nil {
		return err
	}
	x.setPositions(plan)
	for _, m := range dm.msgs {
		p.log().Info("rsync: server message", "source", t.String(), "msg", m)
	}

	// The generator asks for the files in walk order while the receiver
	// stores what comes back, so the responses arrive in walk order too.
	genErr := make(chan error, 1)
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { genErr <- x.generate(gctx, plan) }()
	rerr := x.receive(ctx, plan)
	if rerr != nil {
		cancel()
		s.closer()
		<-genErr
		return rerr
	}
	if err := <-genErr; err != nil {
		return fmt.Errorf("%s: send requests: %w", t, err)
	}
	for range 3 { // total read, written, size
		if _, err := r.longint("statistics"); err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
	}
	putInt(s.out, -1) // goodbye
	if err := s.out.Flush(); err != nil {
		return fmt.Errorf("%s: goodbye: %w", t, err)
	}
	x.report("")
	return nil
}

type xfer struct {
	p    *Puller
	t    *target
	s    *session
	j    *pullers.Job
	dm   *demux
	r    *rawReader
	seed int32

	proto   int  // 27, 30 or 31
	seedFix bool // CF_CHKSUM_SEED_FIX: the seed goes before the block
	fl      *flist30
	ndxOut  ndxCodec
	ndxIn   ndxCodec

	users, groups map[uint32]string    // owner names by id
	prev          map[*item]pool.Entry // the previous version of a file sent as a delta
	xreq          map[*item][]int32    // protocol 30: long xattr values asked for
	posOf         []int32              // plan position of a requested file number, -1 none

	sumBufs sumBufs // blocks of the large files' background checksums
	bsum    hash.Hash
	bsumOut []byte

	mu   sync.Mutex
	prog pullers.Progress
}

func (x *xfer) report(rel string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.prog.Path = rel
	if x.j.Progress != nil {
		x.j.Progress(x.prog)
	}
}

func (x *xfer) count(f func(p *pullers.Progress), rel string) {
	x.mu.Lock()
	f(&x.prog)
	x.mu.Unlock()
	x.report(rel)
}

func (x *xfer) recordError(rel string, err error) {
	x.count(func(p *pullers.Progress) { p.Errors++ }, rel)
	where := x.t.String()
	x.j.Sink.RecordError(rel, fmt.Errorf("%s/%s: %w", strings.TrimSuffix(where, "/"), rel, err))
}

// entry builds the pool entry of an item (without xattrs, see fillXattrs).
func (x *xfer) entry(it *item) pool.Entry {
	f := it.f
	name := "."
	if f.name != "." {
		name = path.Base(f.name)
	}
	e := pool.Entry{Name: name, UID: f.uid, GID: f.gid, User: x.users[f.uid], Group: x.groups[f.gid], ModTime: f.mtime,
		HardLink: uint64(it.link), Content: it.content, Chunked: it.has(itemChunked)}
	e.Mode = fs.FileMode(f.mode & 0o777)
	if f.mode&0o4000 != 0 {
		e.Mode |= fs.ModeSetuid
	}
	if f.mode&0o2000 != 0 {
		e.Mode |= fs.ModeSetgid
	}
	if f.mode&0o1000 != 0 {
		e.Mode |= fs.ModeSticky
	}
	switch f.mode & sIFMT {
	case sIFDIR:
		e.Type = pool.TypeDir
	case sIFREG:
		e.Type, e.Size = pool.TypeFile, f.size
	case sIFLNK:
		e.Type, e.Target = pool.TypeSymlink, f.target
	case sIFCHR:
		e.Type, e.Rdev = pool.TypeCharDev, uint64(f.rdev)
	case sIFBLK:
		e.Type, e.Rdev = pool.TypeBlockDev, uint64(f.rdev)
	case sIFIFO:
		e.Type = pool.TypeFIFO
	case sIFSOCK:
		e.Type = pool.TypeSocket
	}
	return e
}

// cmpWalk orders paths as the walk visits them: element by element,
// bytewise, a directory before its contents.
func cmpWalk(a, b string) int {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	switch {
	case i == len(a) && i == len(b):
		return 0
	case i == len(a):
		return -1
	case i == len(b):
		return 1
	case a[i] == '/':
		return -1
	case b[i] == '/':
		return 1
	case a[i] < b[i]:
		return -1
	}
	return 1
}

// plan arranges the sorted file list in walk order (parents first, a
// directory's entries together, names in byte order) and decides what to
// request. The plan points into the entries of list.
func (x *xfer) plan(ctx context.Context, list []*file) ([]item, error) {
	plan := make([]item, len(list))
	for i, f := range list {
		plan[i].f = f
	}
	slices.SortFunc(plan, func(a, b item) int {
		switch {
		case a.f.name == b.f.name:
			return 0
		case a.f.name == ".":
			return -1
		case b.f.name == ".":
			return 1
		}
		return cmpWalk(a.f.name, b.f.name)
	})
	if len(plan) == 0 || plan[0].f.name != "." {
		return nil, fmt.Errorf("%s: %w", x.t, protoErr("the file list has no root directory"))
	}
	// Every entry's directory is on the stack of the walk's ancestors.
	stack := []string{""}
	for i := 1; i < len(plan); i++ {
		f := plan[i].f
		dir := path.Dir(f.name)
		if dir == "." {
			dir = ""
		}
		for len(stack) > 0 && stack[len(stack)-1] != dir {
			stack = stack[:len(stack)-1]
		}
		if len(stack) == 0 {
			return nil, fmt.Errorf("%s: %w", x.t, protoErr("%s is listed without its directory", quote(f.name)))
		}
		if f.mode&sIFMT == sIFDIR {
			stack = append(stack, f.name)
		}
	}
	// Hard links: regular files of one group get one HardLink id.
	groups := map[int32][]int32{}
	for i := range plan {
		if f := plan[i].f; f.hlink != 0 && f.mode&sIFMT == sIFREG {
			groups[f.hlink] = append(groups[f.hlink], int32(i))
		}
	}
	for _, g := range groups {
		if len(g) > 1 {
			id := uint32(plan[g[0]].f.ndx) + 1
			for _, i := range g {
				plan[i].link = id
			}
		}
	}
	basis, _ := x.j.Previous.(Basis)
	x.prev = map[*item]pool.Entry{}
	maxNdx := int32(0)
	for i := range plan {
		it := &plan[i]
		maxNdx = max(maxNdx, it.f.ndx)
		if it.f.mode&sIFMT != sIFREG || it.f.size == 0 {
			continue
		}
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		it.flags |= itemReq
		if x.j.Previous == nil {
			continue
		}
		prev, ok, err := x.j.Previous.Lookup(ctx, it.rel())
		if err != nil || !ok || prev.Type != pool.TypeFile || prev.Content.IsZero() {
			continue
		}
		if !x.t.full && prev.Size == it.f.size && prev.ModTime == it.f.mtime {
			it.flags &^= itemReq
			it.content = prev.Content
			if prev.Chunked {
				it.flags |= itemChunked
			}
			continue
		}
		if basis != nil {
			it.flags |= itemBasis
			it.head = headFor(prev.Size)
			x.prev[it] = prev
		}
	}
	x.posOf = make([]int32, maxNdx+1)
	for i := range x.posOf {
		x.posOf[i] = -1
	}
	return plan, nil
}

// setPositions records where each requested file number sits in the
// plan (after the requests are final).
func (x *xfer) setPositions(plan []item) {
	for i := range plan {
		if plan[i].has(itemReq) {
			x.posOf[plan[i].f.ndx] = int32(i)
		}
	}
}

// position is the plan position of the answered file number ndx, -1 if
// it was not asked for.
func (x *xfer) position(ndx int32) int {
	if ndx < 0 || int(ndx) >= len(x.posOf) {
		return -1
	}
	return int(x.posOf[ndx])
}

// generate sends a request, with the basis checksums, for every planned
// file, then the two end-of-phase markers.
func (x *xfer) generate(ctx context.Context, plan []item) error {
	w := x.s.out
	for i := range plan {
		it := &plan[i]
		if !it.has(itemReq) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		x.report(it.rel()) // before the request: what the sender reads is decided now
		putInt(w, it.f.ndx)
		if err := x.sendSums(ctx, it); err != nil {
			return err
		}
	}
	putInt(w, -1)
	putInt(w, -1)
	return w.Flush()
}

// sendSums writes the block-sum header and sums of a file's basis, or
// an empty header when it has none (or it cannot be read).
//
// The requests are not flushed one by one: those without a basis go out
// when the buffer fills and at the end of the phase (the generator never
// waits for the sender, so nothing waits on what is buffered). What is
// buffered goes out before a basis is read from the pool (which takes a
// while), so the sender works on it meanwhile, and the sums right after.
func (x *xfer) sendSums(ctx context.Context, it *item) error {
	w := x.s.out
	if it.has(itemBasis) {
		if err := w.Flush(); err != nil {
			return err
		}
		prev := x.prev[it]
		cr, err := x.j.Previous.(Basis).OpenContent(ctx, &prev)
		if err == nil {
			if err := writeSums(ctx, w, it.head, cr, x.blockSum); err != nil {
				return fmt.Errorf("%s: basis: %w", it.rel(), err)
			}
			return w.Flush()
		}
		x.mu.Lock() // the receiver compares the echoed head with it
		it.head = sumHead{}
		x.mu.Unlock()
		x.p.log().Warn("rsync: basis unreadable; whole file", "path", it.rel(), "err", err)
	}
	putHead(w, sumHead{})
	return nil
}

// passOver stores the plan from pos up to (not including) end: entries
// that were not requested; requested ones passed over were not sent.
func (x *xfer) passOver(ctx context.Context, plan []item, pos *int, end int) error {
	for ; *pos < end; *pos++ {
		it := &plan[*pos]
		if it.has(itemReq) {
			msg := x.dm.messagesAbout(it.rel())
			if msg == "" {
				msg = "the server did not send it (vanished or unreadable?)"
			}
			x.recordError(it.rel(), errors.New(msg))
			continue
		}
		if err := x.addMeta(ctx, it); err != nil {
			return err
		}
	}
	return nil
}

// receive stores the plan's entries in order, reading the requested
// files' data as the sender sends it.
func (x *xfer) receive(ctx context.Context, plan []item) error {
	pos := 0
	phase := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ndx, err := x.r.int32("file index")
		if err != nil {
			return fmt.Errorf("%s: %w", x.t, err)
		}
		if ndx == -1 {
			phase++
			if phase == 1 {
				if err := x.passOver(ctx, plan, &pos, len(plan)); err != nil {
					return err
				}
				continue
			}
			return nil
		}
		i := x.position(ndx)
		if i < pos || phase > 0 {
			return fmt.Errorf("%s: %w", x.t, protoErr("the server sent file %d, which was not asked for (or out of order)", ndx))
		}
		if err := x.passOver(ctx, plan, &pos, i); err != nil {
			return err
		}
		if err := x.recvFile(ctx, &plan[i]); err != nil {
			return err
		}
		pos = i + 1
	}
}

func (x *xfer) addMeta(ctx context.Context, it *item) error {
	e := x.entry(it)
	x.fillXattrs(it, &e)
	err := x.j.Sink.Add(ctx, it.rel(), e, nil)
	if err == nil {
		x.count(func(p *pullers.Progress) {
			p.Files++
			if e.Type == pool.TypeFile && e.Size > 0 {
				p.Skipped++
				p.Bytes += e.Size
			}
		}, it.rel())
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, pool.ErrEntry) || errors.Is(err, pool.ErrContentMissing) {
		x.recordError(it.rel(), err)
		return nil
	}
	return fmt.Errorf("%s/%s: store: %w", x.t, it.rel(), err)
}

// recvFile reads one file's delta and streams it into the sink.
func (x *xfer) recvFile(ctx context.Context, it *item) error {
	e := x.entry(it)
	x.fillXattrs(it, &e)
	rel := it.rel()
	var h sumHead
	for _, v := range []*int32{&h.count, &h.blen, &h.s2len, &h.rem} {
		n, err := x.r.int32("sum head")
		if err != nil {
			return fmt.Errorf("%s: %w", x.t, err)
		}
		*v = n
	}
	x.mu.Lock()
	want := it.head
	x.mu.Unlock()
	if h != want {
		return fmt.Errorf("%s: %w", x.t, protoErr("%s: the checksum header came back changed", quote(rel)))
	}
	fr := &fileReader{r: x.r, h: h, left: e.Size + 1}
	if e.Size >= bgSumMin {
		bs := newBgSum(x.fileSum(), &x.sumBufs)
		defer bs.close()
		fr.sum = bs
	} else {
		fr.sum = x.fileSum()
	}
	if h.count > 0 {
		prev := x.prev[it]
		cr, err := x.j.Previous.(Basis).OpenContent(ctx, &prev)
		if err != nil {
			fr.fileErr = fmt.Errorf("open the basis: %w", err)
		} else {
			fr.basis = cr
		}
	}
	err := x.j.Sink.Add(ctx, rel, e, fr)
	if derr := fr.drain(); derr != nil {
		return fmt.Errorf("%s: %s: %w", x.t, rel, derr)
	}
	if err == nil {
		x.count(func(p *pullers.Progress) { p.Files++; p.Bytes += e.Size }, rel)
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, pool.ErrEntry) {
		if fr.fileErr != nil {
			err = fr.fileErr
		}
		x.recordError(rel, err)
		return nil
	}
	return fmt.Errorf("%s/%s: store: %w", x.t, rel, err)
}

// fileSum starts the whole-file checksum: MD5 from protocol 30 on, else
// MD4 of the seed and the data.
func (x *xfer) fileSum() hash.Hash {
	if x.proto >= 30 {
		return md5.New()
	}
	return newSum(x.seed)
}

// blockSum is the strong checksum of one basis block: MD4 (block, seed)
// before protocol 30, MD5 after (the seed first with CF_CHKSUM_SEED_FIX).
func (x *xfer) blockSum(b []byte) []byte {
	if x.proto < 30 {
		return blockSum(b, x.seed)
	}
	// Only the generator calls it: one hash and one result buffer serve
	// every block (writeSums copies the result out at once).
	if x.bsum == nil {
		x.bsum = md5.New()
	}
	h := x.bsum
	h.Reset()
	var s [4]byte
	binary.LittleEndian.PutUint32(s[:], uint32(x.seed))
	if x.seedFix && x.seed != 0 {
		h.Write(s[:])
	}
	h.Write(b)
	if !x.seedFix && x.seed != 0 {
		h.Write(s[:])
	}
	x.bsumOut = h.Sum(x.bsumOut[:0])
	return x.bsumOut
}

// newSum starts a whole-file checksum: MD4 of the seed, then the data.
func newSum(seed int32) hash.Hash {
	h := md4.New()
	var s [4]byte
	binary.LittleEndian.PutUint32(s[:], uint32(seed))
	h.Write(s[:])
	return h
}

var errChecksum = errors.New("whole-file checksum mismatch (changed during transfer, or a bad basis)")

// fileReader turns the sender's tokens into the file's bytes: literal
// data, and blocks of the basis.
type fileReader struct {
	r       *rawReader
	h       sumHead
	basis   io.ReaderAt
	sum     fileSummer
	lit     int    // literal bytes left in the current token
	blk     []byte // basis block bytes not yet returned
	bbuf    []byte
	done    bool
	fatal   error // the connection or protocol failed
	fileErr error // this file failed; the stream is still in step
	left    int64 // bytes the sink may still get (size+1)
}

func (f *fileReader) Read(p []byte) (int, error) {
	for {
		if f.fatal != nil {
			return 0, f.fatal
		}
		if len(f.blk) > 0 {
			n := copy(p, f.blk)
			f.blk = f.blk[n:]
			return f.give(n)
		}
		if f.lit > 0 {
			n, err := f.r.r.Read(p[:min(len(p), f.lit)])
			f.lit -= n
			f.sum.Write(p[:n])
			if err != nil {
				f.fatal = err
				if n == 0 {
					return 0, err
				}
			}
			return f.give(n)
		}
		if f.done {
			if f.fileErr != nil {
				return 0, f.fileErr
			}
			return 0, io.EOF
		}
		if err := f.next(); err != nil {
			f.fatal = err
			return 0, err
		}
	}
}

// give passes n bytes on, cutting a file that grew past its size + 1
// (the sink then reports it too long).
func (f *fileReader) give(n int) (int, error) {
	f.left -= int64(n)
	if f.left < 0 {
		if f.fileErr == nil {
			f.fileErr = errors.New("the server sent more data than the file's size (changed during transfer?)")
		}
		return n, f.fileErr
	}
	return n, nil
}

// next reads one token.
func (f *fileReader) next() error {
	tok, err := f.r.int32("data token")
	if err != nil {
		return err
	}
	switch {
	case tok == 0:
		got := f.sum.Sum(nil)
		want := make([]byte, len(got))
		if err := f.r.full(want, "file checksum"); err != nil {
			return err
		}
		f.done = true
		if !bytes.Equal(got, want) && f.fileErr == nil {
			f.fileErr = errChecksum
		}
	case tok > 0:
		if tok > maxLiteral {
			return protoErr("literal of %d bytes", tok)
		}
		f.lit = int(tok)
	default:
		b := -(int64(tok) + 1)
		if b >= int64(f.h.count) {
			return protoErr("block %d of %d", b, f.h.count)
		}
		n := int(f.h.blen)
		if b == int64(f.h.count)-1 && f.h.rem != 0 {
			n = int(f.h.rem)
		}
		if cap(f.bbuf) < n {
			f.bbuf = make([]byte, n)
		}
		blk := f.bbuf[:n]
		if f.fileErr == nil && f.basis != nil {
			if _, err := f.basis.ReadAt(blk, b*int64(f.h.blen)); err != nil && !errors.Is(err, io.EOF) {
				f.fileErr = fmt.Errorf("read the basis: %w", err)
			}
		}
		if f.fileErr != nil || f.basis == nil {
			if f.fileErr == nil {
				f.fileErr = errors.New("no basis for a block match")
			}
			clear(blk)
		}
		f.sum.Write(blk)
		f.blk = blk
	}
	return nil
}

// drain reads what is left of the file's tokens so the stream stays in
// step; it returns only a connection or protocol error.
func (f *fileReader) drain() error {
	if f.fatal != nil {
		return f.fatal
	}
	if f.done && f.lit == 0 && len(f.blk) == 0 {
		return nil // the usual case: the sink read up to the checksum
	}
	buf := make([]byte, 32<<10)
	f.left = 1 << 62
	for {
		if f.fatal != nil {
			return f.fatal
		}
		_, err := f.Read(buf)
		if f.fatal != nil {
			return f.fatal
		}
		if err != nil && f.done && f.lit == 0 && len(f.blk) == 0 {
			return nil
		}
	}
}
