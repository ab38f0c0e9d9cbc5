package rsync

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/pool"
)

func le(vs ...int32) []byte {
	var b bytes.Buffer
	for _, v := range vs {
		binary.Write(&b, binary.LittleEndian, v)
	}
	return b.Bytes()
}

// FuzzFileList: any bytes decode to a clean list or an error, never a
// panic, and every name that comes out is one the sink accepts.
func FuzzFileList(f *testing.F) {
	f.Add([]byte{0})
	e := append([]byte{0x40}, le(1)...)
	e = append(e, '.')
	e = append(e, le(0, 1700000000, 0o40755, 0, 0)...)
	f.Add(append(e, 0))
	e2 := append([]byte{0x40}, le(3)...)
	e2 = append(e2, "a/b"...)
	e2 = append(e2, le(-1)...)
	e2 = append(e2, 1, 0, 0, 0, 0, 0, 0, 0)
	e2 = append(e2, le(1, 0o100644, 0, 0)...)
	f.Add(append(append(e, e2...), 0))
	f.Add(append([]byte{0xa0, 1, 1, 'x'}, le(0)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		rr := &rawReader{r: bytes.NewReader(b)}
		list, err := readFileList(rr, flistOpts{owner: true, devices: true, links: true, hard: true, maxEntries: 1000})
		if err != nil {
			return
		}
		if names, err := readIDList(rr, "user"); err == nil && names[0] != "root" {
			t.Fatalf("id 0 is %q", names[0])
		}
		for i, fl := range list {
			if fl.name != "." {
				for el := range strings.SplitSeq(fl.name, "/") {
					if !pool.ValidName(el) {
						t.Fatalf("invalid name %q accepted", fl.name)
					}
				}
			}
			if fl.size < 0 || i > 0 && list[i-1].name >= fl.name {
				t.Fatalf("bad list at %d: %+v", i, fl)
			}
		}
	})
}

// FuzzDemux: the multiplexed stream and the integers read through it.
func FuzzDemux(f *testing.F) {
	f.Add(append(le(7<<24|4), le(42)...))
	f.Add(append(append(le(10<<24|3), "err"...), append(le(7<<24|8), le(-1, 5)...)...))
	f.Add(le(7<<24|12, -1, 1, 2))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := &rawReader{r: newDemux(bytes.NewReader(b))}
		for range 100 {
			if _, err := r.longint("x"); err != nil {
				return
			}
		}
	})
}

// FuzzTokens: a file's token stream, with and without a basis.
func FuzzTokens(f *testing.F) {
	f.Add(le(3), true)
	f.Add(append(append(le(5), "hello"...), le(-1, -2, 0)...), true)
	f.Add(append(le(-3, 0), make([]byte, 16)...), false)
	f.Fuzz(func(t *testing.T, b []byte, withBasis bool) {
		fr := &fileReader{r: &rawReader{r: bytes.NewReader(b)}, sum: newSum(0), left: 1 << 20}
		if withBasis {
			fr.h = sumHead{count: 3, blen: 700, s2len: 16, rem: 100}
			fr.basis = bytes.NewReader(make([]byte, 1500))
		}
		n, _ := io.Copy(io.Discard, io.LimitReader(fr, 1<<21))
		if n > 1<<20+1 {
			t.Fatalf("read %d bytes past the cap", n)
		}
		fr.drain()
	})
}
