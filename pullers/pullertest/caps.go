package pullertest

import "time"

// The capabilities of each protocol as shipped (CAPABILITIES.md).
var (
	LocalCaps = Capabilities{Mode: true, Owner: true, OwnerNames: true, MtimeRes: time.Nanosecond, DirMtime: true,
		Symlinks: true, HardLinks: true, Xattrs: true, AllNames: true, DeepPaths: true}
)
