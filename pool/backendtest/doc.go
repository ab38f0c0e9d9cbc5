// Package backendtest holds what every pool.Backend is tested with: the
// conformance suite (Run), an in-memory backend (Mem) and a
// fault-injecting wrapper (Faulty) for reliability tests.
//
// Each backend's own test calls
//
//	backendtest.Run(t, func(t *testing.T) pool.Backend { … a fresh, empty backend … })
//
// The suite checks the whole pool.Backend contract: put/get, byte ranges,
// stat, list by prefix, delete, missing names, atomic overwrite under
// concurrent readers, concurrent puts, odd and invalid names, and context
// cancellation.
package backendtest
