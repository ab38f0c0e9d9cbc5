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
// # Caching, and what it costs in memory
//
// Four layers, each bounded:
//
//   - The kernel: entries and attributes inside snapshots are cached for
//     Options.CacheTimeout (1 hour), file pages are kept across opens
//     (FOPEN_KEEP_CACHE) and listings too (FOPEN_CACHE_DIR). READDIRPLUS
//     answers each listed entry's lookup from the listing itself, so
//     ls -l, find and tar need no LOOKUP per name. The kernel bounds and
//     reclaims these under memory pressure.
//   - Requests per file: the first open of a file inside a snapshot
//     answers ENOSYS and the first close's FLUSH too, after which the
//     kernel opens and closes files without asking (no OPEN, RELEASE or
//     FLUSH; pages are kept as with FOPEN_KEEP_CACHE) and sends reads
//     without a handle. Reading a small file cold is then one READ, not
//     four requests. A node that was read keeps its reader (for a pool
//     file: the chunk list, ~50 bytes a MiB) until the kernel forgets the
//     inode. The catch: this holds for the whole mount, so a tree with
//     regular files outside snapshots (Cairn has none) gets their pages
//     kept too, dropped only when their size or mtime is seen to change
//     (FUSE_AUTO_INVAL_DATA), and an unreadable file fails on its first
//     read rather than on open.
//   - Node attributes: a node inside a snapshot keeps its Lstat result and
//     directory link count; nodes live as long as the kernel remembers the
//     inode (it sends FORGET when it drops one).
//   - The block cache (fusefs/blockcache), one per mount, at most
//     Options.CacheBytes (default 64 MiB) of decoded data of files larger
//     than one block, in aligned 1 MiB blocks keyed by content digest, so
//     the same content in two snapshots is decoded once. A block is fetched
//     once however many reads want it at the same time (kernel read-ahead
//     sends several), a read is answered from the blocks without a copy
//     (each held until go-fuse has written the reply, so that an evicted
//     block's buffer is reused for the next fetch rather than a fresh MiB
//     faulted in), and two background workers read ahead: the next 2 blocks of
//     a file read forward, and the whole of a file of at most half the cap
//     that is read at random (after 4 misses out of order). Read-ahead is
//     skipped, never queued, while both workers are busy. Files of one
//     block are read straight from the pool, whose cache keeps the decoded
//     object: copying it into a block would only cost time.
//   - Directory read-ahead: the regular files of listed directories inside
//     snapshots (name, size, digest: about 100 bytes a file, an LRU of at
//     most 100,000 files over all directories). When two files of a
//     directory are opened in listing order, as tar, cp -r and rsync do,
//     the next 8 files (at most 4 MiB) are fetched in the background on
//     the block cache's workers: a small file into the pool's cache (its
//     reader waits for that fetch rather than doing it twice), the first
//     block of a larger one into the block cache. A single open, or opens
//     out of order, fetch nothing extra.
//   - Subdirectory read-ahead: listing a directory inside a snapshot reads
//     the trees of its subdirectories (those past the first third, where
//     READDIRPLUS's own link counting starts) on the same two workers, into
//     the pool's tree cache, so a cold ls -R or find waits on several disk
//     reads at once rather than one after another.
//
// Below these, the pool keeps its own LRUs of decoded trees (8 MiB) and
// chunks (32 MiB), shared by everything that reads the pool. A mount's
// memory is therefore about 64 + 40 MiB of caches, up to 8 MiB of idle
// block buffers and go-fuse's request buffers, whatever the size of the
// tree.
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
