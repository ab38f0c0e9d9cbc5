package hostiletest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"

	//lint:ignore SA1019 rsync protocol 27 mandates MD4 file checksums
	"golang.org/x/crypto/md4"
)

// RsyncSeed is the checksum seed the scripted sender announces.
const RsyncSeed = 0x5eed

// An RsyncEntry is one file-list entry the scripted sender announces, and
// what it sends when the file is asked for.
type RsyncEntry struct {
	Name   string // sent as is
	Mode   uint32 // with the type bits
	Size   int64  // announced
	Data   []byte // sent
	Target string
	// BadSum sends a whole-file checksum that does not match Data.
	BadSum bool
}

const (
	rsDir = 0o40755
	rsReg = 0o100644
	rsLnk = 0o120777
)

// RsyncEntries flattens a tree into the sender's list: "." for the root,
// then every node under its path (names joined with "/", verbatim).
func RsyncEntries(root Node) []RsyncEntry {
	out := []RsyncEntry{{Name: ".", Mode: rsDir}}
	var walk func(prefix string, n Node)
	walk = func(prefix string, n Node) {
		for _, k := range n.Kids {
			name := prefix + k.Name
			switch {
			case k.Dir:
				out = append(out, RsyncEntry{Name: name, Mode: rsDir})
				walk(name+"/", k)
			case k.Target != "":
				out = append(out, RsyncEntry{Name: name, Mode: rsLnk, Target: k.Target})
			default:
				out = append(out, RsyncEntry{Name: name, Mode: rsReg, Size: k.size(), Data: k.Data})
			}
		}
	}
	walk("", root)
	return out
}

// RsyncScript is what the sender writes after the checksum seed (before
// multiplexing): the file list, empty owner lists, the io-error flag,
// then every regular file answered in the receiver's walk order (depth
// first, names bytewise), then the end of both phases and statistics.
// Index numbers are positions in the bytewise-sorted list, as rsync sorts.
func RsyncScript(es []RsyncEntry) []byte {
	var b bytes.Buffer
	i32 := func(v int32) { binary.Write(&b, binary.LittleEndian, v) }
	for _, e := range es {
		b.WriteByte(0x40) // XMIT_LONG_NAME: every other field present
		i32(int32(len(e.Name)))
		b.WriteString(e.Name)
		if e.Size > 1<<31-1 || e.Size < 0 {
			i32(-1)
			binary.Write(&b, binary.LittleEndian, e.Size)
		} else {
			i32(int32(e.Size))
		}
		i32(1700000000)
		i32(int32(e.Mode))
		i32(0) // uid
		i32(0) // gid
		switch e.Mode & 0o170000 {
		case rsReg & 0o170000:
			i32(1) // -H: device
			i32(int32(b.Len()))
		case rsLnk & 0o170000:
			i32(int32(len(e.Target)))
			b.WriteString(e.Target)
		}
	}
	b.WriteByte(0)
	i32(0) // no user names
	i32(0) // no group names
	i32(0) // io_error
	sorted := make([]string, len(es))
	for i, e := range es {
		sorted[i] = strings.TrimPrefix(e.Name, "./")
	}
	sort.Strings(sorted)
	ndx := func(name string) int32 { return int32(sort.SearchStrings(sorted, name)) }
	walk := make([]RsyncEntry, 0, len(es))
	for _, e := range es {
		if e.Mode&0o170000 == rsReg&0o170000 {
			walk = append(walk, e)
		}
	}
	sort.SliceStable(walk, func(a, c int) bool {
		x, y := strings.Split(walk[a].Name, "/"), strings.Split(walk[c].Name, "/")
		for i := 0; i < len(x) && i < len(y); i++ {
			if x[i] != y[i] {
				return x[i] < y[i]
			}
		}
		return len(x) < len(y)
	})
	for _, e := range walk {
		i32(ndx(e.Name))
		i32(0) // sum head: no blocks
		i32(0)
		i32(0)
		i32(0)
		if len(e.Data) > 0 {
			i32(int32(len(e.Data)))
			b.Write(e.Data)
		}
		i32(0)
		h := md4.New()
		binary.Write(h, binary.LittleEndian, int32(RsyncSeed))
		h.Write(e.Data)
		sum := h.Sum(nil)
		if e.BadSum {
			sum[0] ^= 0xff
		}
		b.Write(sum)
	}
	i32(-1) // end of phase 1
	i32(-1) // end of phase 2
	i32(0)  // statistics: read, written, size
	i32(0)
	i32(0)
	return b.Bytes()
}

// An RsyncSender plays the sender side of a protocol-27 session, over an
// rsync daemon socket (StartRsyncd) or an SSH exec channel (Server.Rsync).
// Body writes what follows the checksum seed; Raw sends it without the
// multiplexing frames.
type RsyncSender struct {
	Body func(w io.Writer) error
	Raw  bool
}

// Script returns a sender of a fixed script.
func Script(b []byte) *RsyncSender {
	return &RsyncSender{Body: func(w io.Writer) error { _, err := w.Write(b); return err }}
}

// mux frames what is written as MSG_DATA messages of at most 4 KiB.
type mux struct{ w io.Writer }

func (m mux) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 4096)
		var h [4]byte
		binary.LittleEndian.PutUint32(h[:], uint32(7<<24|k))
		if _, err := m.w.Write(h[:]); err != nil {
			return n, err
		}
		if _, err := m.w.Write(p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// serve runs the session after the version exchange: the seed, the
// receiver's filter list, then the body. Whatever the receiver sends
// after the filters (its requests) is read and dropped until it ends.
func (s *RsyncSender) serve(r *bufio.Reader, w io.Writer) {
	drained := make(chan struct{})
	defer func() { <-drained }()
	s.send(r, w, drained)
}

func (s *RsyncSender) send(r *bufio.Reader, w io.Writer, drained chan struct{}) {
	binary.Write(w, binary.LittleEndian, int32(RsyncSeed))
	for {
		var n int32
		if binary.Read(r, binary.LittleEndian, &n) != nil || n <= 0 || n > 1<<20 {
			break
		}
		if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
			close(drained)
			return
		}
	}
	go func() { io.Copy(io.Discard, r); close(drained) }()
	bw := bufio.NewWriterSize(w, 64<<10)
	var out io.Writer = mux{bw}
	if s.Raw {
		out = bw
	}
	if s.Body(out) == nil {
		bw.Flush()
	}
	if cw, ok := w.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// Rsyncd is a hostile rsync daemon: it greets with protocol 27, accepts
// any module and argument list, and plays Sender on every connection.
type Rsyncd struct {
	Addr   string
	Sender *RsyncSender

	mu   sync.Mutex
	args []string
}

// Args returns the module lines and arguments the daemon received.
func (d *Rsyncd) Args() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.args...)
}

func (d *Rsyncd) record(line string) {
	d.mu.Lock()
	d.args = append(d.args, strings.TrimSuffix(line, "\n"))
	d.mu.Unlock()
}

// StartRsyncd serves sender until the test ends.
func StartRsyncd(t testing.TB, sender *RsyncSender) *Rsyncd {
	t.Helper()
	d := &Rsyncd{Sender: sender}
	d.Addr = listen(t, func(c net.Conn, _ func(net.Conn)) {
		br := bufio.NewReader(c)
		io.WriteString(c, "@RSYNCD: 27.0\n")
		for range 2 { // version, module
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			d.record(l)
		}
		io.WriteString(c, "@RSYNCD: OK\n")
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if l == "\n" {
				break
			}
			d.record(l)
		}
		d.Sender.serve(br, c)
	})
	return d
}

// serveRsyncExec answers "rsync --server --sender …" on an SSH channel:
// version 27 both ways, then the sender.
func serveRsyncExec(ch io.ReadWriter, s *RsyncSender) {
	br := bufio.NewReader(ch)
	binary.Write(ch, binary.LittleEndian, int32(27))
	var v int32
	if binary.Read(br, binary.LittleEndian, &v) != nil {
		return
	}
	s.serve(br, ch)
}
