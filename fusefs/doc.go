// Package fusefs mounts the read-only restore tree with go-fuse v2. It is a
// thin adapter: every name, size and byte comes from an io/fs.FS (in Cairn,
// (*pool.Pool).FS), so the mount shows exactly what WebDAV and downloads
// show.
//
// # Imports
//
// fusefs may import pool only (for *pool.Entry in FileInfo.Sys()).
//
// # Contract with the tree
//
//   - Paths are /<host>/<snapshot>/<source>/…; everything three or more
//     elements deep is immutable, so its entries, attributes and file pages
//     are cached by the kernel (entry/attr timeout Options.CacheTimeout,
//     FOPEN_KEEP_CACHE). The root, host directories and the snapshot entries
//     (including the latest symlink) use the short Options.VolatileTimeout,
//     and directory listings are never cached, so new snapshots appear
//     without a remount.
//   - Symlinks need fs.ReadLinkFS (Lstat + ReadLink); without it the tree is
//     walked with fs.Stat.
//   - Files should implement io.ReaderAt (else io.Seeker, else they are read
//     sequentially): a read at any offset then touches only what it covers.
//   - FileInfo.Sys() may be a *pool.Entry (uid/gid, ns mtime, rdev, xattrs,
//     hard-link id) or a *syscall.Stat_t.
//   - A tree that caches its snapshot list (Refresher, like *pool.TreeFS)
//     is refreshed at most every Options.RefreshInterval, when the kernel
//     asks about the volatile levels.
//
// # Invariants
//
//   - Lookups are lazy: a lookup reads one entry, a listing streams one
//     directory in batches. Nothing walks the whole tree.
//   - Inode numbers are deterministic: FNV-1a of the path, or of
//     (host/snapshot, hard-link id) for hard links, which therefore share one
//     inode. The root is 1.
//   - Read-only three times over: the "ro" mount option, MS_RDONLY when
//     mounting directly as root, and EROFS from every write operation.
//   - default_permissions: the kernel checks each file's recorded owner and
//     mode, so with AllowOther a user reads only what the source host would
//     have let that uid read.
//   - Hard links report nlink 2 (the tree records link groups, not their
//     size) unless the entry carries Extra["nlink"].
//   - Unmount falls back to a lazy unmount when busy; ClearStale (also run
//     by Mount) removes a mount whose server died.
package fusefs
