package rsync

import (
	"bytes"
	"crypto/md5"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// TestBgSum: the background checksum equals MD5 of the bytes written, in
// any write sizes, and every block is back in the free list after Sum or
// close.
func TestBgSum(t *testing.T) {
	var bufs sumBufs
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, bgSumBlock - 1, bgSumBlock, bgSumBlock + 1, 3*bgSumBlock*bgSumBufs + 7} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		s := newBgSum(md5.New(), &bufs)
		for p := data; len(p) > 0; {
			k := min(len(p), 1+rng.IntN(3*bgSumBlock/2))
			s.Write(p[:k])
			p = p[k:]
		}
		want := md5.Sum(data)
		if got := s.Sum([]byte("x")); !bytes.Equal(got, append([]byte("x"), want[:]...)) {
			t.Fatalf("%d bytes: sum %x, want x%x", n, got, want)
		}
		s.close() // after Sum: nothing more
		if len(bufs.free) != bufs.n {
			t.Fatalf("%d bytes: %d of %d blocks free after Sum", n, len(bufs.free), bufs.n)
		}
	}
	// Abandoned mid-file (the connection failed): close ends it.
	s := newBgSum(md5.New(), &bufs)
	s.Write(make([]byte, 2*bgSumBlock+5))
	s.close()
	if len(bufs.free) != bufs.n || bufs.n > bgSumBufs {
		t.Fatalf("after close: %d of %d blocks free", len(bufs.free), bufs.n)
	}
}

// TestReadAhead: the read-ahead reader yields its source's bytes and
// error, and stop ends it early.
func TestReadAhead(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, readAheadPiece, 3*readAheadPiece + 11} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		ra := newReadAhead(bytes.NewReader(data))
		got, err := io.ReadAll(ra)
		ra.stop()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: got %d bytes, %v", n, len(got), err)
		}
	}
	ra := newReadAhead(io.MultiReader(bytes.NewReader(make([]byte, 100)), iotest.ErrReader(errors.New("boom"))))
	if got, err := io.ReadAll(ra); len(got) != 100 || err == nil || err.Error() != "boom" {
		t.Fatalf("got %d bytes, %v; want 100 and boom", len(got), err)
	}
	ra.stop()
	ra = newReadAhead(bytes.NewReader(make([]byte, 10*readAheadPiece)))
	var b [10]byte
	ra.Read(b[:])
	ra.stop()
}

// TestRollSum: the four-bytes-a-step weak checksum equals the byte loop
// of rsync's get_checksum1 (signed bytes) for every length and content.
func TestRollSum(t *testing.T) {
	ref := func(b []byte) uint32 {
		var s1, s2 uint32
		for _, c := range b {
			s1 += uint32(int32(int8(c)))
			s2 += s1
		}
		return s1&0xffff | s2<<16
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for n := range 300 {
		b := make([]byte, n*37%9000)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if n%3 == 0 {
			for i := range b {
				b[i] |= 0x80 // all negative as int8
			}
		}
		if got, want := rollSum(b), ref(b); got != want {
			t.Fatalf("%d bytes: %08x, want %08x", len(b), got, want)
		}
	}
}
