// Package fusefs mounts the read-only restore tree with go-fuse v2. It is a
// thin adapter: every name, size and byte comes from the pool's io/fs.FS.
//
// # Imports
//
// fusefs may import pool only (the restore tree). Every write returns EROFS.
package fusefs
