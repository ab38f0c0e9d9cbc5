package backendtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// Mem is an in-memory pool.Backend, for tests.
type Mem struct {
	mu  sync.RWMutex
	m   map[string]memObject
	Now func() time.Time // clock for ModTime; time.Now when nil
}

type memObject struct {
	data []byte
	mod  time.Time
}

var _ pool.Backend = (*Mem)(nil)

// NewMem returns an empty in-memory backend.
func NewMem() *Mem { return &Mem{m: map[string]memObject{}} }

func (b *Mem) Location() string { return "mem:" }

func (b *Mem) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func (b *Mem) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := pool.ValidateName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("mem put %s: %w", name, err)
	}
	if size >= 0 && int64(len(data)) != size {
		return fmt.Errorf("mem put %s: short input: %d of %d bytes", name, len(data), size)
	}
	b.mu.Lock()
	b.m[name] = memObject{data: data, mod: b.now()}
	b.mu.Unlock()
	return nil
}

func (b *Mem) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := pool.ValidateName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("mem get %s: negative offset", name)
	}
	b.mu.RLock()
	o, ok := b.m[name]
	b.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("mem get %s: %w", name, pool.ErrNotFound)
	}
	d := o.data
	if off > int64(len(d)) {
		off = int64(len(d))
	}
	d = d[off:]
	if length >= 0 && length < int64(len(d)) {
		d = d[:length]
	}
	return io.NopCloser(bytes.NewReader(d)), nil
}

func (b *Mem) Stat(ctx context.Context, name string) (pool.ObjectInfo, error) {
	if err := pool.ValidateName(name); err != nil {
		return pool.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return pool.ObjectInfo{}, err
	}
	b.mu.RLock()
	o, ok := b.m[name]
	b.mu.RUnlock()
	if !ok {
		return pool.ObjectInfo{}, fmt.Errorf("mem stat %s: %w", name, pool.ErrNotFound)
	}
	return pool.ObjectInfo{Name: name, Size: int64(len(o.data)), ModTime: o.mod}, nil
}

func (b *Mem) List(ctx context.Context, prefix string, fn func(pool.ObjectInfo) error) error {
	b.mu.RLock()
	var infos []pool.ObjectInfo
	for name, o := range b.m {
		if strings.HasPrefix(name, prefix) {
			infos = append(infos, pool.ObjectInfo{Name: name, Size: int64(len(o.data)), ModTime: o.mod})
		}
	}
	b.mu.RUnlock()
	for _, oi := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(oi); err != nil {
			return err
		}
	}
	return nil
}

func (b *Mem) Delete(ctx context.Context, name string) error {
	if err := pool.ValidateName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.m, name)
	b.mu.Unlock()
	return nil
}

// Corrupt applies fn to the stored bytes of name, for corruption tests.
func (b *Mem) Corrupt(name string, fn func([]byte) []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.m[name]
	if !ok {
		return false
	}
	o.data = fn(append([]byte(nil), o.data...))
	b.m[name] = o
	return true
}
