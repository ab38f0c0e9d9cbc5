// Package images is the block-image pool: fixed 4 MiB aligned blocks,
// all-zero blocks elided as holes, an image version as a manifest of its
// size and ordered block digests. Its format is documented in FORMAT.md.
//
// # Storage
//
// An image pool is a pool.Pool on its own backend or root, with its own
// identity and a marker object (cairn-images.json). Blocks are ordinary
// pool objects, so they are addressed, compressed and encrypted exactly
// like file-pool objects. Never run pool.GC on an image pool: it knows
// only file snapshots. Use (*Store).GC.
//
// # Invariants
//
//   - A version's blocks are durable before its manifest is written.
//   - A version stores only blocks not already in the pool; with a basis
//     (VersionOptions.Prev) an unchanged block costs no write.
//   - Readers verify every block against its digest; holes cost no I/O.
//   - GC never deletes a block referenced by a manifest, held by a version
//     writer of this process, or younger than the grace period.
//
// # API
//
//	Init(ctx, backend, pool.InitOptions, log) (*Store, error)  // new image pool
//	Open(ctx, backend, pool.OpenOptions, log) (*Store, error)  // ErrNotImagePool for a file pool
//	(*Store).IngestReaderAt(ctx, name, io.ReaderAt, size, IngestOptions) (*Manifest, Stats, error)
//	(*Store).NewVersion(ctx, name, size, VersionOptions) (*VersionWriter, error)  // for other sources
//	(*VersionWriter).Put / PutZero / Reuse / Commit / Abort
//	(*Store).Versions(ctx, fn), Load(ctx, name, id), Latest(ctx, name), Delete(ctx, name, id)
//	(*Store).Open(ctx, *Manifest) *Image   // io.ReaderAt + io.ReadSeeker + Size()
//	(*Store).GC(ctx, pool.GCOptions) (GCReport, error)
//	(*Store).Check(ctx, pool.CheckOptions) (CheckReport, error)
//	(*Store).Replicate(ctx, dst, ReplicateOptions) (ReplicateReport, error) // FORMAT.md §7
//	(*Store).DeleteVersionsOf(ctx, gone)   // a replica's retention: versions of removed placeholders
//	NewTree(ctx, pool.FS(…), filePool, openStore) *Tree  // restore tree with images overlaid
//	Placeholder(*pool.Manifest) (name, id, ok)            // the version a snapshot stands for
//
// # Restore tree
//
// The appliance ties each version to a placeholder snapshot in the file
// pool (FORMAT.md §6); Tree shows it as
// /<host>/<snapshot-time>/images/<source>.img, a raw read-only file with
// random access (holes read as zeros), for FUSE, WebDAV and downloads.
//
// Package images/sshsrc pulls over SSH with differential transfer and
// restores over SSH writing only the blocks that differ.
//
// # Imports
//
// images may import pool only.
package images
