package rsync

import (
	"bufio"
	"encoding/binary"
	"io"
)

// Protocol 30+ encodings: rsync's varints (a length-prefix byte whose high
// bits say how many low-order bytes follow), file-list indexes sent as
// deltas (read_ndx/write_ndx), short strings (vstrings), and the
// multiplexed stream the receiver writes from protocol 30 on.

// intByteExtra is how many bytes follow a varint's first byte, by its top
// six bits.
var intByteExtra = [64]byte{
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 6,
}

// varint is read_varint: a 32-bit value in 1 to 5 bytes.
func (r *rawReader) varint(what string) (int32, error) {
	ch, err := r.byte1(what)
	if err != nil {
		return 0, err
	}
	extra := int(intByteExtra[ch/4])
	if extra == 0 {
		return int32(ch), nil
	}
	if extra > 4 {
		return 0, protoErr("%s: varint prefix %#x too long", what, ch)
	}
	b := r.x[:8]
	clear(b)
	if err := r.full(b[:extra], what); err != nil {
		return 0, err
	}
	bit := byte(1) << (8 - extra)
	if extra < 4 {
		b[extra] = ch & (bit - 1)
	} else if ch&(bit-1) != 0 {
		return 0, protoErr("%s: varint overflows 32 bits", what)
	}
	return int32(binary.LittleEndian.Uint32(b[:4])), nil
}

// uvarint reads a varint that must be in [0, max].
func (r *rawReader) uvarint(what string, max int) (int, error) {
	v, err := r.varint(what)
	if err != nil {
		return 0, err
	}
	if v < 0 || int(v) > max {
		return 0, protoErr("%s %d out of range (0..%d)", what, v, max)
	}
	return int(v), nil
}

// varlong is read_varlong: a 64-bit value in at least minBytes bytes.
func (r *rawReader) varlong(what string, minBytes int) (int64, error) {
	b2 := r.b[:]
	if err := r.full(b2[:minBytes], what); err != nil {
		return 0, err
	}
	u := r.x[:9]
	clear(u)
	copy(u, b2[1:minBytes])
	extra := int(intByteExtra[b2[0]/4])
	if minBytes+extra > 9 {
		return 0, protoErr("%s: varlong prefix %#x too long", what, b2[0])
	}
	if extra > 0 {
		if err := r.full(u[minBytes-1:minBytes-1+extra], what); err != nil {
			return 0, err
		}
		bit := byte(1) << (8 - extra)
		u[minBytes+extra-1] = b2[0] & (bit - 1)
	} else {
		u[minBytes-1] = b2[0]
	}
	if u[8] != 0 {
		return 0, protoErr("%s: varlong overflows 64 bits", what)
	}
	return int64(binary.LittleEndian.Uint64(u[:8])), nil
}

// vstring is read_vstring: a length of one or two bytes, then the bytes.
func (r *rawReader) vstring(what string, max int) ([]byte, error) {
	l, err := r.byte1(what)
	if err != nil {
		return nil, err
	}
	n := int(l)
	if l&0x80 != 0 {
		l2, err := r.byte1(what)
		if err != nil {
			return nil, err
		}
		n = int(l&0x7f)<<8 | int(l2)
	}
	if n > max {
		return nil, protoErr("%s of %d bytes (at most %d)", what, n, max)
	}
	b := make([]byte, n)
	return b, r.full(b, what)
}

func (r *rawReader) shortint(what string) (uint16, error) {
	if err := r.full(r.b[:2], what); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(r.b[:2]), nil
}

// appendVarint is write_varint.
func appendVarint(dst []byte, x int32) []byte {
	var b [5]byte
	binary.LittleEndian.PutUint32(b[1:], uint32(x))
	cnt := 4
	for cnt > 1 && b[cnt] == 0 {
		cnt--
	}
	bit := byte(1) << (7 - cnt + 1)
	switch {
	case b[cnt] >= bit:
		cnt++
		b[0] = ^(bit - 1)
	case cnt > 1:
		b[0] = b[cnt] | ^(bit*2 - 1)
	default:
		b[0] = b[1]
	}
	return append(dst, b[:cnt]...)
}

// appendVarlong is write_varlong.
func appendVarlong(dst []byte, x int64, minBytes int) []byte {
	var b [9]byte
	binary.LittleEndian.PutUint64(b[1:], uint64(x))
	cnt := 8
	for cnt > minBytes && b[cnt] == 0 {
		cnt--
	}
	bit := byte(1) << (7 - cnt + minBytes)
	switch {
	case b[cnt] >= bit:
		cnt++
		b[0] = ^(bit - 1)
	case cnt > minBytes:
		b[0] = b[cnt] | ^(bit*2 - 1)
	default:
		b[0] = b[cnt]
	}
	return append(dst, b[:cnt]...)
}

func appendVstring(dst []byte, s string) []byte {
	if len(s) > 0x7f {
		dst = append(dst, byte(len(s)>>8)|0x80)
	}
	return append(append(dst, byte(len(s))), s...)
}

// ndxCodec is the state of one direction of read_ndx/write_ndx: indexes
// go as differences from the previous one of the same sign.
type ndxCodec struct {
	prevPos, prevNeg int32
}

func newNdxCodec() ndxCodec { return ndxCodec{prevPos: -1, prevNeg: 1} }

const ndxDone = -1

func (c *ndxCodec) appendNdx(dst []byte, ndx int32) []byte {
	var diff int32
	if ndx >= 0 {
		diff = ndx - c.prevPos
		c.prevPos = ndx
	} else if ndx == ndxDone {
		return append(dst, 0)
	} else {
		dst = append(dst, 0xff)
		ndx = -ndx
		diff = ndx - c.prevNeg
		c.prevNeg = ndx
	}
	switch {
	case diff > 0 && diff < 0xfe:
		return append(dst, byte(diff))
	case diff < 0 || diff > 0x7fff:
		return append(dst, 0xfe, byte(ndx>>24)|0x80, byte(ndx), byte(ndx>>8), byte(ndx>>16))
	default:
		return append(dst, 0xfe, byte(diff>>8), byte(diff))
	}
}

func (c *ndxCodec) read(r *rawReader) (int32, error) {
	b, err := r.byte1("file index")
	if err != nil {
		return 0, err
	}
	prev := &c.prevPos
	switch b {
	case 0:
		return ndxDone, nil
	case 0xff:
		if b, err = r.byte1("file index"); err != nil {
			return 0, err
		}
		prev = &c.prevNeg
	}
	var num uint32
	if b == 0xfe {
		var x [4]byte
		if err := r.full(x[:2], "file index"); err != nil {
			return 0, err
		}
		if x[0]&0x80 != 0 {
			x[3] = x[0] &^ 0x80
			x[0] = x[1]
			if err := r.full(x[1:3], "file index"); err != nil {
				return 0, err
			}
			num = binary.LittleEndian.Uint32(x[:])
		} else {
			num = uint32(x[0])<<8 | uint32(x[1]) + uint32(*prev)
		}
	} else {
		num = uint32(b) + uint32(*prev)
	}
	if num > 1<<31-1 {
		return 0, protoErr("file index %d out of range", num)
	}
	*prev = int32(num)
	if prev == &c.prevNeg {
		return -int32(num), nil
	}
	return int32(num), nil
}

// muxWriter frames everything written to it as MSG_DATA messages: from
// protocol 30 on the receiver's stream to the sender is multiplexed too.
type muxWriter struct{ w *bufio.Writer }

func (m muxWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 0xffffff)
		var h [4]byte
		binary.LittleEndian.PutUint32(h[:], uint32(mplexBase+msgData)<<24|uint32(k))
		m.w.Write(h[:])
		if _, err := m.w.Write(p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, m.w.Flush()
}

var _ io.Writer = muxWriter{}
