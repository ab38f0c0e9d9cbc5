// Package local is the puller for a directory on this machine (method
// "local"). It registers itself with pullers.Register in init.
//
// # Walk
//
// The source is walked depth first, each directory's names in byte order,
// every entry emitted before its children. All access is relative to an
// open directory descriptor (openat/fstatat/readlinkat), and nothing below
// the source root is ever followed: entries are stat'ed with
// AT_SYMLINK_NOFOLLOW and opened with O_NOFOLLOW, and an opened file or
// directory whose device/inode differs from what was stat'ed (it was
// swapped during the walk) is a per-file error. The root path itself is
// resolved normally: it is what the user named.
//
// # Metadata
//
// Entries carry mode (permissions + setuid/setgid/sticky), uid/gid and
// their names (looked up once per id), mtime in ns, size, symlink targets
// verbatim, device numbers, and all extended attributes including POSIX
// ACLs (system.posix_acl_*). Hard links are grouped by (device, inode) into
// Entry.HardLink ids, unique within one pull.
//
// # Options
//
//	Source.Excludes            glob patterns (path.Match) relative to the
//	                           root, tried on every path element and on the
//	                           whole relative path; a leading "/" anchors
//	                           nothing more (paths are always relative).
//	Options["one_file_system"] "true": do not descend into directories on
//	                           another device (the mount point itself is kept).
//	Options["max_dir_entries"] a positive number: at most that many names
//	                           are read from one directory (the first the
//	                           kernel returns); more are a per-file error
//	                           (ErrTooManyEntries) on the directory. Default
//	                           Puller.MaxEntries, else no cap (the tree is
//	                           the appliance's own, not a hostile server's).
//
// # Errors
//
// A file that vanishes, cannot be opened or read, or shrinks while being
// read is recorded with Sink.RecordError and the walk goes on. A file that
// grows while being read is stored with the size seen at stat time and the
// growth is recorded as an error too. Only a failing Sink, an unreadable
// source root or cancellation fail the pull.
//
// # Incremental
//
// A regular file whose previous entry has the same type, size and mtime is
// emitted with the previous Content/Chunked and a nil reader: it is not
// opened or read.
package local
