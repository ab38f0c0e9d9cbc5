package rsync

import (
	"slices"
	"strings"
)

// File-list flags of protocols 28-31 beyond the protocol-27 byte.
const (
	xmitExtendedFlags    = 1 << 2  // a second flags byte follows (byte flags)
	xmitSameRdevMajor    = 1 << 8  // devices
	xmitHlinked          = 1 << 9  // a hard-linked non-directory
	xmitUserNameFollows  = 1 << 10 // incremental recursion only
	xmitGroupNameFollows = 1 << 11 // incremental recursion only
	xmitHlinkFirst       = 1 << 12 // the first of its hard-link group
	xmitIOErrorEndlist   = 1 << 12 // with xmitExtendedFlags alone: the end marker
	xmitModNsec          = 1 << 13 // protocol 31: nanoseconds follow the mtime
	maxNsec              = 999_999_999
)

// flistOpts says which optional fields the list carries (the options we
// asked the sender for) and how the protocol encodes it.
type flistOpts struct {
	owner, devices, links, hard bool
	maxEntries                  int
	proto                       int  // 27, 30 or 31
	varintFlags                 bool // CF_VARINT_FLIST_FLAGS
	xattrs, acls                bool // -X, -A
}

// flist30 is the state a protocol-30 file list builds up besides the
// entries: the xattr sets and ACLs, which later entries may refer to by
// number instead of repeating them.
type flist30 struct {
	xsets   []xattrSet
	acls    []rsyncACL // access ACLs
	defacls []rsyncACL // default ACLs of directories
	ioErr   int32      // the sender's I/O error flags from the end marker
	budget  int64      // bytes of xattr/ACL data the list may still bring
}

// maxMetaBytes bounds the xattr names and values and the ACL entries one
// file list may carry in total.
const maxMetaBytes = 256 << 20

// readFileList30 decodes a protocol 30/31 file list (no incremental
// recursion: the whole list, then its end marker), checking every name as
// readFileList does. It returns the entries in the sender's sort order
// (files before subdirectories, see cmpName29), numbered by position.
func readFileList30(r *rawReader, o flistOpts, st *flist30) ([]*file, error) {
	if o.maxEntries <= 0 {
		o.maxEntries = defaultMaxList
	}
	if st.budget == 0 {
		st.budget = maxMetaBytes
	}
	var list []*file // in receive order until sorted
	var arena fileArena
	var nameBuf [maxPath]byte // the previous name, then this one
	var (
		lastLen   int
		mtime     int64 // seconds: what XMIT_SAME_TIME repeats
		mode      uint32
		uid, gid  uint32
		rdevMajor uint32
	)
	for {
		var flags int
		if o.varintFlags {
			v, err := r.varint("file list flags")
			if err != nil {
				return nil, err
			}
			if v == 0 {
				if st.ioErr, err = r.varint("file list I/O error"); err != nil {
					return nil, err
				}
				break
			}
			flags = int(v)
		} else {
			b, err := r.byte1("file list flags")
			if err != nil {
				return nil, err
			}
			if b == 0 {
				break
			}
			flags = int(b)
			if flags&xmitExtendedFlags != 0 {
				b2, err := r.byte1("file list flags")
				if err != nil {
					return nil, err
				}
				flags |= int(b2) << 8
			}
			if flags == xmitExtendedFlags|xmitIOErrorEndlist {
				if st.ioErr, err = r.varint("file list I/O error"); err != nil {
					return nil, err
				}
				break
			}
		}
		if len(list) >= o.maxEntries {
			return nil, protoErr("file list longer than %d entries", o.maxEntries)
		}
		f := &file{xset: -1, acl: -1, defacl: -1}
		l1 := 0
		if flags&xmitSameName != 0 {
			b, err := r.byte1("name prefix length")
			if err != nil {
				return nil, err
			}
			l1 = int(b)
			if l1 > lastLen {
				return nil, protoErr("name prefix %d longer than the previous name", l1)
			}
		}
		var l2 int
		var err error
		if flags&xmitLongName != 0 {
			if l2, err = r.uvarint("name length", maxPath); err != nil {
				return nil, err
			}
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
		if err := r.full(nameBuf[l1:l1+l2], "name"); err != nil {
			return nil, err
		}
		lastLen = l1 + l2
		name, err := cleanName(string(nameBuf[:lastLen]))
		if err != nil {
			return nil, err
		}
		f.name = name
		var nsec int64
		if o.hard && flags&xmitHlinked != 0 && flags&xmitHlinkFirst == 0 {
			// A later member of a hard-link group: the sender sends the
			// number of the first and none of the attributes.
			first, err := r.uvarint("hard-link reference", len(list)-1)
			if err != nil {
				return nil, err
			}
			fl := list[first]
			f.size, f.mtime, f.mode, f.uid, f.gid, f.rdev, f.target = fl.size, fl.mtime, fl.mode, fl.uid, fl.gid, fl.rdev, fl.target
			f.hlink = fl.hlink
			mtime, mode, uid, gid = floorDiv(fl.mtime, 1e9), fl.mode, fl.uid, fl.gid
			if typ := mode & sIFMT; typ == sIFCHR || typ == sIFBLK {
				rdevMajor = devMajor(fl.rdev)
			}
		} else {
			if f.size, err = r.varlong("file size", 3); err != nil {
				return nil, err
			}
			if f.size < 0 || f.size > maxFileSize {
				return nil, protoErr("%s: size %d", quote(name), f.size)
			}
			if flags&xmitSameTime == 0 {
				if mtime, err = r.varlong("mtime", 4); err != nil {
					return nil, err
				}
			}
			if flags&xmitModNsec != 0 {
				if o.proto < 31 {
					return nil, protoErr("%s: nanoseconds before protocol 31", quote(name))
				}
				v, err := r.uvarint("mtime nanoseconds", maxNsec)
				if err != nil {
					return nil, err
				}
				nsec = int64(v)
			}
			if mtime > 1<<40 || mtime < -(1<<40) {
				return nil, protoErr("%s: mtime %d", quote(name), mtime)
			}
			f.mtime = mtime*1e9 + nsec
			if flags&xmitSameMode == 0 {
				v, err := r.int32("mode")
				if err != nil {
					return nil, err
				}
				mode = uint32(v)
			}
			f.mode = mode
			if o.owner {
				if flags&xmitSameUID == 0 {
					v, err := r.varint("uid")
					if err != nil {
						return nil, err
					}
					uid = uint32(v)
					if flags&xmitUserNameFollows != 0 {
						if _, err := readIDName(r, "user"); err != nil {
							return nil, err
						}
					}
				}
				if flags&xmitSameGID == 0 {
					v, err := r.varint("gid")
					if err != nil {
						return nil, err
					}
					gid = uint32(v)
					if flags&xmitGroupNameFollows != 0 {
						if _, err := readIDName(r, "group"); err != nil {
							return nil, err
						}
					}
				}
				f.uid, f.gid = uid, gid
			}
			typ := f.mode & sIFMT
			switch typ {
			case sIFDIR, sIFREG, sIFLNK, sIFCHR, sIFBLK, sIFIFO, sIFSOCK:
			default:
				return nil, protoErr("%s: unknown file type in mode %o", quote(name), f.mode)
			}
			dev := typ == sIFCHR || typ == sIFBLK
			special := typ == sIFIFO || typ == sIFSOCK
			if o.devices && (dev || special && o.proto < 31) {
				if flags&xmitSameRdevMajor == 0 {
					v, err := r.varint("device major")
					if err != nil {
						return nil, err
					}
					rdevMajor = uint32(v)
				}
				v, err := r.varint("device minor")
				if err != nil {
					return nil, err
				}
				if dev {
					f.rdev = mkdev(rdevMajor, uint32(v))
				}
			}
			if typ != sIFREG {
				f.size = 0
			}
			if o.links && typ == sIFLNK {
				n, err := r.uvarint("symlink target length", maxLink)
				if err != nil {
					return nil, err
				}
				tb := make([]byte, n)
				if err := r.full(tb, "symlink target"); err != nil {
					return nil, err
				}
				if slices.Contains(tb, 0) {
					return nil, protoErr("%s: symlink target contains NUL", quote(name))
				}
				f.target = string(tb)
			}
			if o.hard && flags&xmitHlinked != 0 && typ != sIFDIR {
				f.hlink = int32(len(list)) + 1
			}
		}
		if name == "." && f.mode&sIFMT != sIFDIR {
			return nil, protoErr("the transfer root is not a directory")
		}
		if o.acls && f.mode&sIFMT != sIFLNK {
			if f.acl, err = st.readACL(r, &st.acls, "access ACL"); err != nil {
				return nil, err
			}
			if f.mode&sIFMT == sIFDIR {
				if f.defacl, err = st.readACL(r, &st.defacls, "default ACL"); err != nil {
					return nil, err
				}
			}
		}
		if o.xattrs {
			if f.xset, err = st.readXattrs(r); err != nil {
				return nil, err
			}
		}
		list = append(list, arena.add(f))
	}
	return sortList(list, cmpName29), nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// readIDName reads a user or group name sent inline (incremental
// recursion only; a sender may still send them).
func readIDName(r *rawReader, what string) (string, error) {
	l, err := r.byte1(what + " name length")
	if err != nil {
		return "", err
	}
	b := make([]byte, l)
	if err := r.full(b, what+" name"); err != nil {
		return "", err
	}
	if slices.Contains(b, 0) || slices.Contains(b, '\n') {
		return "", protoErr("%s name %s", what, quote(string(b)))
	}
	return string(b), nil
}

// mkdev builds a Linux device number from major and minor.
func mkdev(major, minor uint32) uint64 {
	ma, mi := uint64(major), uint64(minor)
	return mi&0xff | (ma&0xfff)<<8 | (mi&^0xff)<<12 | (ma&^0xfff)<<32
}

func devMajor(d uint64) uint32 { return uint32((d>>8)&0xfff | (d>>32)&^0xfff) }

// cmpName29 is rsync's file-list order from protocol 29 on (f_name_cmp):
// names compare element by element; in one directory, non-directories
// come before directories, and a directory's name compares as if it ended
// in "/". "." (the transfer root) comes first.
func cmpName29(a, b *file) int {
	if a.name == b.name {
		return 0
	}
	if a.name == "." {
		return -1
	}
	if b.name == "." {
		return 1
	}
	an, bn := a.name, b.name
	for {
		ae, arest, amore := strings.Cut(an, "/")
		be, brest, bmore := strings.Cut(bn, "/")
		// An element is a directory when more elements follow or the
		// entry itself is a directory.
		adir := amore || a.mode&sIFMT == sIFDIR
		bdir := bmore || b.mode&sIFMT == sIFDIR
		if adir != bdir {
			if adir {
				return 1
			}
			return -1
		}
		if ae != be {
			if adir {
				return strings.Compare(ae+"/", be+"/")
			}
			return strings.Compare(ae, be)
		}
		if !amore || !bmore {
			switch {
			case amore:
				return 1
			case bmore:
				return -1
			}
			return 0
		}
		an, bn = arest, brest
	}
}
