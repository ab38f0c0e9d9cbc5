package backendtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"syscall"

	"github.com/cairn-backup/cairn/pool"
)

// An Op names a Backend method for fault injection and counting.
type Op string

const (
	OpPut    Op = "put"
	OpGet    Op = "get"
	OpStat   Op = "stat"
	OpList   Op = "list"
	OpDelete Op = "delete"
	OpSync   Op = "sync"
)

// Faulty wraps a Backend and injects faults: failing calls, dropped
// writes (Put reports success and stores nothing, like an eventually
// consistent store that lost it), writes that read back wrong (one byte
// flipped), Get bodies that break mid-way with ErrTransient (short reads)
// or arrive with a flipped byte, and a space limit that makes Put fail
// with ENOSPC. It counts calls and the peak number of calls in flight.
// Configure it before or during use; all methods are safe for concurrent
// use.
type Faulty struct {
	inner pool.Backend

	// Before, when set, runs at the start of every call (e.g. to block
	// calls so a test can observe how many run at once). Set it before use.
	Before func(ctx context.Context, op Op, name string)

	mu          sync.Mutex
	fail        map[Op][]error
	dropPuts    int // < 0: drop all
	corruptPuts int // next Puts store one flipped byte
	shortGets   int // next Get bodies break with ErrTransient after shortAfter bytes
	shortAfter  int
	corruptGets int // next Get bodies carry one flipped byte
	spaceLeft   int64
	spaceLimit  bool
	calls       map[Op]int
	inFlight    int
	maxInFlight int
}

var (
	_ pool.Backend = (*Faulty)(nil)
	_ pool.Syncer  = (*Faulty)(nil)
)

// NewFaulty wraps b; with no faults configured it passes everything
// through.
func NewFaulty(b pool.Backend) *Faulty {
	return &Faulty{inner: b, fail: map[Op][]error{}, calls: map[Op]int{}}
}

// FailNext makes the next n calls of op fail with err (wrapped with the
// op and name).
func (f *Faulty) FailNext(op Op, n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.fail[op] = append(f.fail[op], err)
	}
}

// DropPuts makes the next n Puts report success without storing anything;
// n < 0 drops all from now on, 0 stops dropping.
func (f *Faulty) DropPuts(n int) {
	f.mu.Lock()
	f.dropPuts = n
	f.mu.Unlock()
}

// SetSpaceLimit makes Puts fail with ENOSPC once n more bytes have been
// stored. n < 0 removes the limit.
func (f *Faulty) SetSpaceLimit(n int64) {
	f.mu.Lock()
	f.spaceLeft, f.spaceLimit = n, n >= 0
	f.mu.Unlock()
}

// Calls returns how many times op was called (including failed calls).
func (f *Faulty) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// InFlight returns the number of calls running now.
func (f *Faulty) InFlight() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inFlight
}

// MaxInFlight returns the peak number of calls running at once.
func (f *Faulty) MaxInFlight() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxInFlight
}

func (f *Faulty) enter(ctx context.Context, op Op, name string) error {
	f.mu.Lock()
	f.calls[op]++
	f.inFlight++
	if f.inFlight > f.maxInFlight {
		f.maxInFlight = f.inFlight
	}
	var err error
	if q := f.fail[op]; len(q) > 0 {
		err, f.fail[op] = q[0], q[1:]
	}
	f.mu.Unlock()
	if f.Before != nil {
		f.Before(ctx, op, name)
	}
	if err != nil {
		return fmt.Errorf("faulty %s %s: %w", op, name, err)
	}
	return nil
}

func (f *Faulty) exit() {
	f.mu.Lock()
	f.inFlight--
	f.mu.Unlock()
}

func (f *Faulty) Location() string { return f.inner.Location() }

func (f *Faulty) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := f.enter(ctx, OpPut, name); err != nil {
		f.exit()
		return err
	}
	defer f.exit()
	f.mu.Lock()
	drop := f.dropPuts != 0
	if f.dropPuts > 0 {
		f.dropPuts--
	}
	var nospace bool
	if f.spaceLimit {
		if size > f.spaceLeft {
			nospace = true
		} else {
			f.spaceLeft -= size
		}
	}
	f.mu.Unlock()
	if nospace {
		return &fs.PathError{Op: "write", Path: f.inner.Location() + "/" + name, Err: syscall.ENOSPC}
	}
	if drop {
		_, err := io.Copy(io.Discard, r)
		return err
	}
	f.mu.Lock()
	corrupt := f.corruptPuts > 0
	if corrupt {
		f.corruptPuts--
	}
	f.mu.Unlock()
	if corrupt {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if len(b) > 0 {
			b[len(b)/2] ^= 0x20
		}
		r = bytes.NewReader(b)
	}
	return f.inner.Put(ctx, name, r, size)
}

// CorruptPuts makes the next n Puts succeed but store one flipped byte: a
// write that reads back wrong.
func (f *Faulty) CorruptPuts(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.corruptPuts = n
}

// ShortGets makes the next n Get bodies break after `after` bytes with an
// error wrapping pool.ErrTransient (a connection dropped mid-body).
func (f *Faulty) ShortGets(n, after int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shortGets, f.shortAfter = n, after
}

// CorruptGets makes the next n Get bodies carry one flipped byte (bytes
// damaged on the way back).
func (f *Faulty) CorruptGets(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.corruptGets = n
}

func (f *Faulty) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	defer f.exit()
	if err := f.enter(ctx, OpGet, name); err != nil {
		return nil, err
	}
	rc, err := f.inner.Get(ctx, name, off, length)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	short, after, corrupt := f.shortGets > 0, f.shortAfter, f.corruptGets > 0 && f.shortGets == 0
	if short {
		f.shortGets--
	} else if corrupt {
		f.corruptGets--
	}
	f.mu.Unlock()
	switch {
	case short:
		return &faultBody{rc: rc, left: after}, nil
	case corrupt:
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		if len(b) > 0 {
			b[len(b)/2] ^= 0x20
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	return rc, nil
}

// faultBody ends with a transient error after left bytes.
type faultBody struct {
	rc   io.ReadCloser
	left int
}

func (b *faultBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("read body: connection reset: %w", pool.ErrTransient)
	}
	if len(p) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= n
	return n, err
}

func (b *faultBody) Close() error { return b.rc.Close() }

func (f *Faulty) Stat(ctx context.Context, name string) (pool.ObjectInfo, error) {
	defer f.exit()
	if err := f.enter(ctx, OpStat, name); err != nil {
		return pool.ObjectInfo{}, err
	}
	return f.inner.Stat(ctx, name)
}

func (f *Faulty) List(ctx context.Context, prefix string, fn func(pool.ObjectInfo) error) error {
	defer f.exit()
	if err := f.enter(ctx, OpList, prefix); err != nil {
		return err
	}
	return f.inner.List(ctx, prefix, fn)
}

func (f *Faulty) Delete(ctx context.Context, name string) error {
	defer f.exit()
	if err := f.enter(ctx, OpDelete, name); err != nil {
		return err
	}
	return f.inner.Delete(ctx, name)
}

// Sync forwards to the wrapped backend when it is a pool.Syncer.
func (f *Faulty) Sync(ctx context.Context) error {
	defer f.exit()
	if err := f.enter(ctx, OpSync, ""); err != nil {
		return err
	}
	if s, ok := f.inner.(pool.Syncer); ok {
		return s.Sync(ctx)
	}
	return nil
}
