package rsync

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrProtocol marks a malformed or unexpected message from the server.
var ErrProtocol = errors.New("rsync protocol error")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// Limits on what the server may send.
const (
	maxPath      = 4096     // bytes in one path (PATH_MAX)
	maxLink      = 4096     // bytes in a symlink target
	maxMsg       = 1 << 16  // bytes in one out-of-band message
	maxLiteral   = 1 << 20  // bytes in one literal token
	maxFileSize  = 1 << 50  // a file's size
	maxMessages  = 1 << 16  // out-of-band messages kept for error reports
	mplexBase    = 7        // multiplex tags are message codes + 7
	msgData      = 0        // MSG_DATA
	msgErrorXfer = 1        // MSG_ERROR_XFER
	msgInfo      = 2        // MSG_INFO
	msgError     = 3        // MSG_ERROR
	msgWarning   = 4        // MSG_WARNING
	msgLog       = 6        // MSG_LOG
	msgIOError   = 22       // MSG_IO_ERROR
	msgNoop      = 42       // MSG_NOOP
	chunkSize    = 32 << 10 // rsync's literal chunk
)

// rawReader reads the little-endian integers of the rsync protocol.
type rawReader struct {
	r io.Reader
	b [8]byte
	x [16]byte // scratch for varints (a local array would escape)
}

func (r *rawReader) full(p []byte, what string) error {
	if _, err := io.ReadFull(r.r, p); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: connection closed while reading %s", ErrProtocol, what)
		}
		return fmt.Errorf("read %s: %w", what, err)
	}
	return nil
}

func (r *rawReader) byte1(what string) (byte, error) {
	if err := r.full(r.b[:1], what); err != nil {
		return 0, err
	}
	return r.b[0], nil
}

func (r *rawReader) int32(what string) (int32, error) {
	if err := r.full(r.b[:4], what); err != nil {
		return 0, err
	}
	return int32(binary.LittleEndian.Uint32(r.b[:4])), nil
}

// longint is read_longint: an int32, or -1 followed by an int64.
func (r *rawReader) longint(what string) (int64, error) {
	v, err := r.int32(what)
	if err != nil || v != -1 {
		return int64(v), err
	}
	if err := r.full(r.b[:8], what); err != nil {
		return 0, err
	}
	return int64(binary.LittleEndian.Uint64(r.b[:8])), nil
}

// demux reads the server's multiplexed stream: data messages are
// returned by Read, others are kept as text (errors and warnings).
type demux struct {
	r     *bufio.Reader
	left  int // data bytes left in the current message
	msgs  []string
	ioErr bool
	hdr   [4]byte
}

// newDemux reads r; a *bufio.Reader (the session's) is read directly,
// not through a second buffer.
func newDemux(r io.Reader) *demux {
	if br, ok := r.(*bufio.Reader); ok {
		return &demux{r: br}
	}
	return &demux{r: bufio.NewReaderSize(r, 256<<10)}
}

func (d *demux) Read(p []byte) (int, error) {
	for d.left == 0 {
		if _, err := io.ReadFull(d.r, d.hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, d.closed()
			}
			return 0, err
		}
		h := binary.LittleEndian.Uint32(d.hdr[:])
		tag, n := int(h>>24)-mplexBase, int(h&0xffffff)
		if tag < 0 {
			return 0, protoErr("bad multiplex header %08x", h)
		}
		if tag == msgData {
			d.left = n
			continue
		}
		if n > maxMsg {
			return 0, protoErr("message %d of %d bytes", tag, n)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(d.r, buf); err != nil {
			return 0, d.closed()
		}
		switch tag {
		case msgErrorXfer, msgInfo, msgError, msgWarning, msgLog:
			if len(d.msgs) < maxMessages {
				d.msgs = append(d.msgs, strings.TrimSpace(string(buf)))
			}
		case msgIOError:
			d.ioErr = true
		case msgNoop:
		default:
			// Later protocols' messages carry nothing this receiver needs.
		}
	}
	if len(p) > d.left {
		p = p[:d.left]
	}
	n, err := d.r.Read(p)
	d.left -= n
	if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		err = d.closed()
	}
	return n, err
}

func (d *demux) closed() error {
	if m := d.lastError(); m != "" {
		return fmt.Errorf("%w: connection closed; the server said: %s", ErrProtocol, m)
	}
	return fmt.Errorf("%w: connection closed", ErrProtocol)
}

func (d *demux) lastError() string {
	if len(d.msgs) == 0 {
		return ""
	}
	return d.msgs[len(d.msgs)-1]
}

// messagesAbout returns the server's messages that name rel.
func (d *demux) messagesAbout(rel string) string {
	var out []string
	for _, m := range d.msgs {
		if strings.Contains(m, "/"+rel+"\"") || strings.Contains(m, "\""+rel+"\"") {
			out = append(out, m)
		}
	}
	return strings.Join(out, "; ")
}
