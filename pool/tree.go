package pool

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

// Tree objects (FORMAT.md §6): a version byte, then the entries sorted by
// name, every field in a fixed order, maps with sorted keys. The encoding
// is a pure function of the entries, so an unchanged directory always has
// the same digest.

const treeVersion = 1

// Entry flag bits in a tree object.
const (
	flagContent = 1 << 0
	flagChunked = 1 << 1
	flagSubtree = 1 << 2
	flagsKnown  = flagContent | flagChunked | flagSubtree
)

// modeBits are the Entry.Mode bits stored in a tree; type bits come from
// Entry.Type.
const modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// maxTreeEntries bounds one directory, so a hostile count cannot make a
// decoder allocate without limit.
const maxTreeEntries = 1 << 24

// ValidName reports whether name may be a tree entry name: not empty, not
// "." or "..", no "/" or NUL, at most 4096 bytes.
func ValidName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= 4096 &&
		!strings.ContainsAny(name, "/\x00")
}

// checkEntry validates one entry's fields for encoding or after decoding.
func checkEntry(e *Entry) error {
	switch {
	case !ValidName(e.Name):
		return fmt.Errorf("invalid name %q", e.Name)
	case e.Type < TypeFile || e.Type > TypeSocket:
		return fmt.Errorf("%q: invalid type %d", e.Name, e.Type)
	case e.Mode&^modeBits != 0:
		return fmt.Errorf("%q: mode %v has bits other than permissions", e.Name, e.Mode)
	case e.Size < 0:
		return fmt.Errorf("%q: negative size %d", e.Name, e.Size)
	case e.Type != TypeFile && (!e.Content.IsZero() || e.Chunked):
		return fmt.Errorf("%q: %s with content", e.Name, e.Type)
	case e.Chunked && e.Content.IsZero():
		return fmt.Errorf("%q: chunked without a chunk list", e.Name)
	case e.Type != TypeDir && !e.Subtree.IsZero():
		return fmt.Errorf("%q: %s with a subtree", e.Name, e.Type)
	case e.Type == TypeDir && e.Subtree.IsZero():
		return fmt.Errorf("%q: directory without a subtree", e.Name)
	case e.Type == TypeFile && e.Size > 0 && e.Content.IsZero():
		return fmt.Errorf("%q: %d-byte file without content", e.Name, e.Size)
	}
	return nil
}

// EncodeTree returns the canonical encoding of a directory's entries. It
// sorts a copy of entries by name and rejects invalid or duplicate names.
func EncodeTree(entries []Entry) ([]byte, error) {
	sorted := slices.Clone(entries)
	sortEntries(sorted)
	return appendTree(nil, sorted)
}

func sortEntries(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
}

// appendTree encodes entries, which must already be sorted.
func appendTree(b []byte, entries []Entry) ([]byte, error) {
	b = append(b, treeVersion)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for i := range entries {
		e := &entries[i]
		if err := checkEntry(e); err != nil {
			return nil, fmt.Errorf("encode tree: %w", err)
		}
		if i > 0 && entries[i-1].Name >= e.Name {
			return nil, fmt.Errorf("encode tree: duplicate or unsorted name %q", e.Name)
		}
		b = appendString(b, e.Name)
		b = append(b, byte(e.Type))
		b = binary.AppendUvarint(b, uint64(e.Mode))
		b = binary.AppendUvarint(b, uint64(e.UID))
		b = binary.AppendUvarint(b, uint64(e.GID))
		b = appendString(b, e.User)
		b = appendString(b, e.Group)
		b = binary.AppendVarint(b, e.ModTime)
		b = binary.AppendUvarint(b, uint64(e.Size))
		b = appendString(b, e.Target)
		b = binary.AppendUvarint(b, e.HardLink)
		b = binary.AppendUvarint(b, e.Rdev)
		b = binary.AppendUvarint(b, uint64(len(e.Xattrs)))
		for _, k := range sortedKeys(e.Xattrs) {
			b = appendString(b, k)
			b = appendString(b, string(e.Xattrs[k]))
		}
		b = binary.AppendUvarint(b, uint64(len(e.Extra)))
		for _, k := range sortedKeys(e.Extra) {
			b = appendString(b, k)
			b = appendString(b, e.Extra[k])
		}
		var flags byte
		if !e.Content.IsZero() {
			flags |= flagContent
		}
		if e.Chunked {
			flags |= flagChunked
		}
		if !e.Subtree.IsZero() {
			flags |= flagSubtree
		}
		b = append(b, flags)
		if flags&flagContent != 0 {
			b = append(b, e.Content[:]...)
		}
		if flags&flagSubtree != 0 {
			b = append(b, e.Subtree[:]...)
		}
	}
	return b, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmp.Compare[string])
	return keys
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// treeDecoder reads a tree object; the first error sticks.
type treeDecoder struct {
	b   []byte
	err error
}

func (d *treeDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: tree: "+format, append([]any{ErrCorrupt}, args...)...)
	}
}

func (d *treeDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *treeDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *treeDecoder) byte1() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *treeDecoder) bytesN(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated (want %d bytes, %d left)", n, len(d.b))
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *treeDecoder) str() string { return string(d.bytesN(d.uvarint())) }

func (d *treeDecoder) u32(what string) uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.fail("%s %d out of range", what, v)
	}
	return uint32(v)
}

func (d *treeDecoder) digest() (g Digest) {
	copy(g[:], d.bytesN(DigestSize))
	return g
}

// count reads a length prefix that must be satisfiable by the remaining
// bytes at min bytes per element.
func (d *treeDecoder) count(min int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/min) {
		d.fail("count %d exceeds the data", n)
		return 0
	}
	return int(n)
}

// DecodeTree decodes and validates a tree object. Any malformed input —
// truncation, unknown version, invalid, unsorted or duplicate names,
// inconsistent fields, trailing bytes — is ErrCorrupt.
func DecodeTree(b []byte) ([]Entry, error) {
	d := &treeDecoder{b: b}
	if v := d.byte1(); d.err == nil && v != treeVersion {
		d.fail("unknown version %d", v)
	}
	n := d.count(10)
	if n > maxTreeEntries {
		d.fail("%d entries", n)
	}
	if d.err != nil {
		return nil, d.err
	}
	entries := make([]Entry, n)
	for i := range entries {
		e := &entries[i]
		e.Name = d.str()
		e.Type = EntryType(d.byte1())
		mode := d.uvarint()
		if mode > 1<<32-1 {
			d.fail("mode out of range")
		}
		e.Mode = fs.FileMode(mode)
		e.UID = d.u32("uid")
		e.GID = d.u32("gid")
		e.User = d.str()
		e.Group = d.str()
		e.ModTime = d.varint()
		size := d.uvarint()
		if size > 1<<63-1 {
			d.fail("size out of range")
		}
		e.Size = int64(size)
		e.Target = d.str()
		e.HardLink = d.uvarint()
		e.Rdev = d.uvarint()
		if nx := d.count(2); nx > 0 {
			e.Xattrs = make(map[string][]byte, nx)
			prev := ""
			for j := 0; j < nx && d.err == nil; j++ {
				k := d.str()
				v := d.bytesN(d.uvarint())
				if j > 0 && k <= prev {
					d.fail("%q: xattr keys unsorted", e.Name)
				}
				prev = k
				e.Xattrs[k] = append([]byte{}, v...)
			}
		}
		if nx := d.count(2); nx > 0 {
			e.Extra = make(map[string]string, nx)
			prev := ""
			for j := 0; j < nx && d.err == nil; j++ {
				k := d.str()
				v := d.str()
				if j > 0 && k <= prev {
					d.fail("%q: extra keys unsorted", e.Name)
				}
				prev = k
				e.Extra[k] = v
			}
		}
		flags := d.byte1()
		if flags&^flagsKnown != 0 {
			d.fail("%q: unknown flags %#x", e.Name, flags)
		}
		if flags&flagContent != 0 {
			e.Content = d.digest()
			if d.err == nil && e.Content.IsZero() {
				d.fail("%q: zero content digest", e.Name)
			}
		}
		e.Chunked = flags&flagChunked != 0
		if flags&flagSubtree != 0 {
			e.Subtree = d.digest()
			if d.err == nil && e.Subtree.IsZero() {
				d.fail("%q: zero subtree digest", e.Name)
			}
		}
		if d.err != nil {
			return nil, d.err
		}
		if err := checkEntry(e); err != nil {
			return nil, fmt.Errorf("%w: tree: %v", ErrCorrupt, err)
		}
		if i > 0 && entries[i-1].Name >= e.Name {
			return nil, fmt.Errorf("%w: tree: name %q duplicate or out of order", ErrCorrupt, e.Name)
		}
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: tree: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	return entries, nil
}
