// Package pool is Cairn's content-addressed store: objects named by their
// BLAKE3 digest, compressed with zstd where it pays, optionally encrypted,
// on a Backend (a local directory or S3). On top of objects it builds file
// contents (chunk lists), directory trees, snapshot manifests, the read-only
// restore tree (an io/fs.FS), GC and check/scrub.
//
// # Imports
//
// pool imports no other package of this module. Everything else builds on it.
//
// # Format
//
// The on-disk format is a versioned contract documented in FORMAT.md.
//
// # API (the contract other packages use)
//
// Storage and objects (storage half):
//
//	OpenBackend(ctx, location) (Backend, error)   // "DIR" or "s3://…"; decorators composed in one place
//	Init(ctx, b, InitOptions) (*Pool, error)      // writes the identity file; optional encryption key
//	Open(ctx, b, OpenOptions) (*Pool, error)      // reads identity: wrong/missing → ErrIdentity
//	(*Pool).ID() string                            // pool UUID
//	(*Pool).Put(ctx, kind, data) (Digest, bool, error)  // idempotent; bool reports a new object
//	(*Pool).Get(ctx, d) (Kind, []byte, error)      // verifies digest; ErrCorrupt, ErrNotFound
//	(*Pool).Has(ctx, d) (bool, error)
//	(*Pool).Sync(ctx) error                        // the one durability barrier
//
// Structure half:
//
//	(*Pool).NewWriter(ctx, SnapshotMeta) (*Writer, error)
//	(*Writer).Add(ctx, path, Entry, io.Reader) error  // walk order, parents first
//	(*Writer).RecordError(path, err)                  // per-file error → partial
//	(*Writer).Finish(ctx) (*Manifest, error)
//	(*Pool).Snapshots(ctx, fn) error, (*Pool).Snapshot(ctx, id) (*Manifest, error)
//	(*Pool).SnapshotFS(ctx, *Manifest) fs.FS, (*Pool).FS(ctx) fs.FS
//	(*Pool).GC(ctx, GCOptions) (GCReport, error), (*Pool).Check(ctx, CheckOptions) (CheckReport, error)
package pool
