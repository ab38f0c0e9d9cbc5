package pool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
)

// File contents (FORMAT.md §5). A file of up to SmallFileMax bytes, or a
// larger one that yields a single chunk, is one KindData object named in
// Entry.Content. Otherwise Entry.Content names a KindChunkList object: a
// version byte, the chunk count, then per chunk its length and digest.
// Offsets are the running sum of lengths, so a reader finds the chunk for
// any offset by binary search.

const chunkListVersion = 1

// chunkRef is one chunk of a file.
type chunkRef struct {
	off  int64
	size int64
	d    Digest
}

func appendChunkList(b []byte, sizes []int64, digests []Digest) []byte {
	b = append(b, chunkListVersion)
	b = binary.AppendUvarint(b, uint64(len(sizes)))
	for i, n := range sizes {
		b = binary.AppendUvarint(b, uint64(n))
		b = append(b, digests[i][:]...)
	}
	return b
}

// decodeChunkList decodes a chunk list; malformed input is ErrCorrupt.
func decodeChunkList(b []byte) ([]chunkRef, error) {
	d := &treeDecoder{b: b}
	if v := d.byte1(); d.err == nil && v != chunkListVersion {
		return nil, fmt.Errorf("%w: chunk list: unknown version %d", ErrCorrupt, v)
	}
	n := d.count(1 + DigestSize)
	if d.err != nil {
		return nil, fmt.Errorf("%w: chunk list: %v", ErrCorrupt, d.err)
	}
	refs := make([]chunkRef, n)
	var off int64
	for i := range refs {
		size := d.uvarint()
		dg := d.digest()
		if d.err != nil {
			return nil, fmt.Errorf("%w: chunk list: %v", ErrCorrupt, d.err)
		}
		if size == 0 || size > MaxObjectSize || dg.IsZero() {
			return nil, fmt.Errorf("%w: chunk list: chunk %d has size %d", ErrCorrupt, i, size)
		}
		refs[i] = chunkRef{off: off, size: int64(size), d: dg}
		off += int64(size)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: chunk list: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	return refs, nil
}

// readChunkList reads and decodes the chunk list object d.
func (p *Pool) readChunkList(ctx context.Context, d Digest) ([]chunkRef, error) {
	kind, data, err := p.Get(ctx, d)
	if err != nil {
		return nil, err
	}
	if kind != KindChunkList {
		return nil, fmt.Errorf("object %s: %w: is a %s, want a chunk list", d, ErrCorrupt, kind)
	}
	refs, err := decodeChunkList(data)
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", d, err)
	}
	return refs, nil
}

// A ContentReader reads a file's content from the pool. It fetches only
// the chunks a read touches, through a small cache shared by the Pool.
// ReadAt is safe for concurrent use; Read and Seek share an offset and are
// not.
type ContentReader struct {
	p      *Pool
	ctx    context.Context
	size   int64
	chunks []chunkRef // one element (off 0) for a single-object file
	pos    int64
}

var (
	_ io.ReaderAt   = (*ContentReader)(nil)
	_ io.ReadSeeker = (*ContentReader)(nil)
)

// OpenContent returns a reader for the content of the file entry e. A
// chunk list whose total differs from e.Size is ErrCorrupt.
func (p *Pool) OpenContent(ctx context.Context, e *Entry) (*ContentReader, error) {
	if e.Type != TypeFile {
		return nil, fmt.Errorf("open content of %q: not a regular file (%s)", e.Name, e.Type)
	}
	r := &ContentReader{p: p, ctx: ctx, size: e.Size}
	switch {
	case e.Content.IsZero():
		if e.Size != 0 {
			return nil, fmt.Errorf("open content of %q: %w: %d bytes without content", e.Name, ErrCorrupt, e.Size)
		}
	case e.Chunked:
		refs, err := p.readChunkList(ctx, e.Content)
		if err != nil {
			return nil, fmt.Errorf("open content of %q: %w", e.Name, err)
		}
		var total int64
		if n := len(refs); n > 0 {
			total = refs[n-1].off + refs[n-1].size
		}
		if total != e.Size {
			return nil, fmt.Errorf("open content of %q: %w: chunk list %s covers %d bytes, entry says %d", e.Name, ErrCorrupt, e.Content, total, e.Size)
		}
		r.chunks = refs
	default:
		r.chunks = []chunkRef{{off: 0, size: e.Size, d: e.Content}}
	}
	return r, nil
}

// Size returns the content length.
func (r *ContentReader) Size() int64 { return r.size }

// chunk returns the data of chunk c, from the cache when possible, and
// caches what it reads when cache is set.
func (r *ContentReader) chunk(c chunkRef, cache bool) ([]byte, error) {
	st := r.p.state()
	if v, ok := st.chunks.get(c.d); ok {
		return v.([]byte), nil
	}
	kind, data, err := r.p.Get(r.ctx, c.d)
	if err != nil {
		return nil, err
	}
	if kind != KindData || int64(len(data)) != c.size {
		return nil, fmt.Errorf("object %s: %w: %s of %d bytes, want data of %d", c.d, ErrCorrupt, kind, len(data), c.size)
	}
	if cache {
		st.chunks.add(c.d, data, len(data))
	}
	return data, nil
}

// ReadAt implements io.ReaderAt.
func (r *ContentReader) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("content reader: negative offset")
	}
	n := 0
	for n < len(b) {
		at := off + int64(n)
		if at >= r.size {
			return n, io.EOF
		}
		i := sort.Search(len(r.chunks), func(i int) bool { return r.chunks[i].off+r.chunks[i].size > at })
		if i == len(r.chunks) {
			return n, io.EOF
		}
		c := r.chunks[i]
		data, err := r.chunk(c, true)
		if err != nil {
			return n, err
		}
		n += copy(b[n:], data[at-c.off:])
	}
	return n, nil
}

// Read implements io.Reader.
func (r *ContentReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, err := r.ReadAt(b, r.pos)
	r.pos += int64(n)
	if n > 0 && err == io.EOF {
		err = nil
	}
	return n, err
}

// Seek implements io.Seeker.
func (r *ContentReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.pos
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errors.New("content reader: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("content reader: negative position")
	}
	r.pos = offset
	return offset, nil
}

// chunkPooled is chunk for a bulk read: the data comes from the cache
// or from pooled buffers that release (always non-nil) gives back.
func (r *ContentReader) chunkPooled(c chunkRef) ([]byte, func(), error) {
	st := r.p.state()
	if v, ok := st.chunks.get(c.d); ok {
		return v.([]byte), func() {}, nil
	}
	kind, data, release, err := r.p.getPooled(r.ctx, c.d)
	if err != nil {
		return nil, release, err
	}
	if kind != KindData || int64(len(data)) != c.size {
		release()
		return nil, func() {}, fmt.Errorf("object %s: %w: %s of %d bytes, want data of %d", c.d, ErrCorrupt, kind, len(data), c.size)
	}
	return data, release, nil
}

// WriteTo copies the remaining content to w chunk by chunk, fetching the
// next chunk while the current one is written (a restore overlaps reading,
// decompressing and hashing with writing). It bypasses the shared cache so
// a restore does not evict what interactive readers use, and reads into
// reused buffers, given back once w.Write returns (io.Writer must not
// retain them).
func (r *ContentReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if r.pos >= r.size {
		return 0, nil
	}
	type result struct {
		data    []byte
		release func()
		err     error
	}
	fetch := func(c chunkRef) chan result {
		ch := make(chan result, 1)
		go func() {
			data, release, err := r.chunkPooled(c)
			ch <- result{data, release, err}
		}()
		return ch
	}
	i := sort.Search(len(r.chunks), func(i int) bool { return r.chunks[i].off+r.chunks[i].size > r.pos })
	var ahead chan result
	defer func() {
		if ahead != nil {
			(<-ahead).release()
		}
	}()
	for ; i < len(r.chunks); i++ {
		c := r.chunks[i]
		var res result
		if ahead != nil {
			res = <-ahead
			ahead = nil
		} else {
			res.data, res.release, res.err = r.chunkPooled(c)
		}
		if res.err != nil {
			return total, res.err
		}
		if i+1 < len(r.chunks) {
			ahead = fetch(r.chunks[i+1])
		}
		n, err := w.Write(res.data[r.pos-c.off:])
		res.release()
		total += int64(n)
		r.pos += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
