package pool

import "errors"

// Errors of the Pool API. They are wrapped with what failed and on what, so
// callers test them with errors.Is. ErrNotFound and ErrTransient (backend.go)
// pass through from the Backend.
var (
	// ErrCorrupt: a stored object or named file failed verification (bad
	// header, truncated, digest or authentication mismatch).
	ErrCorrupt = errors.New("corrupt object")
	// ErrIdentity: the pool identity file is missing, unreadable, of an
	// unknown format, or names a different pool than expected — "wrong or
	// missing storage".
	ErrIdentity = errors.New("pool identity")
	// ErrWrongKey: the key file does not match the pool's key check value.
	ErrWrongKey = errors.New("wrong encryption key")
	// ErrNoKey: the pool is encrypted and no usable key file was given.
	ErrNoKey = errors.New("missing encryption key")
	// ErrExists: Init found an existing pool, or a key file it would
	// overwrite.
	ErrExists = errors.New("already exists")
	// ErrInvalidName: a backend or named-object name is not a clean relative
	// slash-separated path.
	ErrInvalidName = errors.New("invalid name")
	// ErrImagePool: a file-pool operation that would destroy data (GC)
	// was asked to run on an image pool, whose blocks it cannot see.
	ErrImagePool = errors.New("this is an image pool")
)
