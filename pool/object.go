package pool

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

// A Kind says what an object holds. It is stored in the object header so a
// scrub can tell what it read without a reference to it.
type Kind uint8

const (
	KindData      Kind = 1 // file data: a whole small file or one chunk
	KindChunkList Kind = 2 // ordered chunk list of a large file
	KindTree      Kind = 3 // one directory
	KindManifest  Kind = 4 // snapshot manifest
)

func (k Kind) String() string {
	switch k {
	case KindData:
		return "data"
	case KindChunkList:
		return "chunklist"
	case KindTree:
		return "tree"
	case KindManifest:
		return "manifest"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) valid() bool { return k >= KindData && k <= KindManifest }

// Object header layout (FORMAT.md §2).
const (
	objMagic       = "CRNO"
	objVersion     = 1
	headerSize     = 20
	compNone       = 0
	compZstd       = 1
	encNone        = 0
	encXChaCha     = 1
	nonceSize      = 24 // XChaCha20-Poly1305
	tagSize        = 16
	checksumSize   = 32 // trailer of unencrypted named objects
	MaxObjectSize  = 1 << 30
	minCompressLen = 64
	sampleSegment  = 8 << 10 // bytes per sample segment for the compressibility test
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type header struct {
	kind     Kind
	comp     uint8
	enc      uint8
	plainLen uint64
}

func (h header) put(b []byte) {
	copy(b[0:4], objMagic)
	b[4] = objVersion
	b[5] = byte(h.kind)
	b[6] = h.comp
	b[7] = h.enc
	binary.LittleEndian.PutUint64(b[8:16], h.plainLen)
	binary.LittleEndian.PutUint32(b[16:20], crc32.Checksum(b[0:16], crcTable))
}

func parseHeader(b []byte) (header, error) {
	var h header
	if len(b) < headerSize {
		return h, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrCorrupt, len(b), headerSize)
	}
	if string(b[0:4]) != objMagic {
		return h, fmt.Errorf("%w: bad magic %q", ErrCorrupt, b[0:4])
	}
	if crc32.Checksum(b[0:16], crcTable) != binary.LittleEndian.Uint32(b[16:20]) {
		return h, fmt.Errorf("%w: header checksum mismatch", ErrCorrupt)
	}
	if b[4] != objVersion {
		return h, fmt.Errorf("%w: unsupported object format version %d", ErrCorrupt, b[4])
	}
	h.kind, h.comp, h.enc = Kind(b[5]), b[6], b[7]
	h.plainLen = binary.LittleEndian.Uint64(b[8:16])
	switch {
	case !h.kind.valid():
		return h, fmt.Errorf("%w: unknown kind %d", ErrCorrupt, b[5])
	case h.comp > compZstd:
		return h, fmt.Errorf("%w: unknown compression %d", ErrCorrupt, h.comp)
	case h.enc > encXChaCha:
		return h, fmt.Errorf("%w: unknown encryption %d", ErrCorrupt, h.enc)
	case h.plainLen > MaxObjectSize:
		return h, fmt.Errorf("%w: plaintext length %d exceeds the maximum", ErrCorrupt, h.plainLen)
	}
	return h, nil
}

// zstd state is shared: EncodeAll/DecodeAll are safe for concurrent use and
// keep an internal pool of GOMAXPROCS encoders/decoders.
var (
	zOnce sync.Once
	zEnc  *zstd.Encoder
	zDec  *zstd.Decoder
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder) {
	zOnce.Do(func() {
		var err error
		zEnc, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithEncoderCRC(false), // the digest or AEAD tag covers the plaintext
			zstd.WithZeroFrames(true),
			zstd.WithLowerEncoderMem(true),
			zstd.WithWindowSize(4<<20),
		)
		if err != nil {
			panic("pool: zstd encoder: " + err.Error())
		}
		zDec, err = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithDecoderMaxMemory(MaxObjectSize),
		)
		if err != nil {
			panic("pool: zstd decoder: " + err.Error())
		}
	})
	return zEnc, zDec
}

// worthCompressing is the cheap test that keeps random data at memory
// speed. First the order-0 entropy of the object (or of three 8 KiB
// samples: start, middle, end), a histogram far cheaper than a zstd
// trial: at ≥ 7.9 bits a byte the data looks random (uniform random
// bytes give ≥ 7.94 at 4 KiB; entropy coding could save at most 1.25%)
// and it is stored raw without running zstd; at ≤ 7 bits it is text or
// other structured data and the whole object is compressed without a
// trial (compressInto still keeps it only if it shrank). In between,
// and below 4 KiB, the samples (or a small object itself) are tried and
// it gives up when they shrink by less than 5%. Like the sampling, this
// misses repeats in data that otherwise looks random; FORMAT.md §3
// leaves these heuristics to the writer.
func worthCompressing(data []byte) bool {
	if len(data) < minCompressLen {
		return false
	}
	if len(data) <= 4*sampleSegment {
		// Small: judge by the entropy, else just try the real thing.
		return len(data) < entropyMinLen || byteEntropy(data) < entropyRaw
	}
	mid := len(data)/2 - sampleSegment/2
	a, b, c := data[:sampleSegment], data[mid:mid+sampleSegment], data[len(data)-sampleSegment:]
	switch h := byteEntropy(a, b, c); {
	case h >= entropyRaw:
		return false
	case h <= entropySure:
		return true
	}
	enc, _ := zstdCodecs()
	sp := getBuf(3 * sampleSegment)
	defer putBuf(sp)
	s := *sp
	s = append(s, a...)
	s = append(s, b...)
	s = append(s, c...)
	op := getBuf(len(s) + 512)
	defer putBuf(op)
	out := enc.EncodeAll(s, (*op)[:0])
	*op = out[:0]
	return len(out) < len(s)-len(s)/20
}

// Entropy thresholds of worthCompressing, in bits per byte, and the
// shortest input judged by entropy alone.
const (
	entropyRaw    = 7.9
	entropySure   = 7.0
	entropyMinLen = 4096
)

// byteEntropy returns the order-0 (byte histogram) entropy of the
// concatenation of segs, in bits per byte.
func byteEntropy(segs ...[]byte) float64 {
	// Four tables so consecutive equal bytes do not serialise on one
	// counter.
	var c [4][256]uint32
	n := 0
	for _, b := range segs {
		n += len(b)
		for len(b) >= 4 {
			c[0][b[0]]++
			c[1][b[1]]++
			c[2][b[2]]++
			c[3][b[3]]++
			b = b[4:]
		}
		for _, x := range b {
			c[0][x]++
		}
	}
	if n == 0 {
		return 0
	}
	var sum float64
	for i := range 256 {
		if v := c[0][i] + c[1][i] + c[2][i] + c[3][i]; v > 0 {
			f := float64(v)
			sum += f * math.Log2(f)
		}
	}
	return math.Log2(float64(n)) - sum/float64(n)
}

// compressInto appends the zstd form of data to dst when it pays (at least
// ~3% smaller) and reports whether it did. On false dst is returned
// unchanged.
func compressInto(dst, data []byte) ([]byte, bool) {
	if !worthCompressing(data) {
		return dst, false
	}
	enc, _ := zstdCodecs()
	n := len(dst)
	out := enc.EncodeAll(data, dst)
	if len(out)-n >= len(data)-len(data)/32 {
		return out[:n], false
	}
	return out, true
}

// bindingFor returns the additional data that ties an object to where it
// is stored, so an object moved to another name fails authentication.
func objectBinding(d Digest) []byte {
	b := make([]byte, 0, 14+DigestSize)
	b = append(b, "cairn-object\x00"...)
	return append(b, d[:]...)
}

func namedBinding(name string) []byte {
	b := make([]byte, 0, 12+len(name))
	b = append(b, "cairn-named\x00"...)
	return append(b, name...)
}

// encodeObject appends the stored form of plain to dst (FORMAT.md §2–4).
// aead is nil for an unencrypted pool; nonce must then be nil too. trailer
// (unencrypted named objects only) is the checksum appended after the body.
func encodeObject(dst []byte, kind Kind, plain []byte, aead cipher.AEAD, nonce, binding []byte, trailer *Digest) []byte {
	h := header{kind: kind, plainLen: uint64(len(plain))}
	if aead != nil {
		h.enc = encXChaCha
	}
	start := len(dst)
	dst = append(dst, make([]byte, headerSize)...)
	if aead == nil {
		var ok bool
		dst, ok = compressInto(dst, plain)
		if ok {
			h.comp = compZstd
		} else {
			dst = append(dst, plain...)
		}
		h.put(dst[start : start+headerSize])
		if trailer != nil {
			dst = append(dst, trailer[:]...)
		}
		return dst
	}
	// Encrypted: compress into a scratch buffer, then seal after the nonce.
	sp := getBuf(len(plain) + 64)
	defer putBuf(sp)
	payload, ok := compressInto((*sp)[:0], plain)
	if ok {
		h.comp = compZstd
	} else {
		payload = plain
	}
	h.put(dst[start : start+headerSize])
	dst = append(dst, nonce...)
	ad := make([]byte, 0, headerSize+len(binding))
	ad = append(append(ad, dst[start:start+headerSize]...), binding...)
	dst = aead.Seal(dst, nonce, payload, ad)
	if ok {
		*sp = payload[:0]
	}
	return dst
}

// decodeObject checks and opens a stored object. It never panics and
// never returns unverified plaintext for encrypted objects; for
// unencrypted content objects the caller re-hashes (the digest is the
// check). trailer says the object must end with a plaintext checksum,
// which is verified with sum.
func decodeObject(raw []byte, aead cipher.AEAD, binding []byte, trailer bool, sum func([]byte) Digest) (Kind, []byte, error) {
	return decodeObjectInto(raw, aead, binding, trailer, sum, nil)
}

// decodeObjectInto is decodeObject that decompresses into alloc(n)[:0]
// (a buffer of capacity ≥ n the caller owns), or a new one when alloc is
// nil.
func decodeObjectInto(raw []byte, aead cipher.AEAD, binding []byte, trailer bool, sum func([]byte) Digest, alloc func(n int) []byte) (Kind, []byte, error) {
	h, err := parseHeader(raw)
	if err != nil {
		return 0, nil, err
	}
	body := raw[headerSize:]
	switch {
	case h.enc == encNone && aead != nil:
		return 0, nil, fmt.Errorf("%w: unencrypted object in an encrypted pool", ErrCorrupt)
	case h.enc != encNone && aead == nil:
		return 0, nil, fmt.Errorf("%w: encrypted object in an unencrypted pool", ErrCorrupt)
	}
	var want *Digest
	if aead != nil {
		if len(body) < nonceSize+tagSize {
			return 0, nil, fmt.Errorf("%w: truncated (%d bytes after header)", ErrCorrupt, len(body))
		}
		ad := make([]byte, 0, headerSize+len(binding))
		ad = append(append(ad, raw[:headerSize]...), binding...)
		body, err = aead.Open(nil, body[:nonceSize], body[nonceSize:], ad)
		if err != nil {
			return 0, nil, fmt.Errorf("%w: authentication failed (damaged, moved or not written with this key)", ErrCorrupt)
		}
	} else if trailer {
		if len(body) < checksumSize {
			return 0, nil, fmt.Errorf("%w: truncated (no checksum trailer)", ErrCorrupt)
		}
		var d Digest
		copy(d[:], body[len(body)-checksumSize:])
		want = &d
		body = body[:len(body)-checksumSize]
	}
	plain := body
	if h.comp == compZstd {
		// A frame that declares another length than the header is refused
		// before decoding rather than inflated. (Tiny frames may omit it.)
		var zh zstd.Header
		if err := zh.Decode(body); err != nil || (zh.HasFCS && zh.FrameContentSize != h.plainLen) {
			return 0, nil, fmt.Errorf("%w: zstd frame header does not match the object header", ErrCorrupt)
		}
		_, dec := zstdCodecs()
		capHint := h.plainLen
		if limit := uint64(len(body))*64 + 1024; capHint > limit {
			capHint = limit // don't trust a length to size an allocation
		}
		var dst []byte
		if alloc != nil {
			dst = alloc(int(capHint))[:0]
		} else {
			dst = make([]byte, 0, capHint)
		}
		plain, err = dec.DecodeAll(body, dst)
		if err != nil {
			return 0, nil, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
	}
	if uint64(len(plain)) != h.plainLen {
		return 0, nil, fmt.Errorf("%w: length %d, header says %d", ErrCorrupt, len(plain), h.plainLen)
	}
	if want != nil && sum(plain) != *want {
		return 0, nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	return h.kind, plain, nil // may alias raw, which the caller owns
}

// plainSum is the unkeyed BLAKE3-256 used where no pool key applies.
func plainSum(b []byte) Digest { return Digest(blake3.Sum256(b)) }
