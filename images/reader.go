package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// An Image reads one version as a raw file: io.ReaderAt (safe for
// concurrent use), io.ReadSeeker (one cursor; not concurrent), Size.
// A read touches only the blocks it covers; holes cost no I/O. Every block
// is verified against its digest (pool.Get); a damaged or missing block is
// an error wrapping pool.ErrCorrupt or pool.ErrNotFound, never wrong data.
type Image struct {
	s   *Store
	m   *Manifest
	ctx context.Context

	mu    sync.Mutex
	cache []cached // a few recent blocks, most recent last
	fly   map[int64]*blockCall
	off   int64 // Read/Seek cursor
}

type cached struct {
	i    int64
	data []byte
}

type blockCall struct {
	done chan struct{}
	data []byte
	err  error
}

const imageCacheBlocks = 4

var (
	_ io.ReaderAt   = (*Image)(nil)
	_ io.ReadSeeker = (*Image)(nil)
	_ fs.File       = (*Image)(nil)
)

// Open returns a reader of version m. ctx bounds every read made through
// the io interfaces (ReadAtContext takes its own).
func (s *Store) Open(ctx context.Context, m *Manifest) *Image {
	return &Image{s: s, m: m, ctx: ctx, fly: map[int64]*blockCall{}}
}

// OpenVersion loads a version's manifest and opens it.
func (s *Store) OpenVersion(ctx context.Context, name, id string) (*Image, error) {
	m, err := s.Load(ctx, name, id)
	if err != nil {
		return nil, err
	}
	return s.Open(ctx, m), nil
}

// Stat describes the image as a read-only regular file "<name>.img" of
// Size bytes, modified at the version's time, so an Image can be served
// as an fs.File by the restore tree.
func (im *Image) Stat() (fs.FileInfo, error) { return imageInfo{im.m}, nil }

// Close releases the block cache. Reads after Close still work.
func (im *Image) Close() error {
	im.mu.Lock()
	im.cache = nil
	im.mu.Unlock()
	return nil
}

type imageInfo struct{ m *Manifest }

func (i imageInfo) Name() string       { return i.m.Name + ".img" }
func (i imageInfo) Size() int64        { return i.m.Size }
func (i imageInfo) Mode() fs.FileMode  { return 0o444 }
func (i imageInfo) ModTime() time.Time { return i.m.Time }
func (i imageInfo) IsDir() bool        { return false }
func (i imageInfo) Sys() any           { return nil }

// Size returns the image size in bytes.
func (im *Image) Size() int64 { return im.m.Size }

// Manifest returns the version being read.
func (im *Image) Manifest() *Manifest { return im.m }

// ReadAt implements io.ReaderAt with the context given to Open.
func (im *Image) ReadAt(p []byte, off int64) (int, error) { return im.ReadAtContext(im.ctx, p, off) }

// ReadAtContext is ReadAt with its own context.
func (im *Image) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("image %s: negative offset %d", im.m.Name, off)
	}
	if off >= im.m.Size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off < im.m.Size {
		i := off / BlockSize
		in := int(off - i*BlockSize)
		want := min(len(p)-n, im.m.BlockLen(i)-in)
		d, zero, _ := im.m.Block(i)
		if zero {
			clear(p[n : n+want])
		} else {
			data, err := im.block(ctx, i, d)
			if err != nil {
				return n, err
			}
			copy(p[n:n+want], data[in:])
		}
		n += want
		off += int64(want)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// block returns the verified data of block i, from the cache or the pool;
// concurrent readers of one block share one fetch.
func (im *Image) block(ctx context.Context, i int64, d pool.Digest) ([]byte, error) {
	im.mu.Lock()
	for k := len(im.cache) - 1; k >= 0; k-- {
		if im.cache[k].i == i {
			data := im.cache[k].data
			im.mu.Unlock()
			return data, nil
		}
	}
	if c, ok := im.fly[i]; ok {
		im.mu.Unlock()
		select {
		case <-c.done:
			return c.data, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &blockCall{done: make(chan struct{})}
	im.fly[i] = c
	im.mu.Unlock()

	_, data, err := im.s.p.Get(ctx, d)
	if err == nil && len(data) != im.m.BlockLen(i) {
		err = fmt.Errorf("%w: block is %d bytes, want %d", pool.ErrCorrupt, len(data), im.m.BlockLen(i))
	}
	if err != nil {
		err = fmt.Errorf("image %s version %s: block %d (offset %d): %w", im.m.Name, im.m.ID, i, i*BlockSize, err)
		data = nil
	}
	c.data, c.err = data, err
	im.mu.Lock()
	delete(im.fly, i)
	if err == nil {
		if len(im.cache) == imageCacheBlocks {
			im.cache = append(im.cache[:0], im.cache[1:]...)
		}
		im.cache = append(im.cache, cached{i, data})
	}
	im.mu.Unlock()
	close(c.done)
	return data, err
}

// Read implements io.Reader from the Seek cursor.
func (im *Image) Read(p []byte) (int, error) {
	im.mu.Lock()
	off := im.off
	im.mu.Unlock()
	n, err := im.ReadAt(p, off)
	im.mu.Lock()
	im.off = off + int64(n)
	im.mu.Unlock()
	if n > 0 && errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// Seek implements io.Seeker.
func (im *Image) Seek(offset int64, whence int) (int64, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += im.off
	case io.SeekEnd:
		offset += im.m.Size
	default:
		return 0, fmt.Errorf("image %s: bad whence %d", im.m.Name, whence)
	}
	if offset < 0 {
		return 0, fmt.Errorf("image %s: seek to negative offset %d", im.m.Name, offset)
	}
	im.off = offset
	return offset, nil
}

// Holes calls fn for each run of zero blocks as (offset, length), in
// order, so a restore can leave holes (SEEK_HOLE-like).
func (im *Image) Holes(fn func(off, length int64)) {
	for _, r := range im.m.runs {
		if r.zero {
			end := min((r.start+r.count)*BlockSize, im.m.Size)
			fn(r.start*BlockSize, end-r.start*BlockSize)
		}
	}
}
