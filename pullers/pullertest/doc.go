// Package pullertest is the conformance scenario every puller runs: a
// generated tree of nasty but real cases on local disk, pulled over the
// puller's protocol from a real server into a real pool, and compared with
// the source.
//
// # The tree
//
// Generate builds, under one directory:
//
//	names/      NFC and NFD spellings of one word, spaces, a newline, a
//	            backslash, a colon, leading dashes, a 255-byte name
//	deep/       directories nested until the path passes 4096 bytes (made
//	            with mkdirat on directory descriptors), a file at the bottom
//	empty-file, empty-dir/
//	sparse      8 MiB, holes with data at three places
//	large       1 GiB, sparse with real data at a few offsets (Options.Large)
//	data/       a chunked file, a small file, a file with a user xattr
//	links/      symlinks: relative, absolute, dangling, a loop, one out of
//	            the source (to a directory)
//	hard/       three names of one inode
//	noread      mode 0000 (root reads it anyway)
//	unreadable/ a FUSE mount whose file "secret" fails every open with
//	            EACCES, for root too (see Unreadable below)
//	v/          0-trigger, 1-vanish, 2-change: when the puller reports
//	            v/0-trigger through Progress.Path, 1-vanish is deleted and
//	            2-change is rewritten in place with other content, size
//	            and mtime
//
// # Comparing
//
// Compare walks the source (descriptor-relative, so deep paths work) and
// checks every entry of the snapshot against it: type, size and the SHA-256
// of every regular file exactly; mode, owner, mtime (at the protocol's
// resolution), symlink targets, hard-link groups and xattrs as far as the
// Capabilities say the protocol carries them. It then checks the manifest:
// partial (never failed), with a per-file error for the vanished file, and
// no error except for paths the scenario allows (the vanished, changed and
// unreadable files, and what Capabilities say the protocol cannot carry).
// The changed file must hold exactly its old or its new content, or be
// absent with an error: never a mix.
//
// # Unreadable
//
// Tests run as root and the servers of internal/testenv serve as root,
// and root reads a mode-0000 file, so noread is compared like any other
// file (Capabilities.Unreadable is for a server that logs in as an
// ordinary user). The file every puller must fail on is unreadable/secret:
// Generate mounts a small FUSE filesystem (go-fuse, direct mount as root)
// whose open fails with EACCES for everyone; sshd and smbd see the mount
// too. It is unmounted in t.Cleanup. Without FUSE (no /dev/fuse, not
// root) it is left out with a log line, and under CI=true that fails.
//
// # Run
//
// Run drives the whole thing: Generate, a first pull into a new pool
// (pool.CreateDirBackend, pool.Init, Pool.NewWriter), Compare through
// Pool.SnapshotFS, a second pull with the first as Previous (which must
// skip every unchanged file and give an identical comparison) and a pool
// Check that re-reads every object.
package pullertest
