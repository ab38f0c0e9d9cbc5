// Package tar is the tar-over-SSH puller (method "tar"): it runs GNU tar
// on the host through an SSH session and parses the stream with
// archive/tar straight into the sink, with no temporary files. The host
// needs only sshd, GNU tar and (for hard-link groups) GNU find. It
// registers itself with pullers.Register in init.
//
// # Source
//
//	Options["host"], ["port"]  SSH address (default: the job's host, 22)
//	Options["user"]            login (default root)
//	Options["host_key"]        pinned host key, authorized_keys format; empty:
//	                           trust on first use, reported by SeenHostKey /
//	                           OnHostKey; a different key fails with
//	                           ErrHostKeyChanged (permanent)
//	Options["timeout"]         connect and handshake timeout, default 30s
//	Options["one_file_system"] "true": tar --one-file-system
//	Secret["private_key"], ["passphrase"], ["password"]
//	Source.Path                directory on the host (tar -C Path .)
//	Source.Excludes            globs (path.Match) on every path element and
//	                           on the whole relative path, applied to the
//	                           stream (tar still reads excluded files)
//
// The full pull's command is `LC_ALL=C tar --create --file=-
// --format=posix --sort=name --hard-dereference --sparse --xattrs
// --xattrs-include=* --ignore-failed-read -C Path .`, every argument
// shell-quoted.
//
// # Metadata carried (conformance: every field of the scenario)
//
// PAX keeps long names and paths past 4096 bytes, mtimes in ns, owner ids
// and names, mode with setuid/setgid/sticky, symlink targets, devices,
// FIFOs, and xattrs (SCHILY.xattr.*, including system.posix_acl_* when tar
// sends them). Sparse files arrive expanded (holes as zeros; the pool's
// chunking stores the zero runs once). Hard links: tar sends every link
// as a full file (--hard-dereference), and a listing made first
// (find -links +1 -printf '%D:%i %P') gives each group one Entry.HardLink
// id; the content is stored once by deduplication.
//
// # Hostile streams
//
// Every member name is validated: relative after "./", no "..", empty or
// "." elements, no NUL; a refused directory's children are refused too.
// Hard-link members are refused (an honest host sends none), symlinks are
// recorded and never followed, a member's content must be exactly its
// size, and a stream that breaks inside a member fails the pull (nothing
// after it can be trusted). Members out of depth-first order are refused
// by the sink and recorded. Each refusal is a per-file error.
//
// # Errors
//
// tar's per-file complaints on stderr ("tar: ./x: Cannot open: Permission
// denied", "File removed before we read it") become per-file errors; exit
// status 1 (a file changed while read) and 2 with such complaints keep the
// snapshot (partial); any other failure fails the pull with the tail of
// tar's stderr.
//
// # Limits of streaming
//
// tar runs ahead of the puller by the pipe and SSH window buffers, so
// changes made while the pull runs may or may not be seen; tar itself
// reports files that changed while it read them.
//
// # Incremental
//
// With a previous snapshot (and not Options["full"]="true"), the host is
// listed first (GNU find: type, size, mtime in ns, mode, uid, gid, path),
// sorted in walk order. A regular file whose previous entry has the same
// size and mtime is reused without being transferred (mode and owner from
// the listing, so a chmod is seen; xattrs from the previous snapshot).
// Everything else is named to tar on stdin (--no-recursion --null
// --verbatim-files-from --files-from=-) in the same order, and the stream
// is merged with the reused entries in lockstep. Deleted files are simply
// not in the listing. The test checks that an incremental snapshot after
// changes has exactly the root of a full pull. The listing is held in
// memory (about 100 bytes per path). A tree with a path past PATH_MAX
// (which tar cannot name explicitly) is pulled in full.
package tar
