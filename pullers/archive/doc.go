// Package archive imports a tar (plain, gzip, zstd or xz) or zip archive
// as a snapshot: the archive's members become a source tree in a pool
// writer, as if a puller had walked them.
//
// # Streaming and order
//
// Members are read once, in archive order. A regular file's content is
// stored as it streams by (pool.Writer.StoreContent, bounded memory, no
// temp file), and only its metadata is kept in memory; when the archive
// has been read and accepted, the tree is added in walk order ("." first,
// names sorted) with each file reusing its stored content. So members may
// come in any order and missing parent directories are made up (0755).
// A zip needs random access: one given as a stream (an upload) is copied
// to Options.TempDir first; a tar never is. xz is decompressed by the xz
// program (Debian xz-utils), gzip and zstd in process.
//
// # Hostile archives
//
// The whole archive is refused (ErrRefused, message naming the member)
// for: absolute member names, ".." elements, backslashes or NUL in names,
// empty or "." elements inside a name, the same path twice (a directory
// given once implicitly and once explicitly is fine), a path that is
// both a file and a directory, symlinks whose target is absolute or
// leaves the tree, hard links to anything but a regular file of the
// archive, tar types other than file/dir/link/symlink/device/FIFO, zip
// members that are not files, dirs or symlinks, and bombs: more than
// Options.MaxRatio bytes unpacked per archive byte (default 200, counted
// on the decompressed stream and, for zip, also per member from its
// header), or more than Options.MaxBytes in total. Nothing is added to
// the sink before the archive is accepted; contents already stored are
// dropped with the writer (Abort) and removed by GC.
//
// # Fetched over a puller
//
// The source method "archive" (Puller) imports an archive file that
// another puller reads from the host: Options["fetch"] names that method
// (sftp, smb, local, …), its options and credentials are the source's,
// and Source.Path is the archive's path. The fetching puller walks only
// the archive's directory (not below it) and only the archive is read,
// streaming into Import.
//
// Kept metadata: tar mode (incl. setuid/setgid/sticky), uid/gid and
// names, mtime, symlink targets, hard links (one group per inode),
// device numbers, PAX SCHILY.xattr.* attributes; zip mode and modified
// time.
package archive
