package pullers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/cairn-backup/cairn/pool"
)

// A Sink receives one source's entries, in walk order, and stores them.
// *pool.Writer implements it.
//
// Contract:
//   - Add is called for every entry exactly once, parents before children,
//     and all entries of one directory before any entry outside it (depth
//     first). path is slash-separated, relative to the source root; the
//     root directory itself is ".".
//   - For a regular file, r yields exactly e.Size bytes. When r is nil and
//     e.Content is set, the content is reused from the previous snapshot
//     (the incremental skip): nothing is read.
//   - The root "." is a directory entry carrying the source root's own
//     metadata (mode, owner, mtime, xattrs); the pool stores it in the
//     snapshot manifest.
//   - RecordError notes a per-file failure (vanished, permission denied);
//     the snapshot becomes partial but continues.
//
// Errors from Add:
//   - errors.Is(err, pool.ErrEntry): this entry was rejected (a hostile or
//     out-of-order path, content shorter or longer than e.Size, a read
//     error from r). Nothing of it is stored and the Sink stays usable:
//     record it with RecordError and go on with the next entry (a rejected
//     directory's children will be rejected too, as out of order).
//   - errors.Is(err, pool.ErrContentMissing) (always also ErrEntry): r was
//     nil and the reused e.Content is no longer in the pool (GC removed
//     it, or check quarantined it as corrupt). Add the same path again,
//     this time with a reader of the content; that stores it afresh and
//     heals the pool.
//   - Any other error is fatal (storage failed, ctx cancelled): stop the
//     pull and return it; the snapshot will not be written.
type Sink interface {
	Add(ctx context.Context, path string, e pool.Entry, r io.Reader) error
	RecordError(path string, err error)
}

// A StreamSink also stores files whose size is unknown until their end
// (a dump tool's stdout): AddStream reads r to EOF, stores the content
// as Add would, and returns its size (e.Size is ignored). A read error
// from r rejects the entry (pool.ErrEntry) and nothing of it is stored,
// so a producer that fails must end r with its error, not with EOF.
// *pool.Writer implements it; pullers that stream check for it.
type StreamSink interface {
	Sink
	AddStream(ctx context.Context, path string, e pool.Entry, r io.Reader) (int64, error)
}

// Previous gives a puller the previous snapshot of the same source, for
// the incremental skip by size + mtime and as a delta basis.
type Previous interface {
	// Lookup returns the entry at path (slash-separated, relative to the
	// source root) in the previous snapshot.
	Lookup(ctx context.Context, path string) (pool.Entry, bool, error)
}

// Progress is what a puller reports as it goes. Counters are cumulative.
type Progress struct {
	Files   int64  // entries processed
	Bytes   int64  // file bytes processed (read or reused)
	Skipped int64  // files reused from the previous snapshot
	Errors  int64  // per-file errors
	Path    string // current path
}

// Job is one pull: a source of a host into a sink.
type Job struct {
	Host     string
	Source   Source
	Sink     Sink
	Previous Previous         // nil on a first backup
	Progress func(p Progress) // may be nil; called often, must be cheap
}

// Source describes what to pull. Method selects the puller; the other
// fields are interpreted by it. Credentials are decrypted by the caller.
type Source struct {
	Method   string            // "local", "sftp", "smb", …
	Name     string            // source name within the host (e.g. "etc")
	Path     string            // path on the host (or share/module path)
	Excludes []string          // glob patterns relative to Path
	Options  map[string]string // method-specific options
	Secret   map[string]string // decrypted credentials; never logged
}

// A Puller pulls one source of one host into j.Sink.
//
// It MUST honor ctx cancellation, record per-file errors with
// j.Sink.RecordError instead of failing the run, never follow a symlink out of
// the source, and treat every name and size the remote side sends as hostile.
// A returned error fails the whole pull.
type Puller interface {
	Pull(ctx context.Context, j *Job) error
}

// ErrPermanent marks an error a retry cannot fix (bad credentials, host key
// mismatch). The scheduler does not retry it.
var ErrPermanent = errors.New("permanent failure")

var (
	regMu    sync.RWMutex
	registry = map[string]func() Puller{}
)

// Register makes a puller available by method name. Puller packages call it
// in init.
func Register(method string, f func() Puller) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[method]; dup {
		panic("pullers: duplicate method " + method)
	}
	registry[method] = f
}

// Get returns the puller registered for method.
func Get(method string) (Puller, error) {
	regMu.RLock()
	defer regMu.RUnlock()
	f, ok := registry[method]
	if !ok {
		return nil, fmt.Errorf("unknown source method %q (known: %v)", method, methodsLocked())
	}
	return f(), nil
}

// Methods lists the registered method names, sorted.
func Methods() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	return methodsLocked()
}

func methodsLocked() []string {
	out := make([]string, 0, len(registry))
	for m := range registry {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}
