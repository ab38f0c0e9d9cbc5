package rsync_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"net"
	"strconv"
	"strings"
	"testing"

	//lint:ignore SA1019 rsync protocol 27 mandates MD4 block and file checksums
	"golang.org/x/crypto/md4"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/pullertest"
	"github.com/cairn-backup/cairn/pullers/rsync"
)

const fakeSeed = 0x1234567

// stream builds what a sender writes after the checksum seed.
type stream struct{ bytes.Buffer }

func (s *stream) i32(v int32) *stream {
	binary.Write(&s.Buffer, binary.LittleEndian, v)
	return s
}

// entry writes a protocol-27 file-list entry with every field present.
func (s *stream) entry(name string, size int64, mode uint32, target string) *stream {
	s.WriteByte(0x40) // XMIT_LONG_NAME
	s.i32(int32(len(name)))
	s.WriteString(name)
	if size > 1<<31-1 || size < 0 {
		s.i32(-1)
		binary.Write(&s.Buffer, binary.LittleEndian, size)
	} else {
		s.i32(int32(size))
	}
	s.i32(1700000000).i32(int32(mode)).i32(0).i32(0)
	if mode&0o170000 == 0o100000 {
		s.i32(1).i32(int32(len(s.Bytes()))) // -H: device, inode
	}
	if mode&0o170000 == 0o120000 {
		s.i32(int32(len(target)))
		s.WriteString(target)
	}
	return s
}

// end writes the list end, empty uid and gid name lists and io_error.
func (s *stream) end() *stream { s.WriteByte(0); s.i32(0).i32(0).i32(0); return s }

// file answers a request with no basis: literal data and its MD4.
func (s *stream) file(ndx int32, data []byte) *stream {
	s.i32(ndx).i32(0).i32(0).i32(0).i32(0)
	if len(data) > 0 {
		s.i32(int32(len(data)))
		s.Write(data)
	}
	s.i32(0)
	h := md4.New()
	binary.Write(h, binary.LittleEndian, int32(fakeSeed))
	h.Write(data)
	s.Write(h.Sum(nil))
	return s
}

func (s *stream) done() *stream {
	s.i32(-1).i32(-1)
	return s.i32(0).i32(0).i32(0)
}

// fakeDaemon serves one scripted session per connection: the greeting,
// the seed, then body (multiplexed, unless raw).
func fakeDaemon(t *testing.T, body []byte, raw bool) pullers.Source {
	return fakeDaemonStall(t, body, raw, false)
}

// fakeDaemonStall: with stall, the connection stays open after body.
func fakeDaemonStall(t *testing.T, body []byte, raw, stall bool) pullers.Source {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				// A pre-3.0 daemon: the puller falls back to protocol 27.
				io.WriteString(c, "@RSYNCD: 29.0\n")
				for range 2 { // version, module
					br.ReadString('\n')
				}
				io.WriteString(c, "@RSYNCD: OK\n")
				for {
					l, err := br.ReadString('\n')
					if err != nil || l == "\n" {
						break
					}
				}
				binary.Write(c, binary.LittleEndian, int32(fakeSeed))
				for { // filter list
					var n int32
					if binary.Read(br, binary.LittleEndian, &n) != nil || n <= 0 {
						break
					}
					io.CopyN(io.Discard, br, int64(n))
				}
				if raw {
					c.Write(body)
				} else {
					for b := body; len(b) > 0; {
						n := min(len(b), 1000)
						binary.Write(c, binary.LittleEndian, uint32(7<<24|n))
						c.Write(b[:n])
						b = b[n:]
					}
				}
				if !stall {
					c.(*net.TCPConn).CloseWrite()
				}
				io.Copy(io.Discard, br)
			}()
		}
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	return pullers.Source{Method: rsync.Method, Name: "src", Path: "/",
		Options: map[string]string{"host": host, "port": port, "module": "m"}}
}

const dir, reg, lnk = 0o40755, 0o100644, 0o120777

func TestFakeSender(t *testing.T) {
	good := func() *stream {
		s := &stream{}
		return s.entry(".", 0, dir, "").entry("a", 5, reg, "").entry("d", 0, dir, "").entry("d/b", 3, reg, "").
			entry("l", 0, lnk, "../../etc/passwd")
	}
	for _, tc := range []struct {
		name string
		body []byte
		raw  bool
		want string // in the error; "" means the pull succeeds
	}{
		{"good", good().end().file(1, []byte("hello")).file(3, []byte("bee")).done().Bytes(), false, ""},
		{"dotdot", new(stream).entry(".", 0, dir, "").entry("../evil", 5, reg, "").end().Bytes(), false, `".." element`},
		{"dotdot inside", new(stream).entry(".", 0, dir, "").entry("d/../../x", 5, reg, "").end().Bytes(), false, `".." element`},
		{"absolute", new(stream).entry(".", 0, dir, "").entry("/etc/passwd", 5, reg, "").end().Bytes(), false, "absolute name"},
		{"nul", new(stream).entry(".", 0, dir, "").entry("a\x00b", 5, reg, "").end().Bytes(), false, "NUL"},
		{"no parent", new(stream).entry(".", 0, dir, "").entry("x/y", 5, reg, "").end().Bytes(), false, "without its directory"},
		{"parent is a file", new(stream).entry(".", 0, dir, "").entry("x", 1, reg, "").entry("x/y", 5, reg, "").end().Bytes(), false, "without its directory"},
		{"no root", new(stream).entry("a", 5, reg, "").end().Bytes(), false, "no root"},
		{"negative size", new(stream).entry(".", 0, dir, "").entry("a", -5, reg, "").end().Bytes(), false, "size -5"},
		{"huge size", new(stream).entry(".", 0, dir, "").entry("a", 1<<60, reg, "").end().Bytes(), false, "size 1152921504606846976"},
		{"bad type", new(stream).entry(".", 0, dir, "").entry("a", 1, 0o7777, "").end().Bytes(), false, "unknown file type"},
		{"too many", func() []byte {
			s := new(stream).entry(".", 0, dir, "")
			for i := range 20 {
				s.entry("f"+strconv.Itoa(i), 0, reg, "")
			}
			return s.end().Bytes()
		}(), false, "longer than 10 entries"},
		{"long name", func() []byte {
			s := &stream{}
			s.WriteByte(0x40)
			s.i32(1 << 30)
			return s.Bytes()
		}(), false, "name length"},
		{"truncated list", good().Bytes()[:30], false, "connection closed"},
		{"truncated data", good().end().file(1, []byte("hello")).Bytes()[:120], false, "connection closed"},
		{"garbage header", []byte("\x01\x02\x03\x04garbage garbage"), true, "multiplex header"},
		{"garbage list", bytes.Repeat([]byte{0xff}, 64), false, ""},
		{"unrequested file", good().end().file(0, []byte("x")).Bytes(), false, "not asked for"},
		{"huge literal", func() []byte {
			s := good().end()
			s.i32(1).i32(0).i32(0).i32(0).i32(0).i32(1 << 30)
			return s.Bytes()
		}(), false, "literal of"},
		{"block without basis", func() []byte {
			s := good().end()
			s.i32(1).i32(0).i32(0).i32(0).i32(0).i32(-1)
			return s.Bytes()
		}(), false, "block 0 of 0"},
		{"changed head", func() []byte {
			s := good().end()
			s.i32(1).i32(5).i32(700).i32(16).i32(0)
			return s.Bytes()
		}(), false, "header came back changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := fakeDaemon(t, tc.body, tc.raw)
			p := pullertest.NewPool(t)
			pl := rsync.New()
			pl.MaxEntries = 10
			m, err := pullOnce(t, p, pl, src, nil)
			switch {
			case tc.name == "garbage list":
				if err == nil {
					t.Fatal("garbage accepted")
				}
			case tc.want == "":
				if err != nil {
					t.Fatal(err)
				}
			case err == nil:
				t.Fatalf("pull succeeded (%d entries), want an error with %q", m.Files, tc.want)
			case !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q, want %q", err, tc.want)
			}
			t.Log(err)
			if err != nil && !errors.Is(err, rsync.ErrProtocol) && tc.name != "garbage list" {
				t.Errorf("error does not wrap ErrProtocol: %v", err)
			}
			if err == nil {
				sfs := p.SnapshotFS(context.Background(), m)
				if b, _ := fs.ReadFile(sfs, "a"); string(b) != "hello" {
					t.Errorf("a = %q", b)
				}
				if b, _ := fs.ReadFile(sfs, "d/b"); string(b) != "bee" {
					t.Errorf("d/b = %q", b)
				}
				if l, _ := fs.ReadLink(sfs, "l"); l != "../../etc/passwd" {
					t.Errorf("l -> %q", l)
				}
			}
			rep, cerr := p.Check(context.Background(), pool.CheckOptions{ReadData: true})
			if cerr != nil || !rep.OK() {
				t.Fatalf("pool check: %v %s", cerr, rep.String())
			}
		})
	}
}

// TestFakeSenderPerFile: a wrong checksum and a file the sender skipped
// are per-file errors; the rest is stored.
func TestFakeSenderPerFile(t *testing.T) {
	s := new(stream).entry(".", 0, dir, "").entry("a", 5, reg, "").entry("b", 3, reg, "").entry("c", 2, reg, "").end()
	s.file(1, []byte("hello"))
	// b (2): bad checksum.
	s.i32(2).i32(0).i32(0).i32(0).i32(0).i32(3)
	s.WriteString("bee")
	s.i32(0)
	s.Write(make([]byte, 16))
	// c (3) is never sent.
	s.done()
	src := fakeDaemon(t, s.Bytes(), false)
	p := pullertest.NewPool(t)
	m, err := pullOnce(t, p, rsync.New(), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.ErrorCount != 2 || !strings.HasPrefix(m.Errors[0], "b: ") || !strings.Contains(m.Errors[0], "checksum") ||
		!strings.HasPrefix(m.Errors[1], "c: ") {
		t.Fatalf("errors %q", m.Errors)
	}
	sfs := p.SnapshotFS(context.Background(), m)
	if b, _ := fs.ReadFile(sfs, "a"); string(b) != "hello" {
		t.Errorf("a = %q", b)
	}
	if _, err := fs.Stat(sfs, "b"); err == nil {
		t.Error("b with a bad checksum is in the snapshot")
	}
}

// TestStall: a sender that stops talking mid-stream fails the pull after
// io_timeout instead of hanging it.
func TestStall(t *testing.T) {
	s := new(stream).entry(".", 0, dir, "").entry("a", 5, reg, "")
	src := fakeDaemonStall(t, s.Bytes(), false, true)
	src.Options["io_timeout"] = "300ms"
	_, err := pullOnce(t, pullertest.NewPool(t), rsync.New(), src, nil)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("stalled server: %v, want a timeout", err)
	}
	t.Log(err)
}
