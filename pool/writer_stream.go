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

// StoreContent stores a file's content read from r to EOF without adding
// an entry, and returns it as a file Entry (Size, Content, Chunked set;
// nothing else). The content stays a GC root of this Writer until Finish
// or Abort, so a later Add of an entry with that Content and a nil reader
// (the reuse path) finds it — after Flush: the writes run in the
// background, and Add checks that the content is in the pool. It lets a caller store contents in whatever
// order they arrive (an archive's members) and add the entries later in
// walk order. A read error rejects the content (ErrEntry); nothing is
// counted in the snapshot's totals until the entry is added.
func (w *Writer) StoreContent(ctx context.Context, r io.Reader) (Entry, error) {
	const path = "(content)"
	if err := w.failed(); err != nil {
		return Entry{}, err
	}
	if w.done {
		return Entry{}, fmt.Errorf("snapshot %s: StoreContent after Finish or Abort", w.id)
	}
	if err := ctx.Err(); err != nil {
		return Entry{}, err
	}
	if w.held == nil {
		w.st.mu.Lock()
		w.held = &wdir{path: path}
		w.st.mu.Unlock()
	}
	before := w.bytes.Load()
	bp := getChunkBuf(SmallFileMax + 1)
	defer putChunkBuf(bp)
	head := (*bp)[:SmallFileMax+1]
	n, err := io.ReadFull(r, head)
	e := Entry{Name: "c", Type: TypeFile}
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		e.Size = int64(n)
		err = w.addFile(ctx, path, &e, w.held, bytes.NewReader(head[:n]))
	case err != nil:
		if ctx.Err() != nil {
			return Entry{}, ctx.Err()
		}
		return Entry{}, fmt.Errorf("%w: %s: read: %w", ErrEntry, path, err)
	default:
		e.Size = sizeUnknown
		err = w.addChunked(ctx, path, &e, w.held, io.MultiReader(bytes.NewReader(head), r))
	}
	// Counted when the entry that uses it is added (Add's reuse path).
	w.bytes.Add(before - w.bytes.Load())
	if err != nil {
		return Entry{}, err
	}
	if e.Size == 0 {
		return Entry{Type: TypeFile}, nil
	}
	w.st.mu.Lock()
	got := w.held.entries[len(w.held.entries)-1]
	w.st.mu.Unlock()
	return Entry{Type: TypeFile, Size: got.Size, Content: got.Content, Chunked: got.Chunked}, nil
}

// Flush waits until every write queued so far has finished, so content
// stored by StoreContent can be reused by Add (which checks that it is
// in the pool). It returns the Writer's error, if it has failed.
func (w *Writer) Flush(ctx context.Context) error {
	if err := w.failed(); err != nil {
		return err
	}
	w.budget.waitIdle()
	return w.failed()
}
