package sshsrc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/images"
)

// RemoteHashes hashes path on the host in 4 MiB blocks with the same
// stock tools and checks as Pull, and returns its size and block hashes.
// It fails with ErrRemoteTool when the tools are missing or their output
// is odd, and with images.ErrSourceChanged when the size changed while
// hashing.
func RemoteHashes(ctx context.Context, c *ssh.Client, path string) (int64, [][32]byte, error) {
	return remoteHashes(ctx, c, path, -1)
}

// remoteHashes is RemoteHashes of the first limit bytes (all: -1).
func remoteHashes(ctx context.Context, c *ssh.Client, path string, limit int64) (int64, [][32]byte, error) {
	if !strings.HasPrefix(path, "/") || strings.ContainsFunc(path, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return 0, nil, fmt.Errorf("path %q must be absolute, without control characters", path)
	}
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	lp := listingParser{onErr: hcancel}
	_, err := run(hctx, c, hashScriptN(path, hashTool, limit), &lp)
	if lp.err != nil {
		err = lp.err
	}
	if err != nil {
		return 0, nil, fmt.Errorf("hash %s: %w", path, err)
	}
	size, hashes, err := lp.result()
	if err != nil {
		return 0, nil, fmt.Errorf("hash %s: %w", path, err)
	}
	return size, hashes, nil
}

// RestoreOptions say where a restore writes.
type RestoreOptions struct {
	// Path is the absolute path of the target file or block device.
	Path string
	// Device: Path is a block device at least as large as the image; it
	// is never created or resized. Otherwise Path is a regular file,
	// created if missing and set to the image's size.
	Device bool
	// Progress, when set, is called after each written block.
	Progress func(written, toWrite int64)
}

// RestoreReport says what a restore did.
type RestoreReport struct {
	Blocks       int64 // blocks in the image
	Written      int64 // blocks that differed and were written
	WrittenBytes int64 // their bytes (what crossed the wire)
	Verified     bool  // the target was hashed again and matches
}

// WantHashes returns the SHA-256 of every block of im: recorded host
// hashes where the manifest has them, the zero hash for holes, else the
// hash of the block read from the pool.
func WantHashes(ctx context.Context, im *images.Image) ([][32]byte, error) {
	m := im.Manifest()
	n := m.NumBlocks()
	out := make([][32]byte, n)
	var buf []byte
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if _, zero, _ := m.Block(i); zero {
			out[i] = images.ZeroSHA256(m.BlockLen(i))
			continue
		}
		if h, ok := m.HostHashOf(i); ok {
			out[i] = h
			continue
		}
		if buf == nil {
			buf = make([]byte, images.BlockSize)
		}
		b := buf[:m.BlockLen(i)]
		if _, err := im.ReadAtContext(ctx, b, i*images.BlockSize); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		out[i] = sha256.Sum256(b)
	}
	return out, nil
}

// Restore writes image im to o.Path on the host behind c, writing only
// the blocks whose remote SHA-256 (computed with the same stock tools as
// Pull) differs from the image's, in one dd stream; then hashes the
// target again and fails unless every block matches.
func Restore(ctx context.Context, c *ssh.Client, im *images.Image, o RestoreOptions) (RestoreReport, error) {
	m := im.Manifest()
	rep := RestoreReport{Blocks: m.NumBlocks()}
	where := c.RemoteAddr().String() + ":" + o.Path
	if !strings.HasPrefix(o.Path, "/") || strings.ContainsFunc(o.Path, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return rep, fmt.Errorf("restore to %s: path %q must be absolute, without control characters", where, o.Path)
	}
	size := strconv.FormatInt(m.Size, 10)
	prep := `p=` + quote(o.Path) + `
[ -e "$p" ] || : > "$p" || exit 2
[ -f "$p" ] || { echo "$p: not a regular file" >&2; exit 2; }
truncate -s ` + size + ` -- "$p"
`
	if o.Device {
		prep = `p=` + quote(o.Path) + `
[ -b "$p" ] || { echo "$p: not a block device" >&2; exit 2; }
s=$(blockdev --getsize64 "$p") || exit 2
[ "$s" -ge ` + size + ` ] || { echo "$p: device has $s bytes, the image ` + size + `" >&2; exit 2; }
`
	}
	if _, err := run(ctx, c, prep, nil); err != nil {
		return rep, fmt.Errorf("restore to %s: prepare: %w", where, err)
	}
	want, err := WantHashes(ctx, im)
	if err != nil {
		return rep, fmt.Errorf("restore to %s: %w", where, err)
	}
	_, have, err := remoteHashes(ctx, c, o.Path, m.Size)
	if err != nil {
		return rep, fmt.Errorf("restore to %s: %w", where, err)
	}
	var todo []int64
	for i := range want {
		if i >= len(have) || have[i] != want[i] {
			todo = append(todo, int64(i))
		}
	}
	if len(todo) > 0 {
		n, err := writeBlocks(ctx, c, im, o, todo)
		rep.Written, rep.WrittenBytes = int64(len(todo)), n
		if err != nil {
			return rep, fmt.Errorf("restore to %s: %w", where, err)
		}
	}
	// Verify: the target now hashes like the image.
	_, have, err = remoteHashes(ctx, c, o.Path, m.Size)
	if err != nil {
		return rep, fmt.Errorf("restore to %s: verify: %w", where, err)
	}
	for i := range want {
		if i >= len(have) || have[i] != want[i] {
			return rep, fmt.Errorf("restore to %s: verify: block %d differs after writing", where, i)
		}
	}
	rep.Verified = true
	return rep, nil
}

// writeBlocks streams the blocks in todo (ascending): each run of
// adjacent blocks is a line "start count" followed by its bytes; the
// host's sh reads the line (byte by byte from a pipe) and one dd writes
// the run in place.
func writeBlocks(ctx context.Context, c *ssh.Client, im *images.Image, o RestoreOptions, todo []int64) (int64, error) {
	script := `p=` + quote(o.Path) + `
while read -r s n; do dd of="$p" bs=` + strconv.Itoa(images.BlockSize) + ` seek="$s" count="$n" iflag=fullblock conv=notrunc 2>/dev/null || exit 3; done
`
	sess, err := c.NewSession()
	if err != nil {
		return 0, fmt.Errorf("new session: %w", err)
	}
	defer sess.Close()
	in, err := sess.StdinPipe()
	if err != nil {
		return 0, err
	}
	var stderr strings.Builder
	sess.Stderr = &limitWriter{w: &stderr, n: 4096}
	if err := sess.Start(script); err != nil {
		return 0, fmt.Errorf("start writer: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	m := im.Manifest()
	var sent, done int64
	buf := make([]byte, images.BlockSize)
	werr := func() error {
		for k := 0; k < len(todo); {
			j := k + 1
			for j < len(todo) && todo[j] == todo[j-1]+1 {
				j++
			}
			if _, err := fmt.Fprintf(in, "%d %d\n", todo[k], j-k); err != nil {
				return err
			}
			for _, i := range todo[k:j] {
				b := buf[:m.BlockLen(i)]
				if _, err := im.ReadAtContext(ctx, b, i*images.BlockSize); err != nil && !errors.Is(err, io.EOF) {
					return err
				}
				if _, err := in.Write(b); err != nil {
					return err
				}
				sent += int64(len(b))
				done++
				if o.Progress != nil {
					o.Progress(done, int64(len(todo)))
				}
			}
			k = j
		}
		return in.Close()
	}()
	if werr != nil {
		sess.Close()
	}
	err = sess.Wait()
	if ctx.Err() != nil {
		return sent, ctx.Err()
	}
	if werr != nil {
		return sent, fmt.Errorf("write blocks: %w", werr)
	}
	if err != nil {
		return sent, fmt.Errorf("%w: block writer: %v: %s", ErrRemoteTool, err, clean(stderr.String()))
	}
	return sent, nil
}

// RemoteSize returns the size of a file or block device on the host and
// whether it is a block device (stat or blockdev), for connection tests.
func RemoteSize(ctx context.Context, c *ssh.Client, path string) (int64, bool, error) {
	if !strings.HasPrefix(path, "/") || strings.ContainsFunc(path, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return 0, false, fmt.Errorf("path %q must be absolute, without control characters", path)
	}
	var out strings.Builder
	_, err := run(ctx, c, `p=`+quote(path)+`
[ -r "$p" ] || { echo "$p: not readable" >&2; exit 2; }
if [ -b "$p" ]; then echo "dev $(blockdev --getsize64 "$p")"; else echo "file $(stat -L -c %s -- "$p")"; fi
`, &limitWriter{w: &out, n: 128})
	if err != nil {
		return 0, false, fmt.Errorf("size of %s: %w", path, err)
	}
	kind, n, _ := strings.Cut(strings.TrimSuffix(out.String(), "\n"), " ")
	size, ok := parseSize("size " + n)
	if !ok || (kind != "dev" && kind != "file") {
		return 0, false, fmt.Errorf("size of %s: %w: %.80q", path, ErrRemoteTool, out.String())
	}
	return size, kind == "dev", nil
}
