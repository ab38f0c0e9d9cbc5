// Package webdav serves the read-only restore tree over WebDAV (class 1),
// for desktop file managers and clients such as rclone and cadaver. It is a
// thin adapter over an io/fs.FS (in Cairn, (*pool.Pool).FS), built on
// golang.org/x/net/webdav.
//
// # Authentication
//
// NewHandler does NO authentication or authorisation. Callers MUST wrap it
// in the appliance's auth middleware, and MUST pass an fs.FS already
// restricted to the hosts the user may see (hidden hosts then answer 404,
// never 403, so their names do not leak).
//
// # Read-only, twice
//
//   - Method level: OPTIONS, GET, HEAD and PROPFIND only. OPTIONS answers
//     "DAV: 1" and "Allow: OPTIONS, GET, HEAD, PROPFIND" (no class 2, so
//     clients do not try LOCK); every other method gets 405 with that Allow
//     header.
//   - File-system level: the x/net/webdav FileSystem adapter returns
//     os.ErrPermission for every write (Mkdir, RemoveAll, Rename, OpenFile
//     with any write flag), in case a method slips past the filter.
//
// # Paths
//
// CleanPath turns a request path into an fs.FS name. It rejects NUL bytes
// and invalid UTF-8 (so overlong encodings of "." and "/" are refused, not
// decoded), and resolves "." and ".." lexically against the root, so no
// path can climb out of the tree. A backslash is an ordinary character, as
// it is in a Linux file name. Names that are not valid UTF-8 are therefore
// not reachable over WebDAV.
//
// # Symlinks
//
// A symlink is shown as what it points to (so /<host>/latest is a
// directory, the newest snapshot), resolved inside the tree with at most 40
// hops. Absolute targets, targets that climb above the root, and targets
// that leave the link's own host are treated as missing: they are left out
// of listings and answer 404. Staying within one host means a link can
// never reveal a host the caller's view hides.
//
// # Properties and freshness
//
// ETag is the pool's content digest when FileInfo.Sys() is a *pool.Entry
// (so it is the same for the same content in every snapshot), else
// x/net/webdav's mtime+size; the content type comes from the extension, so
// PROPFIND never opens files. GET supports Range and conditional requests
// (http.ServeContent). A tree that caches its snapshot list (Refresher,
// like *pool.TreeFS) is refreshed at most every RefreshInterval.
//
// # Caching
//
// A Cache (Options.Cache; NewHandler makes one per handler) keeps, across
// requests:
//
//   - Lstat results of immutable paths (Options.Immutable; PoolLayout for
//     a *pool.TreeFS: three or more elements deep, inside a snapshot),
//     keyed by real path, at most CacheOptions.MaxEntries (default 50,000,
//     about 20 MiB). Resolving a request path walks it element by element
//     (for the symlink rules above); with the cache that walk no longer
//     re-reads the tree from the root for each element, and the entries a
//     PROPFIND lists are remembered for the Stat that follows each.
//   - Decoded blocks of files larger than one block (fusefs/blockcache,
//     CacheOptions.BlockBytes, default 16 MiB), keyed by content digest:
//     a GET reads ahead of the client and a file fetched twice (or the
//     same content in two snapshots) is decoded once. Smaller files are
//     read straight from the pool, which keeps their decoded object.
//
// A Cache may be shared by handlers over different views of one tree (the
// appliance's per-user host filters): an immutable path has at least three
// elements, and the first two (the host) are always asked of the view
// itself, so a hidden host fails before the cache is consulted.
//
// Files are opened on first read, not by OpenFile: x/net/webdav opens every
// entry of a PROPFIND only to Stat it. GET and HEAD answers are typed by
// extension (as getcontenttype is), so no file is read to sniff its type.
//
// # Depth
//
// PROPFIND takes Depth 0 or 1. Depth infinity (also the default when the
// header is missing) is refused with 403 and the RFC 4918
// propfind-finite-depth precondition, so one request cannot walk a pool.
package webdav
