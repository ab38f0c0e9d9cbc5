// Package ftp is the puller for a directory on an FTP or explicit-FTPS
// server (method "ftp"), over github.com/jlaffaye/ftp with our own
// listing parser. It registers itself with pullers.Register in init.
//
// # Source
//
//	Options["host"]            host name or address (default: the job's host)
//	Options["port"]            default 21
//	Options["user"]            login; empty, "anonymous" or "ftp": anonymous
//	Secret["password"]         password (anonymous: "cairn@" when empty)
//	Options["tls"]             "explicit" (default: AUTH TLS, PBSZ 0, PROT P;
//	                           data connections resume the control session,
//	                           so vsftpd's require_ssl_reuse passes) or "none"
//	Options["tls_fingerprint"] pinned certificate, "sha256:<hex>" of the DER
//	                           (see Fingerprint); a different certificate
//	                           fails with ErrCertificateMismatch (permanent)
//	Options["tls_ca"]          PEM roots instead of the system roots
//	Options["tls_tofu"]        "false": refuse a certificate that is neither
//	                           pinned nor verified (ErrCertificateUnknown)
//	Options["timeout"]         idle timeout per read/write, default 60s
//	Options["max_dir_entries"] names kept from one directory listing (a
//	                           positive number; default Puller.MaxEntries,
//	                           else DefaultMaxEntries, 1,048,576)
//	Source.Path                remote directory, default "/"
//	Source.Excludes            globs (path.Match) on every path element and
//	                           on the whole path relative to the source
//
// Without a pin, the certificate is verified against the roots (DNS name
// or IP = host); if that fails it is trusted on first use: the pull goes
// on and Puller.SeenFingerprint (and OnFingerprint) report it, for the
// caller to store as Options["tls_fingerprint"]. Bad credentials (530)
// wrap pullers.ErrPermanent. Passive mode only (EPSV, else PASV); the
// address in a PASV reply is ignored: data connections go to the control
// connection's IP, so a server cannot point us elsewhere.
//
// # Listing
//
// MLSD when the server offers it (FEAT MLST), else "LIST -a" (hidden files
// too). jlaffaye drives the transfer; the raw bytes are captured below it
// and parsed by ParseMLSDLine / ParseListLine (Unix ls -l with or without
// link count and group, devices, "name -> target"; Windows/IIS
// "MM-DD-YY  HH:MMPM  <DIR>|size  name"). Each directory is listed after a
// CWD with no path argument, so no server globs or option-parses a name.
// File mtimes come from MDTM (seconds, UTC) when LIST is used.
//
// # Metadata carried (the conformance scenario's capabilities)
//
// Type, permission bits with setuid/setgid/sticky, numeric owner (vsftpd
// lists uid/gid; names when the server lists names), file mtime to the
// second (MDTM or MLSD), symlinks with their target as listed. Not carried:
// hard links, xattrs/ACLs, directory and symlink mtimes below a minute
// (LIST; a day for entries older than six months), names or targets
// containing a newline (a listing is lines of text), paths past the
// server's PATH_MAX.
//
// # Hostile servers
//
// Every listed name is checked: ".", ".." are skipped; names with "/",
// NUL, CR or LF, and unparsable lines are per-file errors on the
// directory (the first 100 of a listing, then a count); duplicates keep
// the first. A listing is parsed line by line as it streams (jlaffaye's
// own parser is handed empty lines and keeps nothing), so memory holds
// only the names kept: at most max_dir_entries of them, the first
// listed, after which the transfer is cut (ErrTooManyEntries, a per-file
// error on the directory). A listing may be at most MaxListing bytes
// (ErrListingTooLong: the directory is stored empty), a listing line 8
// KiB, a control reply 1 MiB, and directories nest at most MaxDepth. A transfer must be
// exactly the listed size: when it is longer or shorter the size and time
// are asked again (SIZE, MDTM) and the file is fetched once more; a second
// mismatch is a per-file error and nothing of it is stored, so a snapshot
// never holds a mix of two versions. Symlinks are recorded, never
// followed. A broken control connection is re-opened (at most 5 times per
// pull) and the failed command tried once more. Cancelling ctx unblocks
// every connection at once.
//
// # Incremental
//
// A file whose previous entry has the same type, size and mtime is
// emitted with the previous content and not transferred.
//
// # Restore
//
// Restore uploads a snapshot subtree with STOR into a new directory (MKD;
// an existing target fails, nothing is overwritten), setting mtimes with
// MFMT/MDTM where the server allows. A restore never trusts a certificate
// on first use: pin it or give roots.
package ftp
