// Package sshsrc pulls a block image over SSH with differential transfer:
// the host hashes its file or block device in 4 MiB blocks with stock
// tools (POSIX sh, GNU coreutils split --filter and sha256sum, stat;
// util-linux blockdev for devices), and only blocks whose SHA-256 differs
// from the previous version's recorded host hash cross the wire, in one
// dd stream. Nothing is installed on the host. Images of 8 blocks or more
// are hashed in up to nproc (at most 4) ranges at once (dd skip/count |
// split), each range's listing kept in a temporary directory (mktemp -d,
// removed on exit) and printed in order.
//
// Restore (restore.go) works the other way round: the target file or
// block device is hashed on the host the same way (only the image's
// length of a larger device), only blocks whose hash differs are sent,
// each run of them as a "start count" line and its bytes that the host's
// sh reads and one dd writes in place (conv=notrunc), and the target is
// hashed again to verify. Options.HashTool names another sha256sum.
//
// # Trust
//
// Everything the host sends is hostile: the listing's size is bounded by
// images.MaxImageSize, its line count must match the size, each hash must
// be 64 lowercase hex digits, the block stream must have exactly the
// bytes asked for, and every fetched block is hashed again here. The only
// commands run are the fixed scripts in this package (the path is
// single-quoted) and the admin's pre/post commands.
//
// # Imports
//
// sshsrc is part of images: it imports images (and through it pool) only.
package sshsrc
