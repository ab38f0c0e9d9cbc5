package rsync

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/pool"
)

// FuzzFileList30: any bytes decode to a clean protocol-31 list (with
// xattrs and ACLs) or an error, never a panic; names are ones the sink
// accepts, the order is rsync's, and every reference is in range.
func FuzzFileList30(f *testing.F) {
	root := appendVarint(nil, 0x40)
	root = appendVarint(root, 1)
	root = append(root, '.')
	root = appendVarlong(root, 0, 3)
	root = appendVarlong(root, 1700000000, 4)
	root = binary.LittleEndian.AppendUint32(root, 0o40755)
	root = append(root, 0, 0)       // uid, gid
	root = append(root, 0, 0, 0, 0) // empty access and default ACLs
	root = append(root, 0, 1, 3, 2, 'u', '.', 0, 'v', 'w')
	f.Add(append(root, 0, 0, 0, 4, 'r', 'o', 'o', 't', 0, 0), true)
	file := appendVarint(nil, 0x2240|0x1000) // long name, hard-linked first, nanoseconds
	file = appendVarint(file, 3)
	file = append(file, "a/b"...)
	file = appendVarlong(file, 1<<40, 3)
	file = appendVarlong(file, -5, 4)
	file = appendVarint(file, 999999999)
	file = binary.LittleEndian.AppendUint32(file, 0o100644)
	file = appendVarint(file, 1000)
	file = appendVarint(file, 1000)
	file = append(file, 0, 0x14, 6, 1)
	file = appendVarint(file, 1234)
	file = append(file, 6<<2|2, 1)
	f.Add(append(append(root, file...), 0, 0), true)
	f.Add([]byte{0x40, 1, 'x', 0xff, 0xff}, false)
	f.Fuzz(func(t *testing.T, b []byte, varint bool) {
		rr := &rawReader{r: bytes.NewReader(b)}
		st := &flist30{budget: 1 << 20}
		o := flistOpts{owner: true, devices: true, links: true, hard: true, maxEntries: 1000, proto: 31, varintFlags: varint, xattrs: true, acls: true}
		list, err := readFileList30(rr, o, st)
		if err != nil {
			return
		}
		if names, err := readIDList30(rr, "user", true); err == nil && names[0] == "" {
			t.Fatal("empty name for id 0")
		}
		for i, fl := range list {
			if fl.name != "." {
				for el := range strings.SplitSeq(fl.name, "/") {
					if !pool.ValidName(el) {
						t.Fatalf("invalid name %q accepted", fl.name)
					}
				}
			}
			if fl.size < 0 || i > 0 && cmpName29(list[i-1], fl) >= 0 {
				t.Fatalf("bad list at %d: %+v", i, fl)
			}
			if int(fl.xset) >= len(st.xsets) || int(fl.acl) >= len(st.acls) || int(fl.defacl) >= len(st.defacls) {
				t.Fatalf("reference out of range: %+v", fl)
			}
			if fl.acl >= 0 {
				checkACLXattr(t, st.acls[fl.acl].accessXattr(fl.mode))
			}
			if fl.defacl >= 0 {
				checkACLXattr(t, st.defacls[fl.defacl].defaultXattr())
			}
		}
	})
}

func checkACLXattr(t *testing.T, b []byte) {
	if b == nil {
		return
	}
	if len(b) < 4 || (len(b)-4)%8 != 0 || binary.LittleEndian.Uint32(b) != 2 {
		t.Fatalf("malformed ACL xattr %x", b)
	}
	for i := 4; i+8 <= len(b); i += 8 {
		if perm := binary.LittleEndian.Uint16(b[i+2:]); perm > 7 {
			t.Fatalf("ACL permission %d", perm)
		}
	}
}

// FuzzVarint: the integer encodings read back what they wrote, and any
// bytes decode to a value or an error.
func FuzzVarint(f *testing.F) {
	f.Add(int32(0), int64(0), []byte{0})
	f.Add(int32(-1), int64(-1), []byte{0xf0, 0xff, 0xff, 0xff, 0xff})
	f.Add(int32(1234), int64(1)<<40, []byte{0xfe, 0x80, 1, 2, 3})
	f.Fuzz(func(t *testing.T, v int32, l int64, b []byte) {
		for _, minBytes := range []int{3, 4} {
			r := &rawReader{r: bytes.NewReader(appendVarlong(nil, l, minBytes))}
			if got, err := r.varlong("x", minBytes); err != nil || got != l {
				t.Fatalf("varlong(%d) %d: got %d, %v", minBytes, l, got, err)
			}
		}
		r := &rawReader{r: bytes.NewReader(appendVarint(nil, v))}
		if got, err := r.varint("x"); err != nil || got != v {
			t.Fatalf("varint %d: got %d, %v", v, got, err)
		}
		enc, dec := newNdxCodec(), newNdxCodec()
		seq := []int32{v & 0x7fffffff, 0, ndxDone, -(v&0xffff + 2), 5}
		var buf []byte
		for _, n := range seq {
			buf = enc.appendNdx(buf, n)
		}
		r = &rawReader{r: bytes.NewReader(buf)}
		for _, n := range seq {
			if got, err := dec.read(r); err != nil || got != n {
				t.Fatalf("ndx %d: got %d, %v (seq %v)", n, got, err, seq)
			}
		}
		r = &rawReader{r: bytes.NewReader(b)}
		c := newNdxCodec()
		for range 50 {
			if _, err := r.varint("x"); err != nil {
				break
			}
			if _, err := r.varlong("x", 3); err != nil {
				break
			}
			if n, err := c.read(r); err != nil {
				break
			} else if n < -(1<<31 - 1) {
				t.Fatalf("ndx %d", n)
			}
		}
	})
}

// FuzzXattrACL: xattr sets and ACLs decode with bounded memory, and every
// decoded ACL encodes to a well-formed Linux ACL xattr.
func FuzzXattrACL(f *testing.F) {
	f.Add([]byte{0, 1, 3, 2, 'u', '.', 0, 'v', 'w', 1})
	f.Add([]byte{0, 0x1f, 7, 5, 4, 0, 2, 1, 6<<2 | 2, 2, 7 << 2, 1})
	f.Add(append([]byte{0, 1, 4, 40, 'u', '.', 'x', 0}, make([]byte, 16)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		st := &flist30{budget: 1 << 16}
		r := &rawReader{r: bytes.NewReader(b)}
		for i := 0; i < 100; i++ {
			var err error
			switch i % 3 {
			case 0:
				_, err = st.readXattrs(r)
			case 1:
				_, err = st.readACL(r, &st.acls, "access ACL")
			default:
				_, err = st.readACL(r, &st.defacls, "default ACL")
			}
			if err != nil {
				break
			}
		}
		held := 0 // what was kept: bounded by the budget
		for _, s := range st.xsets {
			for _, x := range s {
				held += len(x.name) + len(x.value)
				if strings.IndexByte(x.name, 0) >= 0 || x.abbrev && len(x.value) != xattrSumLen || !x.abbrev && len(x.value) != x.length {
					t.Fatalf("bad xattr %+v", x)
				}
			}
		}
		for _, a := range append(st.acls, st.defacls...) {
			held += 16 * len(a.names)
		}
		if held > 1<<16 {
			t.Fatalf("%d bytes kept, budget %d", held, 1<<16)
		}
		for _, a := range st.acls {
			checkACLXattr(t, a.accessXattr(0o100750))
		}
		for _, a := range st.defacls {
			checkACLXattr(t, a.defaultXattr())
		}
	})
}
