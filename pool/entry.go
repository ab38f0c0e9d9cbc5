package pool

import "io/fs"

// EntryType is the kind of a tree entry.
type EntryType uint8

const (
	TypeFile     EntryType = 1
	TypeDir      EntryType = 2
	TypeSymlink  EntryType = 3
	TypeCharDev  EntryType = 4
	TypeBlockDev EntryType = 5
	TypeFIFO     EntryType = 6
	TypeSocket   EntryType = 7
)

func (t EntryType) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	case TypeCharDev:
		return "chardev"
	case TypeBlockDev:
		return "blockdev"
	case TypeFIFO:
		return "fifo"
	case TypeSocket:
		return "socket"
	}
	return "unknown"
}

// An Entry is one name in a directory tree with every metadata field a
// puller can supply. Fields a protocol does not carry stay zero.
type Entry struct {
	Name string    // one path element; never "", ".", ".." and never contains "/" or NUL
	Type EntryType // kind of entry
	// Mode holds the permission bits plus setuid/setgid/sticky, as io/fs
	// FileMode bits (fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky).
	// The type bits are derived from Type.
	Mode    fs.FileMode
	UID     uint32
	GID     uint32
	User    string // owner name, when the protocol gives it
	Group   string // group name, when the protocol gives it
	ModTime int64  // mtime in nanoseconds since the Unix epoch
	Size    int64  // file: content length; others: 0
	Target  string // symlink target, verbatim as the source stores it
	// HardLink groups entries that are hard links of each other within one
	// snapshot: entries with the same non-zero HardLink share one inode.
	HardLink uint64
	Rdev     uint64            // device number for TypeCharDev/TypeBlockDev (Linux encoding)
	Xattrs   map[string][]byte // extended attributes, incl. system.posix_acl_* when given
	Extra    map[string]string // free-form protocol fields (e.g. "smb.attrs")

	// Content names a file's data: for files up to one chunk, the chunk
	// object itself; for larger files, a chunk-list object. Zero for an
	// empty file.
	Content Digest
	// Chunked is true when Content names a chunk list rather than the data.
	Chunked bool
	// Subtree names the tree object of a directory.
	Subtree Digest
}

// FileMode returns the io/fs mode of the entry, with type bits set.
func (e *Entry) FileMode() fs.FileMode {
	m := e.Mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	switch e.Type {
	case TypeDir:
		m |= fs.ModeDir
	case TypeSymlink:
		m |= fs.ModeSymlink
	case TypeCharDev:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case TypeBlockDev:
		m |= fs.ModeDevice
	case TypeFIFO:
		m |= fs.ModeNamedPipe
	case TypeSocket:
		m |= fs.ModeSocket
	}
	return m
}
