package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ObjectInfo describes one stored name. ModTime is when it was last
// written; GC uses it for its grace period.
type ObjectInfo struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// Errors of the Backend contract. Implementations wrap them so callers can
// use errors.Is.
var (
	// ErrNotFound: the named object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrTransient: a retry may succeed (network reset, 5xx, throttling).
	// The retry decorator retries only errors that match it.
	ErrTransient = errors.New("transient storage error")
)

// A Backend stores named, immutable byte strings. Names are slash-separated
// relative paths such as "objects/ab/cd/abcd…" or "snapshots/<id>".
//
// Contract:
//   - Put MUST be atomic: a reader sees either no object or all of it, never a
//     prefix. Putting an existing name replaces it atomically.
//   - Put MUST NOT make the data durable by itself; Sync is the one barrier.
//   - Get returns ErrNotFound (wrapped) for a missing name. length < 0 means
//     "to the end". Reading past the end returns what exists.
//   - List calls fn for every name with the prefix, in no particular order;
//     it stops and returns fn's error if fn fails.
//   - Delete of a missing name is not an error.
//   - All methods are safe for concurrent use.
type Backend interface {
	Put(ctx context.Context, name string, r io.Reader, size int64) error
	Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error)
	Stat(ctx context.Context, name string) (ObjectInfo, error)
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	Delete(ctx context.Context, name string) error
	// Location returns the backend's user-facing location (a path or s3:// URL)
	// for messages. It never contains secrets.
	Location() string
}

// A Syncer is a Backend that needs an explicit durability barrier (a local
// directory: syncfs). Backends without one are durable on Put's return.
type Syncer interface {
	Sync(ctx context.Context) error
}

// ValidateName checks a backend name: a non-empty relative slash-separated
// path of clean elements (no "", ".", ".." elements, no leading or trailing
// slash, no backslash or NUL), at most 1024 bytes. Elements starting with
// ".tmp-" are reserved for backends' temporary files. Every Backend
// rejects other names with ErrInvalidName, so a hostile name can never
// escape a backend's root.
func ValidateName(name string) error {
	if name == "" || len(name) > 1024 {
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == "" || el == "." || el == ".." || strings.HasPrefix(el, ".tmp-") || strings.ContainsAny(el, "\\\x00") {
			return fmt.Errorf("%w: %q", ErrInvalidName, name)
		}
	}
	return nil
}

// validPrefix checks a List prefix: "" or a string that could start a
// valid name (it may end in "/" or in a partial element).
func validPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	trimmed := strings.TrimSuffix(prefix, "/")
	if trimmed == "" {
		return fmt.Errorf("%w: prefix %q", ErrInvalidName, prefix)
	}
	if err := ValidateName(trimmed); err != nil {
		return fmt.Errorf("%w: prefix %q", ErrInvalidName, prefix)
	}
	return nil
}
