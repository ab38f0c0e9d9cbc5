// Package smb is the puller for a directory on an SMB share (Windows,
// Samba; method "smb"), over github.com/hirochachacha/go-smb2: SMB 2.0.2
// to 3.1.1, NTLMv2. It registers itself with pullers.Register in init.
//
// # Source
//
//	Options["host"], Options["port"] (445), Options["share"] (required)
//	Options["user"] (required), Options["domain"], Secret["password"]
//	Options["timeout"]  how long one operation may wait for the server
//	                    (Go duration, default 1m); also the connect timeout
//	Options["full"]     "true": no incremental skip in this run
//	Source.Path         directory inside the share ("" or "/" = share root);
//	                    "/" or "\" separators
//	Source.Excludes     globs as for the other pullers
//
// # Protocol
//
// The dialect is negotiated (3.1.1 with Samba 4.17); when the server
// requires encryption ("smb encrypt = required"), go-smb2 encrypts
// (AES-128-GCM/CCM). Refused credentials fail at once with ErrAuth (wraps
// pullers.ErrPermanent).
//
// Known go-smb2 limit: with mandatory signing ("server signing =
// mandatory") go-smb2 rejects Samba's unsigned interim STATUS_PENDING
// replies and operations fail at random with "signing required"; such
// errors carry an explanation naming the server setting to change. Every
// operation is watched: when the server does not answer for
// Options["timeout"], the connection is closed and the pull fails with
// "the server stopped answering" instead of hanging.
//
// # Metadata
//
// SMB gives type, size, mtime (LastWriteTime, 100 ns) and the DOS
// attributes, stored as Extra["smb.attrs"] ("0x%08x"). No POSIX mode or
// owner: directories get 0755, files 0644 (0444 when read-only). Samba
// (without SMB3 POSIX extensions, which go-smb2 lacks) follows symlinks on
// the server and hides hard links; names that are invalid on Windows are
// shown mangled (8.3). A reparse point that the server reports as such is
// recorded as a symlink with its target.
//
// # Concurrency and memory
//
// The walk runs ahead of the sink: while the sink stores one file, up to
// Workers (default 8) further files are being fetched over the same SMB
// session, each with CREATE, then its READs (4 READs of 256 KiB in
// flight per file; the last one asks for a byte past the announced end,
// or one more READ does, so the end of a file costs no extra round
// trip), then CLOSE. Size, times and attributes are those of the open
// handle, as the CREATE response gives them (go-smb2 keeps them
// unexported; read by reflection, with a QUERY_INFO when that fails), so
// a small file costs three requests and no stat. The sink still receives every entry in walk order, from one
// goroutine (pullers/internal/ahead). Fetched content waits in memory
// until the sink takes it: at most MaxInFlight bytes (default 64 MiB) are
// reserved for it, a file that fits gets size+1 bytes, a larger one a
// window of at most 8 MiB refilled as the sink reads; beyond the cap each
// worker may have its 4 reads (1 MiB) on the wire. Progress.Path is the
// file whose fetch is starting; the counters are what the sink stored.
// Directories are listed ahead of the walk (pullers/internal/walk.Lister):
// up to 4 listings at once, the next ones in walk order, at most 16
// listed and not yet walked; the walk's order and result are unchanged.
//
// SMB credits: go-smb2 keeps a balance of 128 credits and, when
// concurrent requests have drained it, sends a request with too low a
// credit charge, which the server rejects (Samba logs "CreditCharge too
// low"; the operation fails with an invalid parameter). Every request of
// a pull therefore first takes its charge from a semaphore of 128: one
// credit per CREATE or CLOSE, one per 64 KiB of a READ, 16 for QUERY_INFO,
// QUERY_DIRECTORY and IOCTL (go-smb2 asks for 1 MiB replies there).
//
// # Hostile servers
//
// Names are checked (pool.ValidName, no backslash), duplicates dropped, a
// directory listing holds at most MaxEntries names (default 1<<20; the
// first ones are kept, read 1024 at a time, and an error naming the
// directory is recorded), directories nest at most MaxDepth deep, at most
// MaxDirs directories (default 1<<20) are descended into per pull (the
// rest are kept empty, with one error), and a file is accepted only with
// exactly the size its open handle reports.
//
// Directory cycles: Samba follows symlinks itself, so "self -> ." or
// "parent -> .." is a directory holding an ancestor again, endlessly.
// go-smb2 exposes no file IDs (no FileInternalInformation, no
// FileIdBothDirectoryInformation), and Samba marks no followed link as a
// reparse point, so a directory is identified by a signature: its own
// attributes, change and write times, and every listed name with its
// attributes, size, change and write times (not the creation time: Samba
// makes it up from the access time when the file system keeps none). A
// directory whose signature equals an ancestor's is a candidate; it is
// confirmed by a probe that appends the path from the ancestor again and
// again (up to 30 times, MaxDepth, or a 4 KiB path) and finds the
// ancestor's listing each time. A confirmed cycle is stored as an empty
// directory with the error "directory cycle: <path> is <ancestor>". A
// link to a directory that is no ancestor (a sibling) is no cycle: its
// contents are stored again under the link's name. Trade-off: a file
// system with coarse timestamps gives a tree made at once equal times,
// so an honest chain that repeats the same names, sizes and times 30
// times over (d/d/d/... with the same files) is taken for a cycle and
// cut; a shorter one costs a probe per level and ancestor and is kept
// whole.
//
// # Incremental
//
// A file whose previous entry has the same size and mtime is reused
// without being read (no request at all).
//
// # Errors and cancellation
//
// A file that vanished or cannot be opened or read is a per-file error
// that does not affect the files fetched with it; a connection that
// stalls (Options["timeout"]) or drops fails the pull. Cancelling ctx
// closes the connection at once, which ends every fetch in flight.
package smb
