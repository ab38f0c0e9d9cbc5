package pullertest

import "time"

// The capabilities of each protocol as shipped (CAPABILITIES.md).
var (
	LocalCaps = Capabilities{Mode: true, Owner: true, OwnerNames: true, MtimeRes: time.Nanosecond, DirMtime: true,
		Symlinks: true, HardLinks: true, Xattrs: true, AllNames: true, DeepPaths: true}
)

// SFTPCaps: SFTP v3 attributes carry mode, uid/gid and mtime in seconds;
// no owner names, hard links or xattrs. OpenSSH's sftp server works on
// full paths, so paths past PATH_MAX fail (per-file errors).
var SFTPCaps = Capabilities{Mode: true, Owner: true, MtimeRes: time.Second, DirMtime: true,
	Symlinks: true, AllNames: true}

// SMBCaps: size, mtime (100 ns) and DOS attributes; no POSIX mode or
// owner; Samba follows symlinks server-side and mangles names invalid on
// Windows.
var SMBCaps = Capabilities{MtimeRes: 100 * time.Nanosecond, DirMtime: true, Extra: []string{"smb.attrs"}}
