package ahead

import (
	"context"
	"errors"
	"io"
	"sync"
)

// ReadAll reads a file of size bytes from r with up to depth reads of at
// most chunk bytes in flight, and writes what it gets to w in order. The
// reads cover [0, size) and one more byte at size, sent with the last
// read when it has room for it (else as a request of its own together
// with the others), so the end of the file costs no extra round trip: a file longer than size shows as one byte too many (at most
// size+1 bytes are written), a shorter one as missing bytes; the reader
// of w (the sink) judges. It returns r's first error other than io.EOF,
// or w's, after every read it started has returned.
func ReadAll(ctx context.Context, r io.ReaderAt, size int64, chunk, depth int, w io.Writer) error {
	if chunk <= 0 || depth <= 0 {
		return errors.New("ahead.ReadAll: chunk and depth must be positive")
	}
	size = max(size, 0)
	type read struct {
		buf  []byte
		off  int64
		n    int
		err  error
		done chan struct{}
	}
	var (
		queue   []*read
		next    int64 // next offset to request; size means the probe
		probed  bool
		wg      sync.WaitGroup
		bufPool = sync.Pool{New: func() any { b := make([]byte, chunk); return &b }}
	)
	issue := func() {
		q := &read{off: next, done: make(chan struct{})}
		if next < size {
			l := min(int64(chunk), size-next)
			if next+l == size && l < int64(chunk) {
				l++ // the last read has room for the probe byte: one request fewer
				probed = true
			}
			if l == int64(chunk) {
				q.buf = (*bufPool.Get().(*[]byte))[:l]
			} else {
				q.buf = make([]byte, l) // a small file costs no whole chunk
			}
			next += l
		} else {
			q.buf = make([]byte, 1)
			probed = true
		}
		queue = append(queue, q)
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.n, q.err = r.ReadAt(q.buf, q.off)
			close(q.done)
		}()
	}
	defer wg.Wait()
	for {
		for len(queue) < depth && !probed {
			issue()
		}
		if len(queue) == 0 {
			return nil
		}
		q := queue[0]
		queue = queue[1:]
		select {
		case <-q.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if q.n > 0 {
			if _, err := w.Write(q.buf[:q.n]); err != nil {
				return err
			}
		}
		if len(q.buf) == chunk {
			b := q.buf[:chunk]
			bufPool.Put(&b)
		}
		if q.err != nil && !errors.Is(q.err, io.EOF) {
			return q.err
		}
		if q.n < len(q.buf) {
			return nil // the file ends here (shorter than size, or exactly size at the probe)
		}
	}
}
