package pool

import (
	"bytes"
	"context"
	"fmt"
	"io"
)

// sizeUnknown is the Entry.Size AddStream hands to addChunked.
const sizeUnknown = -1

// AddStream stores a regular file whose size is not known in advance
// (a database dump, a decompressed archive member): it reads r to EOF and
// returns the size, which becomes e.Size. The content is stored exactly as
// Add would store the same bytes (same digests, same chunks), streaming
// through content-defined chunking with the Writer's bounded memory, so no
// temporary copy of the whole file is made.
//
// The entry rules are Add's (walk order, "." first), e.Type must be
// TypeFile and e.Size is ignored. A read error from r (other than EOF)
// rejects the entry (ErrEntry) and nothing of it joins the snapshot: a
// failed dump piped into r must end the reader with that error (e.g.
// io.PipeWriter.CloseWithError), never with a clean EOF.
func (w *Writer) AddStream(ctx context.Context, path string, e Entry, r io.Reader) (int64, error) {
	if e.Type != TypeFile {
		return 0, entryErr(path, "AddStream takes regular files, not a %s", e.Type)
	}
	if r == nil {
		return 0, entryErr(path, "AddStream without a reader")
	}
	if err := w.failed(); err != nil {
		return 0, err
	}
	// Up to SmallFileMax bytes the file is one object, as with Add: read
	// that much first to know which case it is.
	bp := getChunkBuf(SmallFileMax + 1)
	defer putChunkBuf(bp)
	head := (*bp)[:SmallFileMax+1]
	n, err := io.ReadFull(r, head)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		e.Size = int64(n)
		return e.Size, w.Add(ctx, path, e, bytes.NewReader(head[:n]))
	case err != nil:
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("%w: %q: read: %w", ErrEntry, path, err)
	}
	e.Size = sizeUnknown
	w.streaming, w.streamed = true, 0
	defer func() { w.streaming = false }()
	if err := w.Add(ctx, path, e, io.MultiReader(bytes.NewReader(head), r)); err != nil {
		return 0, err
	}
	return w.streamed, nil
}
