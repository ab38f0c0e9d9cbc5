package rsync

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"sort"
	"strings"
)

// Extended attributes (-X) and POSIX ACLs (-A), protocol 30+.
//
// xattrs: each file-list entry carries either the number of an earlier
// entry's set (the sender's cache) or a new set: a count, then per item
// the name length (with its NUL), the value length, the name, and the
// value itself when it is at most 32 bytes, else its MD5 (16 bytes). The
// receiver asks for the long values it needs in the transfer phase (item
// flag ITEM_REPORT_XATTR, followed by the items' numbers) and the sender
// answers with them after the same item flag.
//
// ACLs: an access ACL for every non-symlink and a default ACL for every
// directory, each an earlier ACL's number or a new one: a flags byte, the
// user/group/mask/other permissions present, and a list of named user and
// group entries. The sender leaves out what the mode already says; they
// are stored as Linux's system.posix_acl_access/_default xattr values.

const (
	maxFullDatum    = 32       // longer xattr values go as their MD5
	xattrSumLen     = md5.Size // xattr_sum_len from protocol 30 on
	maxXattrCount   = 65536    // items in one set
	maxXattrName    = 4096
	maxXattrValue   = 16 << 20 // bytes of one value fetched in the transfer phase
	maxACLEntries   = 65536
	aclXmitUserObj  = 1 << 0
	aclXmitGroupObj = 1 << 1
	aclXmitMaskObj  = 1 << 2
	aclXmitOtherObj = 1 << 3
	aclXmitNameList = 1 << 4
	aclNameFollows  = 1 << 0
	aclNameIsUser   = 1 << 1
	aclNoEntry      = 0x80
)

type xattrItem struct {
	name    string // as the sender named it, without the NUL
	value   []byte // the value, or its MD5 while abbrev
	length  int    // the value's length
	abbrev  bool   // value is the MD5 of a long value not fetched yet
	pending bool   // requested in the transfer phase
}

// xattrSet is one set of xattrs as the sender sent it; items are numbered
// from 1 in that order.
type xattrSet []xattrItem

// readXattrs reads an entry's xattrs (receive_xattr) and returns the
// number of its set.
func (st *flist30) readXattrs(r *rawReader) (int32, error) {
	ref, err := r.uvarint("xattr set reference", len(st.xsets))
	if err != nil {
		return 0, err
	}
	if ref != 0 {
		return int32(ref - 1), nil
	}
	count, err := r.uvarint("xattr count", maxXattrCount)
	if err != nil {
		return 0, err
	}
	var set xattrSet
	for i := 0; i < count; i++ {
		nl, err := r.uvarint("xattr name length", maxXattrName)
		if err != nil {
			return 0, err
		}
		vl, err := r.uvarint("xattr value length", 1<<31-1)
		if err != nil {
			return 0, err
		}
		get := vl
		if vl > maxFullDatum {
			get = xattrSumLen
		}
		if st.budget -= int64(nl + get + 64); st.budget < 0 {
			return 0, protoErr("the file list's xattrs and ACLs exceed %d MiB", maxMetaBytes>>20)
		}
		b := make([]byte, nl+get)
		if err := r.full(b, "xattr"); err != nil {
			return 0, err
		}
		if nl < 2 || b[nl-1] != 0 || bytes.IndexByte(b[:nl-1], 0) >= 0 {
			return 0, protoErr("xattr name %s is not NUL-terminated", quote(string(b[:nl])))
		}
		set = append(set, xattrItem{name: string(b[:nl-1]), value: b[nl:], length: vl, abbrev: vl > maxFullDatum})
	}
	st.xsets = append(st.xsets, set)
	return int32(len(st.xsets) - 1), nil
}

// idaEntry is a named ACL entry.
type idaEntry struct {
	id     uint32
	access uint8 // rwx bits
	user   bool
}

// rsyncACL is one ACL as sent; aclNoEntry marks an absent object.
type rsyncACL struct {
	userObj, groupObj, maskObj, otherObj uint8
	names                                []idaEntry
}

func (st *flist30) readACL(r *rawReader, list *[]rsyncACL, what string) (int32, error) {
	ref, err := r.uvarint(what+" reference", len(*list))
	if err != nil {
		return 0, err
	}
	if ref != 0 {
		return int32(ref - 1), nil
	}
	flags, err := r.byte1(what + " flags")
	if err != nil {
		return 0, err
	}
	if flags&^0x1f != 0 {
		return 0, protoErr("%s flags %#x", what, flags)
	}
	a := rsyncACL{userObj: aclNoEntry, groupObj: aclNoEntry, maskObj: aclNoEntry, otherObj: aclNoEntry}
	for _, o := range []struct {
		bit byte
		p   *uint8
	}{{aclXmitUserObj, &a.userObj}, {aclXmitGroupObj, &a.groupObj}, {aclXmitMaskObj, &a.maskObj}, {aclXmitOtherObj, &a.otherObj}} {
		if flags&o.bit != 0 {
			v, err := r.uvarint(what+" permissions", 7)
			if err != nil {
				return 0, err
			}
			*o.p = uint8(v)
		}
	}
	if flags&aclXmitNameList != 0 {
		n, err := r.uvarint(what+" entry count", maxACLEntries)
		if err != nil {
			return 0, err
		}
		if st.budget -= int64(16 * n); st.budget < 0 {
			return 0, protoErr("the file list's xattrs and ACLs exceed %d MiB", maxMetaBytes>>20)
		}
		var computed uint8
		for range n {
			id, err := r.varint(what + " id")
			if err != nil {
				return 0, err
			}
			acc, err := r.uvarint(what+" entry", 7<<2|3)
			if err != nil {
				return 0, err
			}
			e := idaEntry{id: uint32(id), access: uint8(acc >> 2), user: acc&aclNameIsUser != 0}
			if acc&aclNameFollows != 0 {
				if _, err := readIDName(r, "ACL"); err != nil {
					return 0, err
				}
			}
			computed |= e.access
			a.names = append(a.names, e)
		}
		if a.maskObj == aclNoEntry && list == &st.defacls {
			// As the receiver does: a default ACL with names needs a mask.
			a.maskObj = computed
			if a.groupObj != aclNoEntry {
				a.maskObj |= a.groupObj
			}
		}
	}
	*list = append(*list, a)
	return int32(len(*list) - 1), nil
}

// Linux ACL xattr tags.
const (
	aclTagUserObj  = 0x01
	aclTagUser     = 0x02
	aclTagGroupObj = 0x04
	aclTagGroup    = 0x08
	aclTagMask     = 0x10
	aclTagOther    = 0x20
	aclUndefinedID = 0xffffffff
)

// accessXattr rebuilds a file's access ACL as the value of
// system.posix_acl_access, filling in what the sender left out from the
// file's mode. An ACL that says no more than the mode gives nil (Linux
// keeps no xattr for it either).
func (a *rsyncACL) accessXattr(mode uint32) []byte {
	if len(a.names) == 0 && a.maskObj == aclNoEntry {
		return nil
	}
	pick := func(v uint8, def uint32) uint8 {
		if v == aclNoEntry {
			return uint8(def & 7)
		}
		return v
	}
	full := rsyncACL{
		userObj:  pick(a.userObj, mode>>6),
		groupObj: pick(a.groupObj, mode>>3),
		maskObj:  pick(a.maskObj, mode>>3),
		otherObj: pick(a.otherObj, mode),
		names:    a.names,
	}
	return full.xattr()
}

// defaultXattr is the value of system.posix_acl_default, nil for none.
func (a *rsyncACL) defaultXattr() []byte {
	if a.userObj == aclNoEntry && a.groupObj == aclNoEntry && a.otherObj == aclNoEntry && a.maskObj == aclNoEntry && len(a.names) == 0 {
		return nil
	}
	return a.xattr()
}

// xattr encodes the ACL in Linux's posix_acl_xattr format: version 2,
// then (tag, perm, id) entries sorted by tag and id.
func (a *rsyncACL) xattr() []byte {
	type ent struct {
		tag  uint16
		perm uint16
		id   uint32
	}
	var es []ent
	add := func(tag uint16, v uint8) {
		if v != aclNoEntry {
			es = append(es, ent{tag, uint16(v & 7), aclUndefinedID})
		}
	}
	add(aclTagUserObj, a.userObj)
	add(aclTagGroupObj, a.groupObj)
	add(aclTagMask, a.maskObj)
	add(aclTagOther, a.otherObj)
	for _, n := range a.names {
		tag := uint16(aclTagGroup)
		if n.user {
			tag = aclTagUser
		}
		es = append(es, ent{tag, uint16(n.access & 7), n.id})
	}
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].tag != es[j].tag {
			return es[i].tag < es[j].tag
		}
		return es[i].id < es[j].id
	})
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range es {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

// xattrNameOK says whether an xattr name from the sender may be stored:
// not empty, no NUL, and not one of the names the ACLs are stored under
// (the sender never sends system.* names; ACLs come with -A).
func xattrNameOK(n string) bool {
	return n != "" && !strings.HasPrefix(n, "system.posix_acl_")
}
