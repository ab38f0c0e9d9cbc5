// Package hostiletest plays hostile hosts for every puller and runs the
// suite that checks the promises of SECURITY.md against them: nothing
// lands outside the snapshot, no remote link is followed, listings stay
// bounded, and nothing a server sends is ever executed.
//
// # Servers
//
// All serve one kind of tree (Node: names sent verbatim, whatever they
// hold — "..", "/", NUL, shell syntax —, links out of the source and into
// loops, sizes that lie, endless directories) at "/src", in process, on
// 127.0.0.1, and never run a command: each request is recorded and
// answered by Go code.
//
//   - Start: an SSH host. Its sftp subsystem serves the tree; an exec of
//     `tar --create` gets it as a tar stream; an exec of
//     `rsync --server --sender` gets Server.Rsync (a scripted sender).
//   - StartFTP: a plain FTP server (LIST or MLSD) that also lies about
//     sizes, grows files on every read, resets data connections, sends
//     garbage and endless listings, replies without status codes, points
//     PASV elsewhere, and greets and answers PWD with shell syntax.
//   - StartRsyncd: an rsync daemon (protocol 27) playing an RsyncSender:
//     RsyncScript renders a list and its file answers from entries that
//     may carry any name, size or type; the suite also sends truncated,
//     garbage and endless streams.
//   - SMB: there is no Go SMB2 server to script, so the suite serves the
//     hostile tree (as far as a Linux directory can hold it) from a real
//     Samba (internal/testenv).
//
// # The suite
//
// Every puller that speaks a protocol is pulled from that protocol's
// hostile host (sftp, tar and rsync over SSH; ftp; rsync daemon; smb; the
// archive method fetching over ftp and sftp) into a pool with canary
// files around it. Each case asserts a clean failure (nothing committed)
// or a partial snapshot whose per-file errors name the entry and the
// cause; that nothing around the pool and in the working directory
// changed; that the pool passes a full check; that the marker file a
// shell would create is nowhere; and, for endless listings, that the heap
// in use stays under a cap, sampled by the server every N names sent (so
// the measure does not depend on speed). The per-directory names cap
// (source option max_dir_entries) is exercised on sftp, ftp and smb.
package hostiletest
