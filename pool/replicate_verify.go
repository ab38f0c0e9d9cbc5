package pool

import (
	"bytes"
	"context"
	"fmt"
	"io"
)

// VerifyContent reads a file's bytes from r, as a restore would deliver
// them, and compares them with what the entry records: its size, and the
// digest of its data object or of each chunk of its chunk list. It is the
// comparison of a restore test (the appliance reads r through the restore
// tree). A mismatch is ErrCorrupt naming the first bad byte range.
func (p *Pool) VerifyContent(ctx context.Context, e *Entry, r io.Reader) error {
	if e.Type != TypeFile {
		return fmt.Errorf("verify %s: not a regular file", e.Name)
	}
	var refs []chunkRef
	switch {
	case e.Content.IsZero():
	case e.Chunked:
		var err error
		if refs, err = p.readChunkList(ctx, e.Content); err != nil {
			return fmt.Errorf("verify %s: %w", e.Name, err)
		}
	default:
		refs = []chunkRef{{off: 0, size: e.Size, d: e.Content}}
	}
	var off int64
	buf := new(bytes.Buffer)
	for _, c := range refs {
		if err := ctx.Err(); err != nil {
			return err
		}
		buf.Reset()
		n, err := io.CopyN(buf, r, c.size)
		if err != nil {
			return fmt.Errorf("verify %s: %w: read %d bytes at %d, want %d: %v", e.Name, ErrCorrupt, n, off, c.size, err)
		}
		if p.Hash(buf.Bytes()) != c.d {
			return fmt.Errorf("verify %s: %w: bytes %d–%d do not match their recorded digest %s", e.Name, ErrCorrupt, off, off+c.size, c.d)
		}
		off += c.size
	}
	if off != e.Size {
		return fmt.Errorf("verify %s: %w: recorded %d bytes, chunks cover %d", e.Name, ErrCorrupt, e.Size, off)
	}
	if n, _ := io.Copy(io.Discard, io.LimitReader(r, 1)); n != 0 {
		return fmt.Errorf("verify %s: %w: longer than its recorded %d bytes", e.Name, ErrCorrupt, e.Size)
	}
	return nil
}
