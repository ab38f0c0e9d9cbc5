// Package pullers defines the Puller contract every protocol implements and
// a registry of pullers by method name. Each protocol lives in a
// subpackage (local, sftp, smb, rsync, ftp, tar, dbdump) and registers
// itself in init.
//
// # Imports
//
// pullers and its subpackages may import pool (for Entry and Digest) and
// third-party protocol libraries. They never import appliance, fusefs or
// images, and they write only through the Sink interface.
package pullers
