package smb

// SetProbeHook sets the hook told of each cycle probe (rel, its
// ancestor); nil removes it.
func SetProbeHook(f func(rel, ancestor string)) { probeHook = f }
