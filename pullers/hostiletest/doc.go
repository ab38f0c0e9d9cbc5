// Package hostiletest plays a hostile host for the pullers that speak SSH
// (sftp, tar): one in-process SSH server whose sftp subsystem and whose
// `tar` exec answers both serve the same crafted tree — names with "..",
// "/", NUL and shell syntax, links out of the source and into loops, an
// endless directory, sizes that lie. The suite in this package runs every
// SSH puller against it and checks the promises of SECURITY.md: nothing
// lands outside the snapshot, no remote link is followed, listings stay
// bounded, and nothing the server sends is ever executed.
//
// The server never runs a command: each exec request is recorded and
// answered by Go code (a tar stream for `tar --create`, an empty listing
// for `find`). The per-protocol hostile tests stay in their packages
// (pullers/ftp, pullers/rsync, pullers/sftp, pullers/tar); this suite
// gathers the SSH family on one shared hostile tree.
package hostiletest
