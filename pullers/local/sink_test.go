package local

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/pool"
)

// memSink is an in-memory pullers.Sink that checks the Sink contract as
// it goes: walk order, exactly-once paths, readers yielding exactly Size
// bytes. Content "digests" are sha256 of the data, so a Previous built
// from a memSink round-trips.
type memSink struct {
	t  *testing.T
	mu sync.Mutex

	order   []string
	entries map[string]pool.Entry
	data    map[string][]byte // content of files that were read
	reads   int               // files whose reader was consumed
	errs    map[string]error
	onAdd   func(path string) // test hook, called before the reader is read
	failAdd func(path string, e pool.Entry, r io.Reader) error

	open []string // stack of directories whose entries may still come
}

func newMemSink(t *testing.T) *memSink {
	return &memSink{t: t, entries: map[string]pool.Entry{}, data: map[string][]byte{}, errs: map[string]error{}}
}

func (s *memSink) Add(ctx context.Context, p string, e pool.Entry, r io.Reader) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.entries[p]; dup {
		s.t.Errorf("Add(%q) twice", p)
	}
	if err := s.checkOrder(p, e); err != nil {
		s.t.Error(err)
	}
	if s.onAdd != nil {
		s.onAdd(p)
	}
	if s.failAdd != nil {
		if err := s.failAdd(p, e, r); err != nil {
			return err
		}
	}
	if e.Type == pool.TypeFile {
		switch {
		case r == nil && (e.Size == 0 || !e.Content.IsZero()):
			// reused from the previous snapshot
		case r == nil:
			return fmt.Errorf("memsink: %s: %d-byte file without reader or content", p, e.Size)
		default:
			buf := make([]byte, e.Size)
			if _, err := io.ReadFull(r, buf); err != nil {
				return fmt.Errorf("memsink: read %s: %w", p, err)
			}
			if e.Size > 0 {
				s.reads++
			}
			s.data[p] = buf
			sum := sha256.Sum256(buf)
			copy(e.Content[:], sum[:])
			e.Chunked = e.Size > 1<<20
		}
	} else if r != nil {
		s.t.Errorf("Add(%q): %s with a reader", p, e.Type)
	}
	s.order = append(s.order, p)
	s.entries[p] = e
	return nil
}

// checkOrder enforces "parents before children, one directory's entries
// contiguous": p's parent must be on the stack of open directories, and
// everything deeper than it is closed for good.
func (s *memSink) checkOrder(p string, e pool.Entry) error {
	if p == "." {
		if len(s.order) != 0 {
			return fmt.Errorf("root added after %d entries", len(s.order))
		}
		s.open = []string{"."}
		return nil
	}
	parent := path.Dir(p)
	i := len(s.open) - 1
	for i >= 0 && s.open[i] != parent {
		i--
	}
	if i < 0 {
		return fmt.Errorf("Add(%q): parent %q not open (open: %q)", p, parent, s.open)
	}
	s.open = s.open[:i+1]
	if e.Type == pool.TypeDir {
		s.open = append(s.open, p)
	}
	if n := len(s.order); n > 0 {
		prev := s.order[n-1]
		if path.Dir(prev) == parent && path.Base(prev) >= path.Base(p) {
			return fmt.Errorf("Add(%q) after sibling %q: not sorted", p, prev)
		}
	}
	return nil
}

func (s *memSink) RecordError(p string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs[p] = err
}

func (s *memSink) errText(p string) string {
	if err := s.errs[p]; err != nil {
		return err.Error()
	}
	return ""
}

// Lookup makes a finished memSink the Previous of a next pull.
func (s *memSink) Lookup(ctx context.Context, p string) (pool.Entry, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[p]
	return e, ok, nil
}

func (s *memSink) paths(prefix string) []string {
	var out []string
	for _, p := range s.order {
		if strings.HasPrefix(p, prefix) {
			out = append(out, p)
		}
	}
	return out
}
