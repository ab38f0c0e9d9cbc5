package pool_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pool/backendtest"
)

// shortBodies is a backend whose first `breaks` Get bodies end with a
// transient error after `after` bytes: a connection dropped mid-body.
type shortBodies struct {
	pool.Backend
	breaks, after int
}

type brokenBody struct {
	r    io.Reader
	left int
}

func (b *brokenBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("read: %w: unexpected EOF", pool.ErrTransient)
	}
	if len(p) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= n
	return n, err
}

func (s *shortBodies) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	rc, err := s.Backend.Get(ctx, name, off, length)
	if err != nil || s.breaks == 0 {
		return rc, err
	}
	s.breaks--
	return struct {
		io.Reader
		io.Closer
	}{&brokenBody{r: rc, left: s.after}, rc}, nil
}

// TestRetryResumesShortReads: a body that breaks with a transient error is
// resumed from where it broke (also inside a range), within the retry
// budget; past the budget the error comes through.
func TestRetryResumesShortReads(t *testing.T) {
	ctx := context.Background()
	data := make([]byte, 100_000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	noSleep := func(context.Context, time.Duration) error { return nil }
	for _, c := range []struct {
		off, length int64
		breaks      int
		retries     int
		ok          bool
	}{
		{0, -1, 3, 3, true}, {1000, 50_000, 2, 3, true}, {99_990, -1, 1, 1, true}, {0, -1, 4, 3, false},
	} {
		sb := &shortBodies{Backend: backendtest.NewMem(), breaks: 0, after: 7_777}
		if err := sb.Put(ctx, "objects/x", bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		sb.breaks = c.breaks
		b := pool.Decorate(sb, pool.DecorateOptions{Retries: c.retries, Sleep: noSleep})
		rc, err := b.Get(ctx, "objects/x", c.off, c.length)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		end := int64(len(data))
		if c.length >= 0 {
			end = c.off + c.length
		}
		switch {
		case c.ok && (err != nil || !bytes.Equal(got, data[c.off:end])):
			t.Errorf("%+v: %d bytes, %v; want the %d bytes", c, len(got), err, end-c.off)
		case !c.ok && !errors.Is(err, pool.ErrTransient):
			t.Errorf("%+v: past the retry budget: %v, want the transient error", c, err)
		}
	}
}
