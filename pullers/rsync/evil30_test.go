package rsync_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/pullertest"
	"github.com/cairn-backup/cairn/pullers/rsync"
)

// Compat flags a protocol-31 sender announces in these tests: varint
// flags with checksum negotiation, the seed fix, names of id 0.
const (
	cfVarint = 1 << 7
	cfSeed   = 1 << 5
	cfID0    = 1 << 8
	compat31 = cfVarint | cfSeed | cfID0
)

// s30 builds what a protocol-31 sender writes after the seed.
type s30 struct {
	bytes.Buffer
	ndx    *rsync.NdxEnc
	varint bool // flags as varints (CF_VARINT_FLIST_FLAGS)
	noID0  bool // no names of id 0 (without CF_ID0_NAMES)
}

func new30() *s30 { return &s30{ndx: rsync.NewNdxEnc(), varint: true} }

func (s *s30) v(x int32) *s30 { s.Write(rsync.AppendVarint(nil, x)); return s }

func (s *s30) i32(x int32) *s30 {
	binary.Write(&s.Buffer, binary.LittleEndian, x)
	return s
}

func (s *s30) flags(f int32) *s30 {
	if s.varint {
		return s.v(f)
	}
	s.WriteByte(byte(f))
	if f&^0xff != 0 {
		s.WriteByte(byte(f >> 8))
	}
	return s
}

// entry writes a file-list entry with every field present (long name);
// more writes the ACL and xattr sections the test negotiated.
func (s *s30) entry(name string, size int64, mode uint32, target string, more ...func(*s30)) *s30 {
	s.flags(0x40)
	s.v(int32(len(name)))
	s.WriteString(name)
	s.Write(rsync.AppendVarlong(nil, size, 3))
	s.Write(rsync.AppendVarlong(nil, 1700000000, 4))
	s.i32(int32(mode)).v(0).v(0)
	if mode&0o170000 == 0o120000 {
		s.v(int32(len(target)))
		s.WriteString(target)
	}
	for _, m := range more {
		m(s)
	}
	return s
}

// xattrs writes a new xattr set: name, value pairs; values over 32 bytes
// go as their MD5.
func xattrs(kv ...string) func(*s30) {
	return func(s *s30) {
		s.v(0).v(int32(len(kv) / 2))
		for i := 0; i < len(kv); i += 2 {
			s.v(int32(len(kv[i]) + 1)).v(int32(len(kv[i+1])))
			s.WriteString(kv[i] + "\x00")
			if len(kv[i+1]) > 32 {
				sum := md5.Sum([]byte(kv[i+1]))
				s.Write(sum[:])
			} else {
				s.WriteString(kv[i+1])
			}
		}
	}
}

// xref refers to the n-th set sent (from 1).
func xref(n int32) func(*s30) { return func(s *s30) { s.v(n) } }

func raw30(b ...byte) func(*s30) { return func(s *s30) { s.Write(b) } }

// end writes the list end (no I/O error) and empty id lists with the
// names of id 0.
func (s *s30) end() *s30 {
	if s.varint {
		s.v(0).v(0)
	} else {
		s.WriteByte(0)
	}
	for range 2 {
		s.v(0)
		if !s.noID0 {
			s.WriteString("\x04root")
		}
	}
	return s
}

// file answers a transfer request with no basis: literal data and MD5;
// xv are the long xattr values sent first (number, value).
func (s *s30) file(ndx int32, data []byte, xv ...any) *s30 {
	s.Write(s.ndx.Append(nil, ndx))
	iflags := uint16(0x8000)
	if len(xv) > 0 {
		iflags |= 0x100
	}
	binary.Write(&s.Buffer, binary.LittleEndian, iflags)
	if len(xv) > 0 {
		prior := int32(0)
		for i := 0; i < len(xv); i += 2 {
			n, v := xv[i].(int32), xv[i+1].(string)
			s.v(n - prior).v(int32(len(v)))
			s.WriteString(v)
			prior = n
		}
		s.WriteByte(0)
	}
	s.i32(0).i32(0).i32(0).i32(0)
	if len(data) > 0 {
		s.i32(int32(len(data)))
		s.Write(data)
	}
	s.i32(0)
	sum := md5.Sum(data)
	s.Write(sum[:])
	return s
}

// done ends the phases, sends the statistics and the goodbye (31).
func (s *s30) done() *s30 {
	s.done30()
	s.Write(s.ndx.Append(nil, -1))
	return s
}

// done30 ends the phases and sends the statistics; protocol 30 has no
// goodbye from the sender.
func (s *s30) done30() *s30 {
	for range 3 {
		s.Write(s.ndx.Append(nil, -1))
	}
	for range 5 {
		s.Write(rsync.AppendVarlong(nil, 0, 3))
	}
	return s
}

// fakeDaemon31 serves one scripted protocol-31 session per connection:
// greeting, compat flags, checksum negotiation (checksums is the list it
// offers), the seed, then body multiplexed. What the puller writes after
// the negotiation is read and ignored.
func fakeDaemon31(t *testing.T, compat int32, checksums string, body []byte) pullers.Source {
	return fakeDaemonProto(t, 31, compat, checksums, body)
}

// fakeDaemonProto is fakeDaemon31 greeting with another protocol.
func fakeDaemonProto(t *testing.T, proto int, compat int32, checksums string, body []byte) pullers.Source {
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
				io.WriteString(c, "@RSYNCD: "+strconv.Itoa(proto)+".0 md5 md4\n")
				for range 2 { // version, module
					br.ReadString('\n')
				}
				io.WriteString(c, "@RSYNCD: OK\n")
				for { // arguments, NUL-terminated, an empty one last
					a, err := br.ReadString(0)
					if err != nil || a == "\x00" {
						break
					}
				}
				c.Write(rsync.AppendVarint(nil, compat))
				if compat&cfVarint != 0 {
					c.Write(rsync.AppendVstring(nil, checksums))
					n, _ := br.ReadByte()
					io.CopyN(io.Discard, br, int64(n))
				}
				binary.Write(c, binary.LittleEndian, int32(fakeSeed))
				go io.Copy(io.Discard, br)
				for b := body; len(b) > 0; {
					n := min(len(b), 1000)
					binary.Write(c, binary.LittleEndian, uint32(7<<24|n))
					c.Write(b[:n])
					b = b[n:]
				}
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	return pullers.Source{Method: rsync.Method, Name: "src", Path: "/",
		Options: map[string]string{"host": host, "port": port, "module": "m", "xattrs": "true", "acls": "true"}}
}

// noACL is the ACL section of an entry without ACLs: an empty access ACL.
var noACL = raw30(0, 0)

// TestFakeSender31 feeds protocol-31 lists and answers, good and hostile,
// with xattrs and ACLs negotiated.
func TestFakeSender31(t *testing.T) {
	long := strings.Repeat("L", 100)
	type tc struct {
		name   string
		compat int32
		sums   string
		body   []byte
		want   string // in the error; "" means the pull succeeds
	}
	var cases []tc
	for _, varint := range []bool{true, false} {
		compat := int32(compat31)
		name := "good"
		if !varint {
			compat, name = cfSeed|cfID0, "good byte flags"
		}
		b := new30()
		b.varint = varint
		// ".": empty access and default ACLs, an empty xattr set.
		b.entry(".", 0, dir, "", raw30(0, 0), raw30(0, 0), xattrs())
		// a: a named-user ACL (user 1234 rw-, mask rw-), a short and a long xattr.
		b.entry("a", 5, reg, "", raw30(0, 0x14, 6, 1), func(s *s30) { s.v(1234).v(6<<2 | 2) }, xattrs("user.k", "v", "user.long", long))
		// b: the same ACL and xattr set as a, by reference.
		b.entry("b", 3, reg, "", raw30(2), xref(2))
		b.entry("l", 0, lnk, "../../etc/passwd", xref(1))
		b.end()
		b.file(1, []byte("hello"), int32(2), long).file(2, []byte("bee")).done()
		cases = append(cases, tc{name, compat, "md5 md4", b.Bytes(), ""})
	}
	list := func(entries ...func(*s30)) []byte {
		s := new30()
		s.entry(".", 0, dir, "", noACL, noACL, xattrs())
		for _, e := range entries {
			e(s)
		}
		return s.Bytes()
	}
	ent := func(name string, more ...func(*s30)) func(*s30) {
		return func(s *s30) { s.entry(name, 1, reg, "", more...) }
	}
	cases = append(cases,
		tc{"no md5", compat31, "xxh128 md4", nil, "no md5"},
		tc{"incremental recursion", compat31 | 1, "md5", nil, "incremental recursion"},
		tc{"xattr count", compat31, "md5", list(ent("a", noACL, raw30(0), func(s *s30) { s.v(1 << 20) })), "xattr count"},
		tc{"xattr name length", compat31, "md5", list(ent("a", noACL, raw30(0, 1), func(s *s30) { s.v(1 << 30).v(1) })), "xattr name length"},
		tc{"xattr name without NUL", compat31, "md5", list(ent("a", noACL, raw30(0, 1, 3, 1), raw30('a', 'b', 'c', 'v'))), "NUL-terminated"},
		tc{"xattr set reference", compat31, "md5", list(ent("a", noACL, xref(7))), "xattr set reference"},
		tc{"ACL entry count", compat31, "md5", list(ent("a", raw30(0, 0x10), func(s *s30) { s.v(1 << 20) })), "entry count"},
		tc{"ACL permissions", compat31, "md5", list(ent("a", raw30(0, 0x01, 9))), "permissions"},
		tc{"ACL reference", compat31, "md5", list(ent("a", raw30(3))), "access ACL reference"},
		tc{"hard-link reference", compat31, "md5", list(func(s *s30) { s.v(0x240).v(1).WriteString("h"); s.v(9) }), "hard-link reference"},
		tc{"nanoseconds", compat31, "md5", list(func(s *s30) {
			s.v(0x2040).v(1).WriteString("n")
			s.Write(rsync.AppendVarlong(nil, 1, 3))
			s.Write(rsync.AppendVarlong(nil, 1700000000, 4))
			s.v(2_000_000_000)
		}), "mtime nanoseconds"},
		tc{"varint too long", compat31, "md5", list(raw30(0xff, 1, 2, 3, 4, 5, 6)), "too long"},
		tc{"truncated varint", compat31, "md5", list(ent("a", noACL, raw30(0, 1, 0xc0))), "connection closed"},
		tc{"too many", compat31, "md5", func() []byte {
			s := new30()
			s.entry(".", 0, dir, "", noACL, noACL, xattrs())
			for i := range 20 {
				s.entry("f"+strconv.Itoa(i), 0, reg, "", noACL, xref(1))
			}
			return s.Bytes()
		}(), "longer than 10 entries"},
	)
	// Transfer-phase answers.
	head := func() *s30 {
		s := new30()
		s.entry(".", 0, dir, "", noACL, noACL, xattrs())
		s.entry("a", 5, reg, "", noACL, xattrs("user.long", long))
		return s
	}
	cases = append(cases,
		tc{"xattr value length", compat31, "md5", func() []byte {
			s := head().end()
			s.Write(s.ndx.Append(nil, 1))
			s.Write([]byte{0, 0x81})
			s.v(1).v(1 << 30)
			return s.Bytes()
		}(), "xattr value length"},
		tc{"xattr not asked for", compat31, "md5", func() []byte {
			s := head().end()
			s.Write(s.ndx.Append(nil, 1))
			s.Write([]byte{0, 0x81})
			s.v(5).v(1)
			return s.Bytes()
		}(), "out of range"},
		tc{"answer without data", compat31, "md5", func() []byte {
			s := head().end()
			s.Write(s.ndx.Append(nil, 1))
			s.Write([]byte{0, 0x01})
			s.v(1).v(int32(len(long))).WriteString(long)
			s.WriteByte(0)
			return s.Bytes()
		}(), "does not match the request"},
		tc{"unrequested file", compat31, "md5", func() []byte {
			s := head().end()
			return s.file(0, []byte("x")).Bytes()
		}(), "not asked for"},
		tc{"negative index", compat31, "md5", func() []byte {
			s := head().end()
			s.Write(s.ndx.Append(nil, -5))
			return s.Bytes()
		}(), "file index -5"},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := fakeDaemon31(t, c.compat, c.sums, c.body)
			p := pullertest.NewPool(t)
			pl := rsync.New()
			pl.MaxEntries = 10
			m, err := pullOnce(t, p, pl, src, nil)
			switch {
			case c.want == "":
				if err != nil {
					t.Fatal(err)
				}
			case err == nil:
				t.Fatalf("pull succeeded (%d entries), want an error with %q", m.Files, c.want)
			case !strings.Contains(err.Error(), c.want):
				t.Fatalf("error %q, want %q", err, c.want)
			}
			t.Log(err)
			if err != nil && !errors.Is(err, rsync.ErrProtocol) {
				t.Errorf("error does not wrap ErrProtocol: %v", err)
			}
			if err == nil {
				if pl.Negotiated() != 31 {
					t.Errorf("negotiated %d", pl.Negotiated())
				}
				if m.ErrorCount != 0 {
					t.Fatalf("errors %q", m.Errors)
				}
				sfs := p.SnapshotFS(context.Background(), m)
				for n, want := range map[string]string{"a": "hello", "b": "bee"} {
					if b, _ := fs.ReadFile(sfs, n); string(b) != want {
						t.Errorf("%s = %q", n, b)
					}
					st, err := fs.Stat(sfs, n)
					if err != nil {
						t.Fatal(err)
					}
					e := st.Sys().(*pool.Entry)
					acl := e.Xattrs["system.posix_acl_access"]
					// user::rw- user:1234:rw- group::r-- mask::rw- other::r--
					wantACL := aclXattr([3]uint32{1, 6, none}, [3]uint32{2, 6, 1234}, [3]uint32{4, 4, none}, [3]uint32{0x10, 6, none}, [3]uint32{0x20, 4, none})
					if string(e.Xattrs["user.k"]) != "v" || string(e.Xattrs["user.long"]) != long || !bytes.Equal(acl, wantACL) || len(e.Xattrs) != 3 {
						t.Errorf("%s: xattrs %q, ACL %x want %x", n, e.Xattrs, acl, wantACL)
					}
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

// TestFakeSender30: a protocol-30 sender (rsync 3.0: byte flags, no
// nanoseconds, no goodbye of its own) is spoken to at 30.
func TestFakeSender30(t *testing.T) {
	s := new30()
	s.varint, s.noID0 = false, true
	s.entry(".", 0, dir, "", noACL, noACL, xattrs())
	s.entry("a", 5, reg, "", noACL, xattrs("user.k", "v"))
	s.entry("d", 0, dir, "", noACL, noACL, xref(1))
	s.entry("d/b", 3, reg, "", noACL, xref(2))
	s.end()
	// Protocol 29+ order: root, a, d, d/b.
	s.file(1, []byte("hello")).file(3, []byte("bee")).done30()
	src := fakeDaemonProto(t, 30, 0, "", s.Bytes())
	p := pullertest.NewPool(t)
	pl := rsync.New()
	m, err := pullOnce(t, p, pl, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pl.Negotiated() != 30 || m.ErrorCount != 0 {
		t.Fatalf("protocol %d, errors %q", pl.Negotiated(), m.Errors)
	}
	sfs := p.SnapshotFS(context.Background(), m)
	for n, want := range map[string]string{"a": "hello", "d/b": "bee"} {
		if b, _ := fs.ReadFile(sfs, n); string(b) != want {
			t.Errorf("%s = %q", n, b)
		}
		st, _ := fs.Stat(sfs, n)
		if string(st.Sys().(*pool.Entry).Xattrs["user.k"]) != "v" {
			t.Errorf("%s: xattrs %q", n, st.Sys().(*pool.Entry).Xattrs)
		}
	}
}
