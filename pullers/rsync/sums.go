package rsync

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"

	//lint:ignore SA1019 rsync protocol 27 mandates MD4 block and file checksums
	"golang.org/x/crypto/md4"
)

const (
	sumLen       = md4.Size // strong block sum length we ask for (full MD4)
	minBlock     = 700      // rsync's BLOCK_SIZE
	maxBlock27   = 8192     // OLD_MAX_BLOCK_SIZE, protocols before 30
	maxBlockWire = 1 << 17  // what we accept in an echoed sum head
)

// sumHead is the header of a block-checksum set.
type sumHead struct {
	count, blen, s2len, rem int32
}

// headFor is rsync's block size rule for a basis of size n: about
// sqrt(n), a multiple of 8, between 700 and 8192 bytes.
func headFor(n int64) sumHead {
	if n <= 0 {
		return sumHead{}
	}
	b := int64(minBlock)
	if n > minBlock*minBlock {
		b = isqrt(n) &^ 7
		b = min(max(b, minBlock), maxBlock27)
	}
	return sumHead{count: int32((n + b - 1) / b), blen: int32(b), s2len: sumLen, rem: int32(n % b)}
}

func isqrt(n int64) int64 {
	x := int64(1)
	for x*x <= n {
		x <<= 1
	}
	lo, hi := x>>1, x
	for lo < hi-1 {
		m := (lo + hi) / 2
		if m*m <= n {
			lo = m
		} else {
			hi = m
		}
	}
	return lo
}

// rollSum is rsync's weak checksum (get_checksum1) over signed bytes.
func rollSum(b []byte) uint32 {
	var s1, s2 uint32
	// Four bytes a step, as rsync does: s2 gains 4*s1 plus the bytes
	// weighted 4, 3, 2, 1 (one dependency per step instead of four).
	for ; len(b) >= 4; b = b[4:] {
		c0, c1, c2, c3 := uint32(int32(int8(b[0]))), uint32(int32(int8(b[1]))), uint32(int32(int8(b[2]))), uint32(int32(int8(b[3])))
		s2 += 4*(s1+c0) + 3*c1 + 2*c2 + c3
		s1 += c0 + c1 + c2 + c3
	}
	for _, c := range b {
		s1 += uint32(int32(int8(c)))
		s2 += s1
	}
	return s1&0xffff | s2<<16
}

// blockSum is the strong block checksum of protocols 27-29: MD4 of the
// block followed by the seed (when it is not 0).
func blockSum(b []byte, seed int32) []byte {
	h := md4.New()
	h.Write(b)
	if seed != 0 {
		var s [4]byte
		binary.LittleEndian.PutUint32(s[:], uint32(seed))
		h.Write(s[:])
	}
	return h.Sum(nil)
}

// writeSums sends the head and the block checksums of the basis r (n
// bytes long).
func writeSums(ctx context.Context, w *bufio.Writer, h sumHead, r io.Reader, strong func([]byte) []byte) error {
	putHead(w, h)
	buf := make([]byte, h.blen)
	left := int64(h.count-1)*int64(h.blen) + int64(h.blen)
	if h.rem != 0 {
		left = int64(h.count-1)*int64(h.blen) + int64(h.rem)
	}
	var br io.Reader
	if left > readAheadMin {
		ra := newReadAhead(r)
		defer ra.stop()
		br = ra
	} else {
		br = bufio.NewReaderSize(r, int(left)) // a small basis gets a small buffer
	}
	var b4 [4]byte
	for i := int32(0); i < h.count; i++ {
		if i%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		n := min(int64(h.blen), left)
		blk := buf[:n]
		if _, err := io.ReadFull(br, blk); err != nil {
			return fmt.Errorf("read the basis: %w", err)
		}
		binary.LittleEndian.PutUint32(b4[:], rollSum(blk))
		w.Write(b4[:])
		w.Write(strong(blk))
		left -= n
	}
	return nil
}

func putInt(w *bufio.Writer, v int32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(v))
	w.Write(b[:])
}

func putHead(w *bufio.Writer, h sumHead) {
	putInt(w, h.count)
	putInt(w, h.blen)
	putInt(w, h.s2len)
	putInt(w, h.rem)
}

// A basis from this size on is read ahead, in readAheadPiece pieces, on
// its own goroutine: fetching and decompressing the next piece from the
// pool overlaps the checksums of this one. The sender waits for the sums
// of a changed file before it sends anything of it.
const (
	readAheadMin   = 1 << 20
	readAheadPiece = 1 << 20
	readAheadDepth = 2
)

type readAhead struct {
	pieces chan []byte
	errc   chan error
	done   chan struct{}
	cur    []byte
	err    error
}

func newReadAhead(r io.Reader) *readAhead {
	ra := &readAhead{pieces: make(chan []byte, readAheadDepth), errc: make(chan error, 1), done: make(chan struct{})}
	go func() {
		defer close(ra.pieces)
		for {
			b := make([]byte, readAheadPiece)
			n, err := io.ReadFull(r, b)
			if n > 0 {
				select {
				case ra.pieces <- b[:n]:
				case <-ra.done:
					return
				}
			}
			if err != nil {
				if err == io.ErrUnexpectedEOF {
					err = io.EOF
				}
				ra.errc <- err
				return
			}
		}
	}()
	return ra
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.err != nil {
			return 0, ra.err
		}
		b, ok := <-ra.pieces
		if !ok {
			ra.err = <-ra.errc
			continue
		}
		ra.cur = b
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// stop ends the goroutine; it returns once the goroutine is done with the
// underlying reader.
func (ra *readAhead) stop() {
	close(ra.done)
	for range ra.pieces {
	}
}
