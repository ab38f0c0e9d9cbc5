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
// Backends:
//
//	Backend: Put / Get(off, length) / Stat / List(prefix) / Delete / Location; Syncer: Sync; TempCleaner: CleanTemp
//	OpenBackend(ctx, location, OpenBackendOptions) (Backend, error)  // "DIR", "file://…", "s3://…"; decorators composed in one place; s3 opening retried (OpenRetries, open_retries=N)
//	RegisterBackend(scheme, BackendFactory), BackendSchemes(), RedactLocation(location)
//	Decorate(b, DecorateOptions) Backend          // retry, read-after-write verify, rate and concurrency limits
//	NewDirBackend(dir), CreateDirBackend(dir) (*DirBackend, error)  // (*DirBackend).Close
//	NewS3Backend(ctx, S3Config) (*S3Backend, error)  // one attempt; OpenS3(ctx, S3Config, OpenBackendOptions) retries
//	ValidateName(name) error, ValidName(element) bool
//	ErrNotFound, ErrTransient, ErrInvalidName
//
// Pools and objects:
//
//	Init(ctx, b, InitOptions) (*Pool, error)      // writes the identity file; optional encryption key (ErrExists)
//	Open(ctx, b, OpenOptions) (*Pool, error)      // ErrIdentity (wrong/missing storage), ErrNoKey, ErrWrongKey
//	(*Pool).ID, ExpectID, Created, Encrypted, Location, Backend
//	(*Pool).Hash(data) Digest                      // keyed when encrypted
//	(*Pool).Put(ctx, kind, data) (Digest, bool, error)  // idempotent; bool reports a new object
//	(*Pool).PutDigest, PutDigestSize               // digest already known
//	(*Pool).Get(ctx, d) (Kind, []byte, error)      // verified: ErrCorrupt, ErrNotFound
//	(*Pool).Exists / Has(ctx, d) (bool, error)
//	(*Pool).PutNamed / GetNamed / DeleteNamed      // verified non-content objects (manifests, locks)
//	(*Pool).ListObjects(ctx, fn), DeleteObject, Quarantine; ObjectName(d), QuarantineName(d)
//	(*Pool).Sync(ctx) error                        // the one durability barrier
//	(*Pool).CleanTemp(ctx, cutoff) (int, error)    // leftover temporary files of crashed Puts
//	Digest (String, ParseDigest, IsZero, text marshalling), Kind, Chunks(data) []int
//
// Snapshots:
//
//	(*Pool).NewWriter(ctx, SnapshotMeta) (*Writer, error)  // takes a writer lock; SetWriterConcurrency(n)
//	(*Writer).Add(ctx, path, Entry, io.Reader) error  // walk order, "." first; ErrEntry: entry rejected, writer usable;
//	                                                  // ErrContentMissing: reused content gone, add again with a reader
//	(*Writer).RecordError(path, err)                  // per-file error → partial
//	(*Writer).AddStream(ctx, path, Entry, io.Reader) (int64, error)  // file of unknown size, read to EOF
//	(*Writer).StoreContent(ctx, io.Reader) (Entry, error)  // content now, entry later (Add with Content, nil reader)
//	(*Pool).NewWriterWith(ctx, SnapshotMeta, WriterOptions{Checkpoint: CheckpointOptions{Every, Bytes, Files, OnCheckpoint}})
//	(*Writer).Checkpoint(ctx) (*Manifest, error), Checkpointed()  // partial manifest of the same ID, replaced by Finish
//	(*Writer).Finish(ctx) (*Manifest, error), Abort(), Stats(), ID()
//	(*Pool).Snapshots(ctx, fn), SnapshotIDs(ctx), Snapshot(ctx, id), DeleteSnapshot(ctx, id)
//	(*Manifest).RootDir() Entry                       // the source root directory's own metadata
//	(*Pool).ReadTree(ctx, d) ([]Entry, error), Lookup(ctx, root, path) (Entry, error)
//	EncodeTree(entries), DecodeTree(b); Entry, EntryType
//	(*Pool).OpenContent(ctx, *Entry) (*ContentReader, error)  // io.ReaderAt + io.ReadSeeker + WriterTo
//	(*Pool).SnapshotFS(ctx, *Manifest) fs.FS, (*Pool).FS(ctx) fs.FS  // *TreeFS: Stat, ReadDir, ReadLink, Lstat, Refresh
//
// Maintenance:
//
//	(*Pool).GC(ctx, GCOptions) (GCReport, error)   // ErrLocked while a foreign backup runs; ErrImagePool on an image pool
//	(*Pool).SetLockRegistry(LockRegistry)          // a registry of live processes (cluster instances) makes a dead owner's locks stale at once
//	(*Pool).Check(ctx, CheckOptions) (CheckReport, error)  // structure, --read-data scrub (Percent or a Select slice), re-reads before quarantine
//	(*Pool).VerifyContent(ctx, *Entry, io.Reader) error      // restore test: bytes vs the entry's recorded digests
//
// Replication (FORMAT.md §9):
//
//	(*Pool).Replicate(ctx, dst Backend, ReplicateOptions) (ReplicateReport, error)  // missing objects only, manifests last, resumable; ErrNotReplica
//	ReplicaSnapshots(ctx, b) ([]string, error)                // snapshot IDs on any pool backend, no key needed
package pool
