package rsync

import (
	"hash"
	"io"
)

// fileSummer is the whole-file checksum a fileReader feeds: a hash.Hash,
// or a bgSum for a large file.
type fileSummer interface {
	io.Writer
	Sum(b []byte) []byte
}

// Large files have their whole-file checksum computed by a bgSum: the
// receiver's goroutine, which also feeds the pool (hashing, chunking), only
// copies the bytes, and MD5 runs beside it on another core.
const (
	bgSumMin   = 1 << 20   // files from this size on
	bgSumBlock = 256 << 10 // bytes handed over at a time
	bgSumBufs  = 4         // blocks in flight per pull (1 MiB)
)

// sumBufs is a pull's free list of bgSum blocks, allocated on first use.
type sumBufs struct {
	free chan []byte
	n    int
}

func (s *sumBufs) get() []byte {
	if s.free == nil {
		s.free = make(chan []byte, bgSumBufs)
	}
	if s.n < bgSumBufs {
		select {
		case b := <-s.free:
			return b
		default:
			s.n++
			return make([]byte, 0, bgSumBlock)
		}
	}
	return <-s.free
}

// bgSum hashes what is written to it on its own goroutine. Sum (or
// close, when the file is abandoned) ends the goroutine; all blocks are
// back in the free list when either returns.
type bgSum struct {
	bufs *sumBufs
	cur  []byte
	work chan []byte
	res  chan []byte
	sum  []byte
	shut bool
}

func newBgSum(h hash.Hash, bufs *sumBufs) *bgSum {
	s := &bgSum{bufs: bufs, work: make(chan []byte, bgSumBufs), res: make(chan []byte, 1)}
	go func() {
		for b := range s.work {
			h.Write(b)
			bufs.free <- b[:0]
		}
		s.res <- h.Sum(nil)
	}()
	return s
}

func (s *bgSum) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if s.cur == nil {
			s.cur = s.bufs.get()
		}
		k := copy(s.cur[len(s.cur):cap(s.cur)], p)
		s.cur = s.cur[:len(s.cur)+k]
		p = p[k:]
		if len(s.cur) == cap(s.cur) {
			s.work <- s.cur
			s.cur = nil
		}
	}
	return n, nil
}

// Sum returns the checksum of everything written; nothing may be written
// after it.
func (s *bgSum) Sum(b []byte) []byte {
	s.close()
	return append(b, s.sum...)
}

// close ends the goroutine (idempotent).
func (s *bgSum) close() {
	if s.shut {
		return
	}
	s.shut = true
	if len(s.cur) > 0 {
		s.work <- s.cur
	} else if s.cur != nil {
		s.bufs.free <- s.cur
	}
	s.cur = nil
	close(s.work)
	s.sum = <-s.res
}
