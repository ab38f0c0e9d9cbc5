package sshsrc

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/images"
)

// ErrRemoteTool: the host's hash pipeline is missing a tool, failed, or
// produced output that does not parse. Nothing is committed.
var ErrRemoteTool = errors.New("remote hash tool failed or gave unexpected output")

// Options configure a pull.
type Options struct {
	// Path is the absolute path of a file or block device on the host.
	Path string
	// PreCommand, when set, runs on the host (sh -c) before hashing, e.g.
	// an LVM snapshot or fsfreeze; PostCommand runs after, also on
	// failure, once PreCommand succeeded. Both are admin configuration,
	// never derived from anything the host sends.
	PreCommand, PostCommand string
	// Version is recorded in the manifest; Prev is the basis whose host
	// hashes decide what crosses the wire (without them every data block
	// is fetched). HostHash is always SHA-256.
	Version images.VersionOptions
	// Workers hash and compress fetched blocks; 0 means GOMAXPROCS.
	Workers int
	// Progress, when set, is called after each fetched block with the
	// counts so far and the number of blocks to fetch (from any goroutine,
	// never concurrently).
	Progress func(fetched, toFetch int64, dataBytes int64)
	Log      *slog.Logger
	// HashTool is the host's SHA-256 tool: "" is sha256sum (GNU
	// coreutils, on stock Debian and RHEL); a name or absolute path of
	// [A-Za-z0-9_./-] otherwise. It must print sha256sum's "<hex>  -".
	HashTool string
	// HostJobs is how many block ranges the host hashes at once: 0 is
	// its nproc, at most 4; 1 hashes in one stream.
	HostJobs int
	// AfterListing, when set, runs between the hash listing and the block
	// stream (tests make the source change there).
	AfterListing func()
}

// checkTool validates Options.HashTool.
func checkTool(t string) (string, error) {
	if t == "" {
		return hashTool, nil
	}
	if len(t) > 256 || strings.Trim(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-") != "" || t[0] == '-' {
		return "", fmt.Errorf("hash tool %q: want a command name or path of letters, digits and _./-", t)
	}
	return t, nil
}

// Report says what a pull did.
type Report struct {
	images.Stats
	Fetched           int64 // blocks that crossed the wire
	ListingBytes      int64 // bytes of the remote hash listing received
	DataBytes         int64 // bytes of block data received
	ChangedDuringRead int64 // fetched blocks whose hash differed from the listing (source is live)
}

// hashTool is the remote hash command (a variable so tests can name a
// missing one).
var hashTool = "sha256sum"

// afterListing, when set by a test, runs between the listing and the
// block stream.
var afterListing func()

// Pull makes a new version of image name in s from o.Path on the host
// behind c: the host hashes every 4 MiB block (split + sha256sum, GNU
// coreutils), and only blocks whose hash differs from o.Version.Prev's
// recorded host hash, and that are not all zeros, are transferred.
func Pull(ctx context.Context, c *ssh.Client, s *images.Store, name string, o Options) (*images.Manifest, Report, error) {
	var rep Report
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !strings.HasPrefix(o.Path, "/") || strings.ContainsFunc(o.Path, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, rep, fmt.Errorf("ssh image %s: path %q must be absolute, without control characters", name, o.Path)
	}
	where := c.RemoteAddr().String() + ":" + o.Path
	tool, err := checkTool(o.HashTool)
	if err != nil {
		return nil, rep, fmt.Errorf("ssh image %s: %w", where, err)
	}
	if o.PreCommand != "" {
		if _, err := run(ctx, c, o.PreCommand, nil); err != nil {
			return nil, rep, fmt.Errorf("ssh image %s: pre-command: %w", where, err)
		}
		if o.PostCommand != "" {
			defer func() {
				if _, err := run(context.WithoutCancel(ctx), c, o.PostCommand, nil); err != nil {
					log.Error("post-command failed", "image", name, "host", where, "err", err)
				}
			}()
		}
	}

	// 1. The host's block hashes.
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	lp := listingParser{onErr: hcancel}
	_, err = run(hctx, c, hashScript(o.Path, tool, o.HostJobs), &lp)
	rep.ListingBytes = lp.n
	if lp.err != nil {
		err = lp.err // the more precise reason
	}
	if err != nil {
		return nil, rep, fmt.Errorf("ssh image %s: hash: %w", where, err)
	}
	size, hashes, err := lp.result()
	if err != nil {
		return nil, rep, fmt.Errorf("ssh image %s: %w", where, err)
	}

	// 2. Decide per block: hole, unchanged, or fetch.
	vo := o.Version
	vo.HostHash = images.HashSHA256
	if vo.Source == "" {
		vo.Source = "ssh:" + o.Path
	}
	w, err := s.NewVersion(ctx, name, size, vo)
	if err != nil {
		return nil, rep, fmt.Errorf("ssh image %s: %w", where, err)
	}
	defer w.Abort()
	prev := w.Prev()
	var fetch []int64
	for i, h := range hashes {
		i := int64(i)
		n := blockLen(size, i)
		switch {
		case h == images.ZeroSHA256(n):
			err = w.PutZero(i)
		case prev != nil && prev.BlockLen(i) == n && hostHash(prev, i) == h:
			err = w.Reuse(i)
		default:
			fetch = append(fetch, i)
		}
		if err != nil {
			return nil, rep, fmt.Errorf("ssh image %s: %w", where, err)
		}
	}

	// 3. One stream of the changed blocks, verified against the listing.
	if afterListing != nil {
		afterListing()
	}
	if o.AfterListing != nil {
		o.AfterListing()
	}
	if len(fetch) > 0 {
		if err := fetchBlocks(ctx, c, o, w, size, hashes, fetch, &rep); err != nil {
			return nil, rep, fmt.Errorf("ssh image %s: %w", where, err)
		}
	}
	m, st, err := w.Commit(ctx)
	rep.Stats = st
	if err != nil {
		return nil, rep, fmt.Errorf("ssh image %s: %w", where, err)
	}
	log.Info("ssh image pulled", "image", name, "host", where, "version", m.ID, "size", size, "blocks", st.Blocks,
		"fetched", rep.Fetched, "zero", st.ZeroBlocks, "reused", st.Reused, "stored", st.Stored, "wire_data_bytes", rep.DataBytes)
	return m, rep, nil
}

func hostHash(m *images.Manifest, i int64) [32]byte {
	h, ok := m.HostHashOf(i)
	if !ok {
		return [32]byte{} // never equal to a real SHA-256
	}
	return h
}

func blockLen(size, i int64) int { return int(min(size-i*images.BlockSize, images.BlockSize)) }

// quote makes s one single-quoted sh word.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// hashScript prints "size N", one "<sha256>  -" line per 4 MiB block, and
// "size N" again (a size change during the read fails the pull), then
// "end <status of split>". Only POSIX sh and coreutils (split --filter,
// sha256sum, stat, head) plus util-linux blockdev for block devices.
//
// With jobs > 1 (0: the host's nproc, at most 4) and at least 8 blocks,
// the host hashes jobs contiguous ranges at once (dd skip/count | split),
// each into a temporary file (mktemp -d, removed on exit; at most 80
// bytes per block are kept), and prints them in order.
func hashScript(path, tool string, jobs int) string { return hashScriptJ(path, tool, -1, jobs) }

// hashScriptN is hashScript over the first limit bytes only (limit ≥ 0):
// the restore target may be a larger block device. A source shorter than
// limit fails.
func hashScriptN(path, tool string, limit int64) string { return hashScriptJ(path, tool, limit, 1) }

func hashScriptJ(path, tool string, limit int64, jobs int) string {
	bs := strconv.Itoa(images.BlockSize)
	read := `split -b ` + bs + ` --filter="$t" -- "$p"
r=$?`
	if jobs != 1 && limit < 0 {
		j := `j=$(nproc 2>/dev/null) || j=1
[ "$j" -le 4 ] 2>/dev/null || j=4`
		if jobs > 1 {
			j = `j=` + strconv.Itoa(min(jobs, 64))
		}
		read = j + `
n=$(( (a + ` + bs + ` - 1) / ` + bs + ` ))
if [ "$j" -le 1 ] || [ "$n" -lt 8 ]; then
` + read + `
else
d=$(mktemp -d) || exit 2
trap 'rm -rf "$d"' EXIT
per=$(( (n + j - 1) / j ))
i=0
while [ $i -lt $j ]; do
{ dd if="$p" bs=` + bs + ` skip=$((i * per)) count=$per iflag=fullblock 2>/dev/null | { split -b ` + bs + ` --filter="$t"; echo $? > "$d/$i.rc"; }; } | head -c $((per * 80)) > "$d/$i" &
i=$((i + 1))
done
wait
i=0
r=0
while [ $i -lt $j ]; do
cat "$d/$i" || r=2
[ "$(cat "$d/$i.rc" 2>/dev/null)" = 0 ] || r=1
i=$((i + 1))
done
fi`
	}
	show := `$a`
	check := ``
	if limit >= 0 {
		n := strconv.FormatInt(limit, 10)
		read = `head -c ` + n + ` -- "$p" | split -b ` + bs + ` --filter="$t" -- -
r=$?`
		show = n
		check = `[ "$a" -ge ` + n + ` ] || { echo "$p: $a bytes, fewer than ` + n + `" >&2; exit 2; }
`
	}
	return `p=` + quote(path) + `
t=` + quote(tool) + `
command -v "$t" >/dev/null 2>&1 || { echo "$t: not found on the host" >&2; exit 127; }
sz() { if [ -b "$p" ]; then blockdev --getsize64 "$p"; else stat -L -c %s -- "$p"; fi; }
[ -r "$p" ] || { echo "$p: not readable" >&2; exit 2; }
a=$(sz) || exit 2
` + check + `echo "size ` + show + `"
` + read + `
[ "$r" = 0 ] || { echo "block hashing with $t failed (status $r)" >&2; exit 3; }
b=$(sz) || exit 2
[ "$b" = "$a" ] || { echo "size $b"; exit 0; }
echo "size ` + show + `"
echo "end $r"
`
}

// listingParser validates the host's hash listing as it arrives.
// Everything in it is hostile: lines are at most 128 bytes, the size is
// bounded by images.MaxImageSize, at most one hash per block of that size
// is kept (so memory follows the declared size, not what the host
// sends), each hash is exactly 64 lowercase hex digits, and the listing
// must end with the same size and a zero status. After the first error
// the rest is discarded.
type listingParser struct {
	line   []byte
	state  int // 0: want size; 1: hashes; 2: want end; 3: done
	size   int64
	blocks int64
	hashes [][32]byte
	n      int64 // bytes seen
	err    error
	onErr  func() // called once at the first error (stops the session)
}

func (l *listingParser) Write(p []byte) (int, error) {
	n := len(p)
	l.n += int64(n)
	for len(p) > 0 && l.err == nil {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.line = append(l.line, p...)
			p = nil
		} else {
			l.line = append(l.line, p[:i]...)
			p = p[i+1:]
		}
		if len(l.line) > 128 {
			l.err = fmt.Errorf("%w: a line of the hash listing is longer than 128 bytes", ErrRemoteTool)
			break
		}
		if i >= 0 {
			l.err = l.parseLine(string(l.line))
			l.line = l.line[:0]
		}
	}
	if l.err != nil && l.onErr != nil {
		l.onErr()
		l.onErr = nil
	}
	return n, nil
}

func parseSize(l string) (int64, bool) {
	v, ok := strings.CutPrefix(l, "size ")
	if !ok || v == "" || len(v) > 16 || strings.TrimLeft(v, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n <= images.MaxImageSize
}

func (l *listingParser) parseLine(line string) error {
	odd := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrRemoteTool, fmt.Sprintf(format, a...))
	}
	switch l.state {
	case 0:
		size, ok := parseSize(line)
		if !ok {
			return odd("first line %.80q is not a size", line)
		}
		l.size, l.blocks, l.state = size, (size+images.BlockSize-1)/images.BlockSize, 1
		return nil
	case 1:
		if h, ok := strings.CutSuffix(line, "  -"); ok {
			if int64(len(l.hashes)) == l.blocks {
				return fmt.Errorf("%w: more than %d block hashes for %d bytes", images.ErrSourceChanged, l.blocks, l.size)
			}
			if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
				return odd("block %d: %.80q is not a sha256sum line", len(l.hashes), line)
			}
			var d [32]byte
			hex.Decode(d[:], []byte(h))
			l.hashes = append(l.hashes, d)
			return nil
		}
		size, ok := parseSize(line)
		if !ok {
			return odd("block %d: %.80q is not a sha256sum line", len(l.hashes), line)
		}
		if size != l.size {
			return fmt.Errorf("%w: size changed from %d to %d while hashing", images.ErrSourceChanged, l.size, size)
		}
		if int64(len(l.hashes)) != l.blocks {
			return fmt.Errorf("%w: %d block hashes for %d bytes (%d blocks): source changed or truncated read", images.ErrSourceChanged, len(l.hashes), l.size, l.blocks)
		}
		l.state = 2
		return nil
	case 2:
		if line != "end 0" {
			return odd("block hashing ended with %.80q", line)
		}
		l.state = 3
		return nil
	}
	return odd("unexpected %.80q after the end of the listing", line)
}

// result returns the parsed listing or the first error.
func (l *listingParser) result() (int64, [][32]byte, error) {
	switch {
	case l.err != nil:
		return 0, nil, l.err
	case len(l.line) > 0:
		return 0, nil, fmt.Errorf("%w: the hash listing does not end with a newline", ErrRemoteTool)
	case l.state != 3:
		return 0, nil, fmt.Errorf("%w: the hash listing is incomplete (%d bytes)", ErrRemoteTool, l.n)
	}
	return l.size, l.hashes, nil
}

// parseListing parses a whole listing (tests and fuzzing).
func parseListing(b []byte) (int64, [][32]byte, error) {
	var l listingParser
	l.Write(b)
	return l.result()
}

// fetchBlocks streams the blocks in fetch (ascending) with one dd per run
// of adjacent blocks, and stores them on parallel workers.
func fetchBlocks(ctx context.Context, c *ssh.Client, o Options, w *images.VersionWriter, size int64, hashes [][32]byte, fetch []int64, rep *Report) error {
	var ranges strings.Builder
	for k := 0; k < len(fetch); {
		j := k + 1
		for j < len(fetch) && fetch[j] == fetch[j-1]+1 {
			j++
		}
		fmt.Fprintf(&ranges, "%d %d\n", fetch[k], j-k)
		k = j
	}
	script := `p=` + quote(o.Path) + `
while read -r s n; do dd if="$p" bs=` + strconv.Itoa(images.BlockSize) + ` skip="$s" count="$n" iflag=fullblock 2>/dev/null || exit 3; done
`
	sess, err := c.NewSession()
	if err != nil {
		return fmt.Errorf("new session: %w", err)
	}
	defer sess.Close()
	sess.Stdin = strings.NewReader(ranges.String())
	var stderr bytes.Buffer
	sess.Stderr = &limitWriter{w: &stderr, n: 4096}
	out, err := sess.StdoutPipe()
	if err != nil {
		return err
	}
	if err := sess.Start(script); err != nil {
		return fmt.Errorf("start block stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()

	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	type job struct {
		i   int64
		buf *[]byte
	}
	bufs := make(chan *[]byte, workers+1)
	for range workers + 1 {
		b := make([]byte, images.BlockSize)
		bufs <- &b
	}
	jobs := make(chan job)
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(jobs)
		br := bufio.NewReaderSize(out, 256<<10)
		for _, i := range fetch {
			var bp *[]byte
			select {
			case bp = <-bufs:
			case <-gctx.Done():
				return gctx.Err()
			}
			buf := (*bp)[:blockLen(size, i)]
			n, err := io.ReadFull(br, buf)
			mu.Lock()
			rep.DataBytes += int64(n)
			mu.Unlock()
			if err != nil {
				return fmt.Errorf("block %d: got %d of %d bytes (%v): %w", i, n, len(buf), err, images.ErrSourceChanged)
			}
			select {
			case jobs <- job{i, bp}:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		if n, _ := io.CopyN(io.Discard, br, 1); n > 0 {
			return fmt.Errorf("%w: block stream is longer than the %d blocks asked for", ErrRemoteTool, len(fetch))
		}
		return nil
	})
	for range workers {
		g.Go(func() error {
			for j := range jobs {
				data := (*j.buf)[:blockLen(size, j.i)]
				h := sha256.Sum256(data)
				var host *[32]byte
				if h == hashes[j.i] {
					host = &h
				} else {
					mu.Lock()
					rep.ChangedDuringRead++
					mu.Unlock()
				}
				err := w.Put(gctx, j.i, data, host)
				bufs <- j.buf
				if err != nil {
					return err
				}
				mu.Lock()
				rep.Fetched++
				if o.Progress != nil {
					o.Progress(rep.Fetched, int64(len(fetch)), rep.DataBytes)
				}
				mu.Unlock()
			}
			return nil
		})
	}
	gerr := g.Wait()
	if gerr != nil {
		sess.Close() // the host may still be writing into a stream nobody reads
	}
	werr := sess.Wait()
	if gerr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return gerr
	}
	if werr != nil {
		return fmt.Errorf("%w: block stream: %v: %s", ErrRemoteTool, werr, clean(stderr.String()))
	}
	return nil
}

// run runs cmd on the host with stdout to out (discarded when nil) and
// returns its stderr; a non-zero exit is an error quoting stderr.
func run(ctx context.Context, c *ssh.Client, cmd string, out io.Writer) (string, error) {
	sess, err := c.NewSession()
	if err != nil {
		return "", fmt.Errorf("new session: %w", err)
	}
	defer sess.Close()
	var stderr bytes.Buffer
	sess.Stderr = &limitWriter{w: &stderr, n: 4096}
	if out == nil {
		out = io.Discard
	}
	sess.Stdout = out
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	err = sess.Run(cmd)
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	if lw, ok := out.(*limitWriter); ok && lw.over {
		return "", fmt.Errorf("%w: output is larger than expected", ErrRemoteTool)
	}
	if err != nil {
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("%w: exit status %d: %s", ErrRemoteTool, ee.ExitStatus(), clean(stderr.String()))
		}
		return "", err
	}
	return stderr.String(), nil
}

// clean makes remote text safe for one log line.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// limitWriter keeps the first n bytes and remembers that more came.
type limitWriter struct {
	w    io.Writer
	n    int64
	over bool
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		l.over = l.over || len(p) > 0
		return len(p), nil
	}
	k := min(int64(len(p)), l.n)
	l.n -= k
	l.w.Write(p[:k])
	if k < int64(len(p)) {
		l.over = true
	}
	return len(p), nil
}
