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
// # Hostile servers
//
// Names are checked (pool.ValidName, no backslash), duplicates dropped, a
// directory listing holds at most MaxEntries names, directories nest at
// most MaxDepth deep (a server that follows a symlink loop cannot make the
// walk endless), and a file is accepted only with exactly the size its
// open handle reports.
//
// # Incremental
//
// A file whose previous entry has the same size and mtime is reused
// without being read.
package smb
