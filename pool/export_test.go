package pool

import "golang.org/x/sys/unix"

// UseOSRoot makes b take its os.Root fallback (the path used where
// openat2 is unavailable), so tests cover both implementations.
func UseOSRoot(b *DirBackend) {
	if b.fd >= 0 {
		unix.Close(b.fd)
		b.fd = -1
	}
}
