package rsync

import (
	"path"
	"slices"
	"strconv"
	"strings"
)

// File-list flags of protocol 27 (one byte per entry; 0 ends the list).
const (
	xmitTopDir     = 0x01
	xmitSameMode   = 0x02
	xmitSameRdev   = 0x04 // XMIT_SAME_RDEV_pre28
	xmitSameUID    = 0x08
	xmitSameGID    = 0x10
	xmitSameName   = 0x20
	xmitLongName   = 0x40
	xmitSameTime   = 0x80
	sIFMT          = 0o170000
	sIFDIR         = 0o040000
	sIFREG         = 0o100000
	sIFLNK         = 0o120000
	sIFCHR         = 0o020000
	sIFBLK         = 0o060000
	sIFIFO         = 0o010000
	sIFSOCK        = 0o140000
	defaultMaxList = 5_000_000
)

// file is one file-list entry as the server sent it. A pull holds one
// per entry, so it is kept compact (owner names are looked up by id).
type file struct {
	name   string // cleaned, relative, "." for the root
	target string
	size   int64
	mtime  int64  // nanoseconds
	rdev   uint64 // Linux encoding
	mode   uint32
	uid    uint32
	gid    uint32
	ndx    int32 // index in the sorted list: the file's number on the wire
	hlink  int32 // -H: hard-link group (the receive index of its first member + 1), 0 none
	xset   int32 // protocol 30: xattr set (index into flist30.xsets), -1 none
	acl    int32 // protocol 30: access ACL (index into flist30.acls), -1 none
	defacl int32 // protocol 30: default ACL of a directory, -1 none
}

// readFileList decodes a protocol-27 file list up to its end marker, and
// checks every name: relative, no "..", no empty elements, no NUL, at most
// maxPath bytes. It returns the entries sorted as rsync sorts them (by
// name, bytewise), duplicates removed; the index of an entry in that list
// is its number in the transfer.
func readFileList(r *rawReader, o flistOpts) ([]*file, error) {
	if o.maxEntries <= 0 {
		o.maxEntries = defaultMaxList
	}
	var list []*file
	var arena fileArena
	last := &file{}
	lastName := ""
	inodes := map[[2]int64]int32{} // -H: (dev, ino) -> group
	for {
		flags, err := r.byte1("file list flags")
		if err != nil {
			return nil, err
		}
		if flags == 0 {
			break
		}
		if len(list) >= o.maxEntries {
			return nil, protoErr("file list longer than %d entries", o.maxEntries)
		}
		f := &file{xset: -1, acl: -1, defacl: -1}
		var dev, ino int64
		l1 := 0
		if flags&xmitSameName != 0 {
			b, err := r.byte1("name prefix length")
			if err != nil {
				return nil, err
			}
			l1 = int(b)
			if l1 > len(lastName) {
				return nil, protoErr("name prefix %d longer than the previous name", l1)
			}
		}
		var l2 int
		if flags&xmitLongName != 0 {
			v, err := r.int32("name length")
			if err != nil {
				return nil, err
			}
			if v < 0 || int(v) > maxPath {
				return nil, protoErr("name length %d", v)
			}
			l2 = int(v)
		} else {
			b, err := r.byte1("name length")
			if err != nil {
				return nil, err
			}
			l2 = int(b)
		}
		if l1+l2 > maxPath {
			return nil, protoErr("name of %d bytes", l1+l2)
		}
		nb := make([]byte, l1+l2)
		copy(nb, lastName[:l1])
		if err := r.full(nb[l1:], "name"); err != nil {
			return nil, err
		}
		lastName = string(nb)
		name, err := cleanName(lastName)
		if err != nil {
			return nil, err
		}
		f.name = name
		if f.size, err = r.longint("file size"); err != nil {
			return nil, err
		}
		if f.size < 0 || f.size > maxFileSize {
			return nil, protoErr("%s: size %d", quote(name), f.size)
		}
		if flags&xmitSameTime != 0 {
			f.mtime = last.mtime
		} else {
			v, err := r.int32("mtime")
			if err != nil {
				return nil, err
			}
			f.mtime = int64(v) * 1e9
		}
		if flags&xmitSameMode != 0 {
			f.mode = last.mode
		} else {
			v, err := r.int32("mode")
			if err != nil {
				return nil, err
			}
			f.mode = uint32(v)
		}
		if o.owner {
			if flags&xmitSameUID != 0 {
				f.uid = last.uid
			} else {
				v, err := r.int32("uid")
				if err != nil {
					return nil, err
				}
				f.uid = uint32(v)
			}
			if flags&xmitSameGID != 0 {
				f.gid = last.gid
			} else {
				v, err := r.int32("gid")
				if err != nil {
					return nil, err
				}
				f.gid = uint32(v)
			}
		}
		typ := f.mode & sIFMT
		switch typ {
		case sIFDIR, sIFREG, sIFLNK, sIFCHR, sIFBLK, sIFIFO, sIFSOCK:
		default:
			return nil, protoErr("%s: unknown file type in mode %o", quote(name), f.mode)
		}
		if typ != sIFREG {
			f.size = 0
		}
		if o.devices && (typ == sIFCHR || typ == sIFBLK || typ == sIFIFO || typ == sIFSOCK) {
			if flags&xmitSameRdev != 0 {
				f.rdev = last.rdev
			} else {
				v, err := r.int32("rdev")
				if err != nil {
					return nil, err
				}
				f.rdev = uint64(uint32(v))
			}
		}
		if o.links && typ == sIFLNK {
			v, err := r.int32("symlink target length")
			if err != nil {
				return nil, err
			}
			if v < 0 || v > maxLink {
				return nil, protoErr("%s: symlink target of %d bytes", quote(name), v)
			}
			tb := make([]byte, v)
			if err := r.full(tb, "symlink target"); err != nil {
				return nil, err
			}
			if slices.Contains(tb, 0) {
				return nil, protoErr("%s: symlink target contains NUL", quote(name))
			}
			f.target = string(tb)
		}
		if o.hard && typ == sIFREG {
			if dev, err = r.longint("device"); err != nil {
				return nil, err
			}
			if ino, err = r.longint("inode"); err != nil {
				return nil, err
			}
			k := [2]int64{dev, ino}
			if inodes[k] == 0 {
				inodes[k] = int32(len(list)) + 1
			}
			f.hlink = inodes[k]
		}
		if name == "." && typ != sIFDIR {
			return nil, protoErr("the transfer root is not a directory")
		}
		list = append(list, arena.add(f))
		last = f
	}
	return sortList(list, func(a, b *file) int { return strings.Compare(a.name, b.name) }), nil
}

// sortList sorts the list as the sender does, numbers the entries by
// their sorted position (the index both sides use on the wire) and drops
// duplicate names (the sender skips them too; their numbers stay unused).
func sortList(list []*file, cmp func(a, b *file) int) []*file {
	slices.SortStableFunc(list, cmp)
	for i, f := range list {
		f.ndx = int32(i)
	}
	return slices.CompactFunc(list, func(a, b *file) bool { return a.name == b.name })
}

// fileArena holds the entries of a list in fixed-size chunks: one
// allocation per chunk, and entries never move while the list grows.
type fileArena struct{ chunks [][]file }

const arenaChunk = 1024

func (a *fileArena) add(f *file) *file {
	if len(a.chunks) == 0 || len(a.chunks[len(a.chunks)-1]) == arenaChunk {
		a.chunks = append(a.chunks, make([]file, 0, arenaChunk))
	}
	c := &a.chunks[len(a.chunks)-1]
	*c = append(*c, *f)
	return &(*c)[len(*c)-1]
}

// cleanName checks a name from the server: relative, no "..", no empty
// or NUL elements. "." and a leading "./" mean the transfer root.
func cleanName(n string) (string, error) {
	if n == "" || n == "." {
		return ".", nil
	}
	if strings.IndexByte(n, 0) >= 0 {
		return "", protoErr("name %s contains NUL", quote(n))
	}
	if strings.HasPrefix(n, "/") {
		return "", protoErr("absolute name %s", quote(n))
	}
	n = strings.TrimPrefix(n, "./")
	for el := range strings.SplitSeq(n, "/") {
		if el == "" || el == "." || el == ".." {
			return "", protoErr("name %s has an empty, \".\" or \"..\" element", quote(n))
		}
	}
	if path.Clean(n) != n {
		return "", protoErr("name %s is not clean", quote(n))
	}
	return n, nil
}

func quote(s string) string {
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strconv.Quote(s)
}

// maxIDs bounds each uid/gid name list.
const maxIDs = 1 << 20

// readIDList reads one uid or gid name list of protocols before 30:
// (int32 id, byte length, name) until id 0. Id 0 is root and never sent.
func readIDList(r *rawReader, what string) (map[uint32]string, error) {
	names := map[uint32]string{0: "root"}
	for n := 0; ; n++ {
		id, err := r.int32(what + " list")
		if err != nil {
			return nil, err
		}
		if id == 0 {
			return names, nil
		}
		if n >= maxIDs {
			return nil, protoErr("%s list longer than %d names", what, maxIDs)
		}
		l, err := r.byte1(what + " name length")
		if err != nil {
			return nil, err
		}
		b := make([]byte, l)
		if err := r.full(b, what+" name"); err != nil {
			return nil, err
		}
		if slices.Contains(b, 0) || slices.Contains(b, '\n') {
			return nil, protoErr("%s name %s", what, quote(string(b)))
		}
		names[uint32(id)] = string(b)
	}
}
