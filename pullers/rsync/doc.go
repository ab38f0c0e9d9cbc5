// Package rsync is the puller for hosts that run rsync (method "rsync"):
// an rsync daemon (rsync://host/module, with or without "auth users") or
// rsync over SSH (the remote "rsync --server --sender"). It registers
// itself with pullers.Register in init.
//
// # Implementation
//
// A native Go receiver of the rsync protocol, version 27 (what gokrazy/rsync
// negotiates; stock rsync 3.x accepts it): MD4 block and file checksums,
// 32-bit mtimes, no varints, no incremental recursion. It was chosen over
// driving the rsync binary into a staging directory because it streams
// every file straight into the sink and reads delta basis blocks from the
// pool: nothing is staged, and no local rsync is needed.
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
//	Options["timeout"]         connect/handshake timeout, default 30s
//	Options["io_timeout"]      a read waiting longer fails the pull, default 15m
//	Secret["password"]         daemon module secret, or SSH password
//	Secret["private_key"], Secret["passphrase"]  SSH key
//	Source.Excludes            sent to the sender as "- PATTERN" rules
//
// Daemon auth is rsync's challenge/response: base64 of MD4(seed 0,
// password, challenge) at protocol 27. A refusal is ErrAuth (wraps
// pullers.ErrPermanent).
//
// # What is carried
//
// The sender runs with -lptgoDrH: type, permissions (with
// setuid/setgid/sticky), uid/gid with their names (the sender's id
// lists; uid/gid 0 is "root", as rsync assumes; none with
// Options["numeric_ids"]="true" or a daemon configured "numeric ids"),
// mtime in whole seconds, symlink targets (never followed), device
// numbers, FIFOs and sockets, and hard links (regular files with the same
// device and inode share an Entry.HardLink id). Not carried: xattrs and
// ACLs (protocol 30+), sub-second times (protocol 31).
//
// # Walk order
//
// rsync sorts its file list by full name; the receiver rebuilds the tree
// from it and emits it depth first, parents first, names in byte order.
// Files are requested in that order, so the sender's answers come back
// in it and stream into the sink one after another. Protocol 27 sends the
// whole list before any data, so the list is held in memory (a few
// hundred bytes per entry, as in rsync itself); protocol 30's incremental
// recursion would bound it.
//
// # Incremental and delta
//
// A file whose previous entry has the same size and mtime is reused
// without a request. A changed file is requested with the block
// checksums (rolling + MD4, rsync's sqrt block size, at most 8 KiB) of its
// previous version when j.Previous implements Basis; matched blocks are
// read from the pool, literal data from the wire, and the result goes
// straight into the sink. The whole-file MD4 the sender sends is
// verified; a mismatch (or a file that changed size during the transfer)
// is a per-file error. Files the sender could not read (vanished,
// permission denied) are per-file errors carrying the server's message.
// Deleted files are simply absent from the new snapshot.
//
// # Restore
//
// Puller.Restore writes a snapshot subtree back over SSH: this package is
// the rsync sender and the remote "rsync --server -lptgoDr --numeric-ids"
// the receiver, by default into a new directory cairn-restore-<time>
// inside Source.Path (RestoreOptions.Dest overrides it; an existing
// directory is written into). Files go whole (literal data plus the
// whole-file MD4, no block matching); mode, numeric owner, mtime,
// symlinks and devices are kept; hard links become copies. Not over the
// daemon (modules are usually read-only).
//
// # Hostile servers
//
// Every name is checked (relative, no "." or ".." or empty elements, no
// NUL, at most 4096 bytes); every entry must sit under a listed
// directory; sizes, counts (MaxEntries), literal tokens, block indexes,
// symlink targets and out-of-band messages are bounded. A malformed or
// truncated message fails the pull with an error wrapping ErrProtocol;
// the sink never sees a path the checks did not pass.
package rsync
