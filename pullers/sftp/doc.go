// Package sftp is the puller for a directory on a host that runs an SSH
// server with SFTP (method "sftp"), over github.com/pkg/sftp and
// golang.org/x/crypto/ssh. Nothing is installed on the host. It registers
// itself with pullers.Register in init.
//
// # Source
//
//	Options["host"]      host name or address (required)
//	Options["port"]      default 22
//	Options["user"]      login name (required)
//	Options["host_key"]  the pinned host key, authorized_keys format
//	                     ("ssh-ed25519 AAAA…"). Empty: any key is accepted
//	                     and reported (Puller.SeenHostKey, Puller.OnHostKey)
//	                     so the caller can pin it (trust on first use). A
//	                     different key fails with ErrHostKeyChanged, which
//	                     wraps pullers.ErrPermanent and names both
//	                     SHA256 fingerprints.
//	Options["paths"]     more remote paths, comma-separated (see Paths)
//	Options["timeout"]   connect and handshake timeout (Go duration), default 30s
//	Options["full"]      "true": no incremental skip in this run
//	Options["full_every"] N days: every file is re-read once every N days,
//	                     a different 1/N of the files each day (chosen by a
//	                     hash of the path), to catch changes that kept
//	                     size and mtime (BackupPC's periodic full)
//	Secret["password"]     password (also answers keyboard-interactive)
//	Secret["private_key"]  private key, PEM/OpenSSH format
//	Secret["passphrase"]   for an encrypted private_key
//	Source.Excludes      globs (path.Match) tried on every path element and
//	                     on the whole path relative to the snapshot root
//
// Refused credentials fail at once with ErrAuth (wraps
// pullers.ErrPermanent): one clear message, no retry.
//
// # Paths
//
// With one path (Source.Path, or one entry in Options["paths"]) the
// snapshot root is that directory; it may be relative to the login
// directory and is followed if it is a symlink. With several, each must be
// absolute and is stored at its own location below the snapshot root
// ("/etc" as etc/, "/srv/www" as srv/www/, with srv stat'ed on the way);
// a path inside another is pulled once.
//
// # Walk and metadata
//
// Depth first, names in byte order. SFTP v3 attributes give type, mode
// (with setuid/setgid/sticky), uid/gid and mtime in whole seconds; owner
// names, hard links, xattrs and sub-second times are not carried.
// Symlinks are recorded with their target (READLINK) and never followed.
// A regular file's metadata is taken from the open handle (FSTAT), so
// size and content belong together.
//
// # Concurrency and memory
//
// The walk runs ahead of the sink: while the sink stores one file, up to
// Workers (default 8) further files are being fetched over the same SSH
// session, each with OPEN, then FSTAT and its READs sent together (64
// requests of 32 KiB in flight per file; the last one asks for a byte
// past the announced end, or one more READ does, so the end of a file
// costs no extra round trip), then
// CLOSE. The sink still receives every entry in walk order, from one
// goroutine (pullers/internal/ahead). Fetched content waits in memory
// until the sink takes it: at most MaxInFlight bytes (default 64 MiB) are
// reserved for it, a file that fits gets size+1 bytes, a larger one a
// window of at most 8 MiB that is refilled as the sink reads, so a server
// announcing huge files cannot make memory grow. Beyond the cap, each
// worker may have its 64 reads (2 MiB) on the wire. Workers = 1 fetches
// one file at a time (still one ahead of the sink). Progress.Path is the
// file whose fetch is starting; the counters are what the sink stored.
// Previous snapshot lookups (the incremental skip) run in the walk, so a
// reused file costs no request at all.
//
// Directories are listed ahead of the walk (pullers/internal/walk.Lister):
// up to 8 listings (OPENDIR, READDIRs, CLOSE) at once over the same
// session, always the next ones in walk order, at most 32 listed and not
// yet walked. The walk's order and what it stores are the same as with
// one listing at a time; only the waiting for round trips overlaps. A
// listing, READLINK or LSTAT that failed because the session dropped
// under another request is tried again on the new session (Retries
// times).
//
// # Hostile servers
//
// Every name is checked (pool.ValidName: no "/", NUL, "." or ".."; pkg/sftp
// takes path.Base first) and duplicates are dropped; a file whose data is
// shorter or longer than the size its handle reports is a per-file error
// (at most size+1 bytes are accepted); one listing may send at most
// MaxListBytes (then the entries so far are kept, an error is recorded and
// the session is replaced); one directory may hold at most MaxEntries
// names (default 1<<20; the first ones are kept and an error naming the
// directory is recorded). Both are counted on the SSH_FXP_NAME replies as
// they arrive, each listing's own (told apart by the handle its OPENDIR
// got and the ids of its READDIRs, read off the packets both ways), so
// file data and other listings read meanwhile do not count, and a
// listing is cut without being held in memory whole. Directories nest at most
// MaxDepth deep. Nothing is ever written on the host by a pull.
//
// # Errors and retries
//
// A file that vanished, cannot be opened or read, or changed size while
// being read is recorded with Sink.RecordError. When the connection drops,
// it is re-established and the file is tried again (Retries times), then
// recorded as a per-file error; files fetched ahead on the lost session
// are fetched again on the new one (each such retry counts against
// Retries); after 10 reconnects the pull fails. One file's failure never
// affects the files fetched with it. Cancelling ctx closes the connection
// at once, which ends every fetch in flight.
//
// # Incremental
//
// A regular file whose previous entry has the same type, size and mtime
// (seconds) is emitted with the previous content and not opened, unless
// Options full / full_every select it for a re-read.
//
// # Restore
//
// Restore writes a snapshot subtree back to the host over SFTP, by default
// into a new directory cairn-restore-<time> next to the source, keeping
// mode and mtime.
package sftp
