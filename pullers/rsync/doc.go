// Package rsync is the puller for hosts that run rsync (method "rsync"):
// an rsync daemon (rsync://host/module, with or without "auth users") or
// rsync over SSH (the remote "rsync --server --sender"). It registers
// itself with pullers.Register in init.
//
// # Implementation
//
// A native Go receiver of the rsync protocol. It was chosen over driving
// the rsync binary into a staging directory because it streams every file
// straight into the sink and reads delta basis blocks from the pool:
// nothing is staged, and no local rsync is needed.
//
// Protocol 31 (rsync 3.1 and newer; 30 with rsync 3.0) is what it offers;
// Puller.Negotiated reports what a pull used. From 30 on: the sender's
// compat flags, MD5 chosen by checksum negotiation (block sums MD5 with
// the seed first, per CF_CHKSUM_SEED_FIX; whole-file sums plain MD5),
// varint/varlong file-list fields (flags as varints with 'v'), file
// indexes sent as deltas, item flags on every request and answer, both
// directions multiplexed, and the phase sequence (end of transfers, redo,
// delayed updates, deletions at 31) and goodbye of a client receiver.
// The capability string is -e.LfxCIvu: not 'i' (incremental recursion),
// so the whole list comes first. A sender older than protocol 30 (rsync
// 2.x) gets protocol 27, the fallback kept from the first version: MD4
// sums, 32-bit mtimes, no xattrs or ACLs. Puller.Protocol caps the offer
// (27 forces the fallback).
//
// # Source
//
//	Options["host"]            host name or address (required)
//	Options["transport"]       "daemon" (default) or "ssh"
//	Options["port"]            default 873 (daemon) or 22 (ssh)
//	Options["module"]          daemon module (required for the daemon)
//	Source.Path                path inside the module (daemon) or on the host (ssh)
//	Options["user"]            daemon "auth users" name, or SSH login
//	Options["host_key"]        ssh: pinned host key (authorized_keys format);
//	                           empty: any key is accepted and reported by
//	                           SeenHostKey; a different key: ErrHostKeyChanged
//	Options["rsync_path"]      ssh: the remote rsync binary (default "rsync")
//	Options["one_file_system"] "true": rsync -x
//	Options["numeric_ids"]     "true": --numeric-ids (no owner names)
//	Options["full"]            "true": no incremental skip in this run
//	Options["xattrs"]          "true": rsync -X (protocol 30+)
//	Options["acls"]            "true": rsync -A (protocol 30+)
//	Options["timeout"]         connect/handshake timeout, default 30s
//	Options["io_timeout"]      a read waiting longer fails the pull, default 15m
//	Secret["password"]         daemon module secret, or SSH password
//	Secret["private_key"], Secret["passphrase"]  SSH key
//	Source.Excludes            sent to the sender as "- PATTERN" rules
//
// Daemon auth is rsync's challenge/response: base64 of MD5(password,
// challenge) from protocol 30 on (our greeting offers only md5), MD4(seed
// 0, password, challenge) at 27. A refusal is ErrAuth (wraps
// pullers.ErrPermanent).
//
// # What is carried
//
// The sender runs with -lptgoDrH (plus X and A when asked): type,
// permissions (with setuid/setgid/sticky), uid/gid with their names (the
// sender's id lists; uid/gid 0 is "root" unless the sender names it; none
// with Options["numeric_ids"]="true" or a daemon configured "numeric
// ids"), mtime (with nanoseconds at protocol 31, whole seconds before),
// symlink targets (never followed), device numbers, FIFOs and sockets,
// and hard links (regular files of one inode share an Entry.HardLink id).
//
// With Options["xattrs"] the sender's xattrs (all but system.*, as far as
// the sender may read them) are stored in Entry.Xattrs. rsync
// sends values over 32 bytes as their MD5 in the file list; the receiver
// takes a value from the previous snapshot when the MD5 matches, else asks
// for it in the transfer phase (one request per xattr set: entries sharing
// a set get it from that answer). Values are limited to 16 MiB each.
// With Options["acls"] the access ACL (and a directory's default ACL) is
// rebuilt from rsync's form (which leaves out what the mode says) into
// Linux's system.posix_acl_access / system.posix_acl_default values, so
// they read back exactly as the kernel stores them; an ACL the mode fully
// describes is not stored, as Linux does not store one. Named ACL entries
// keep their numeric ids (no name mapping).
//
// # Walk order
//
// rsync sorts its file list (by full name at 27; from 29 each directory's
// files before its subdirectories); both sides number the entries by that
// order. The receiver rebuilds the tree and emits it depth first, parents
// first, names in byte order. Files are requested in that order, so the
// sender's answers come back in it and stream into the sink one after
// another. Without incremental recursion the whole list arrives before
// any data and is held in memory; incremental recursion would bound it.
//
// # Incremental and delta
//
// A file whose previous entry has the same size and mtime is reused
// without a request. A changed file is requested with the block
// checksums (rolling + MD5, or MD4 at 27; rsync's sqrt block size, at
// most 8 KiB) of its previous version when j.Previous implements Basis;
// matched blocks are read from the pool, literal data from the wire, and
// the result goes straight into the sink. The whole-file sum the sender
// sends is verified; a mismatch (or a file that changed size during the transfer)
// is a per-file error. Files the sender could not read (vanished,
// permission denied) are per-file errors carrying the server's message.
// Deleted files are simply absent from the new snapshot.
//
// The work overlaps. The generator goroutine buffers its requests (they
// go out before and after each basis's sums, not one by one) and reads a
// basis over 1 MiB a piece ahead of its sums on a goroutine of its
// own. The receiver feeds the sink (the pool hashes and chunks there),
// and the whole-file MD5 of a file of 1 MiB or more runs on another
// goroutine, on copies of its bytes.
//
// # Restore
//
// Puller.Restore writes a snapshot subtree back over SSH: this package is
// the rsync sender and the remote "rsync --server -lptgoDr --numeric-ids"
// the receiver, by default into a new directory cairn-restore-<time>
// inside Source.Path (RestoreOptions.Dest overrides it; an existing
// directory is written into). Files go whole (literal data plus the
// whole-file MD4, no block matching); mode, numeric owner, mtime,
// symlinks and devices are kept; hard links become copies. The restore
// speaks protocol 27, so xattrs and ACLs are not written back (nor
// sub-second mtimes). Not over the daemon (modules are usually
// read-only).
//
// # Hostile servers
//
// Every name is checked (relative, no "." or ".." or empty elements, no
// NUL, at most 4096 bytes); every entry must sit under a listed
// directory; sizes, counts (MaxEntries), literal tokens, block indexes,
// symlink targets and out-of-band messages are bounded; so are xattr
// counts, name and value lengths, ACL entry counts, and the xattr and ACL
// bytes of one list (256 MiB); references to earlier xattr sets, ACLs and
// hard-link leaders must be in range. A malformed or
// truncated message fails the pull with an error wrapping ErrProtocol;
// the sink never sees a path the checks did not pass.
package rsync
