package images

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cairn-backup/cairn/pool"
)

// BlockSize is the fixed block size of format version 1: 4 MiB, aligned.
const BlockSize = 4 << 20

// MaxImageSize bounds an image (and every size a source reports): 64 TiB.
const MaxImageSize = 64 << 40

// HashAlg names the host-side per-block hash recorded in a manifest, the
// one a remote tool computes (pool digests may be keyed, so a host cannot
// compute them).
type HashAlg uint8

const (
	HashNone   HashAlg = 0 // no host hashes recorded
	HashSHA256 HashAlg = 1 // SHA-256 of the block's bytes (sha256sum)
)

// HostHashSize is the size of a recorded host hash.
const HostHashSize = 32

// ErrCorruptManifest: a manifest does not decode (FORMAT.md §3).
var ErrCorruptManifest = errors.New("corrupt image manifest")

const (
	manifestMagic   = "CRNI"
	manifestVersion = 1
	maxMetaString   = 1024
	manifestFixed   = 28
)

// A Manifest is one image version: its size and the ordered digests of its
// blocks, all-zero blocks elided as holes. Immutable once built; safe for
// concurrent use.
type Manifest struct {
	Name     string    // image name (one path element)
	ID       string    // version ID, sortable by time
	Host     string    // the host it was pulled from (informational)
	Source   string    // e.g. "ssh:/dev/vg0/root", "sftp:/vm/disk.img" (informational)
	Snapshot string    // the file-pool snapshot it belongs to, if any
	Time     time.Time // when the pull started (UTC)
	Size     int64     // image size in bytes
	HostHash HashAlg   // host-side hash recorded per data block

	runs   []run
	blocks []pool.Digest
	hosts  [][HostHashSize]byte // parallel to blocks when HostHash != HashNone
}

// run is a stretch of blocks: count zero blocks, or count data blocks whose
// digests are blocks[first:first+count].
type run struct {
	start, count int64
	zero         bool
	first        int
}

// NumBlocks returns the number of blocks, ceil(Size/BlockSize).
func (m *Manifest) NumBlocks() int64 { return numBlocks(m.Size) }

func numBlocks(size int64) int64 { return (size + BlockSize - 1) / BlockSize }

// BlockLen returns the length of block i (the last one may be short).
func (m *Manifest) BlockLen(i int64) int { return blockLen(m.Size, i) }

func blockLen(size, i int64) int {
	if rest := size - i*BlockSize; rest < BlockSize {
		return int(rest)
	}
	return BlockSize
}

// DataBlocks returns the number of non-zero blocks.
func (m *Manifest) DataBlocks() int { return len(m.blocks) }

// Block returns block i: its digest, or zero=true for a hole. ok is false
// when i is out of range.
func (m *Manifest) Block(i int64) (d pool.Digest, zero, ok bool) {
	r := m.find(i)
	if r == nil {
		return d, false, false
	}
	if r.zero {
		return d, true, true
	}
	return m.blocks[r.first+int(i-r.start)], false, true
}

// HostHashOf returns the recorded host hash of block i. For a hole it is
// the hash of that many zero bytes; ok is false when the manifest records
// none or i is out of range.
func (m *Manifest) HostHashOf(i int64) (h [HostHashSize]byte, ok bool) {
	if m.HostHash != HashSHA256 {
		return h, false
	}
	r := m.find(i)
	if r == nil {
		return h, false
	}
	if r.zero {
		return zeroSHA256(m.BlockLen(i)), true
	}
	return m.hosts[r.first+int(i-r.start)], true
}

func (m *Manifest) find(i int64) *run {
	if i < 0 || i >= m.NumBlocks() {
		return nil
	}
	k := sort.Search(len(m.runs), func(k int) bool { return m.runs[k].start+m.runs[k].count > i })
	if k == len(m.runs) {
		return nil
	}
	return &m.runs[k]
}

// Digests calls fn for every distinct-position data block digest, in block
// order (a digest may repeat).
func (m *Manifest) Digests(fn func(pool.Digest)) {
	for _, d := range m.blocks {
		fn(d)
	}
}

var (
	zeroHashMu sync.Mutex
	zeroHashes = map[int][HostHashSize]byte{}
)

// ZeroSHA256 returns SHA-256 of n zero bytes: the host hash of a hole.
func ZeroSHA256(n int) [HostHashSize]byte { return zeroSHA256(n) }

// zeroSHA256 returns SHA-256 of n zero bytes (memoized: only the full
// block and one tail length occur in practice).
func zeroSHA256(n int) [HostHashSize]byte {
	zeroHashMu.Lock()
	defer zeroHashMu.Unlock()
	if h, ok := zeroHashes[n]; ok {
		return h
	}
	h := sha256.Sum256(make([]byte, n))
	if len(zeroHashes) < 16 {
		zeroHashes[n] = h
	}
	return h
}

// encode returns the manifest's stored form (FORMAT.md §3).
func (m *Manifest) encode() []byte {
	per := pool.DigestSize
	if m.HostHash != HashNone {
		per += HostHashSize
	}
	b := make([]byte, 0, manifestFixed+5*10+len(m.Name)+len(m.ID)+len(m.Host)+len(m.Source)+len(m.Snapshot)+len(m.runs)*10+len(m.blocks)*per)
	b = append(b, manifestMagic...)
	b = append(b, manifestVersion, byte(m.HostHash), 0, 0)
	b = binary.LittleEndian.AppendUint32(b, BlockSize)
	b = binary.LittleEndian.AppendUint64(b, uint64(m.Size))
	b = binary.LittleEndian.AppendUint64(b, uint64(m.Time.UnixNano()))
	for _, s := range []string{m.Name, m.ID, m.Host, m.Source, m.Snapshot} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, r := range m.runs {
		h := uint64(r.count) << 1
		if r.zero {
			b = binary.AppendUvarint(b, h|1)
			continue
		}
		b = binary.AppendUvarint(b, h)
		for k := r.first; k < r.first+int(r.count); k++ {
			b = append(b, m.blocks[k][:]...)
			if m.HostHash != HashNone {
				b = append(b, m.hosts[k][:]...)
			}
		}
	}
	return b
}

// DecodeManifest parses a manifest's stored form. It never panics, and
// allocates in proportion to len(b) only; anything malformed is
// ErrCorruptManifest.
func DecodeManifest(b []byte) (*Manifest, error) {
	bad := func(format string, a ...any) (*Manifest, error) {
		return nil, fmt.Errorf("%w: %s", ErrCorruptManifest, fmt.Sprintf(format, a...))
	}
	if len(b) < manifestFixed {
		return bad("%d bytes, shorter than the %d-byte header", len(b), manifestFixed)
	}
	if string(b[:4]) != manifestMagic {
		return bad("bad magic %q", b[:4])
	}
	if b[4] != manifestVersion {
		return bad("unsupported manifest format version %d", b[4])
	}
	m := &Manifest{HostHash: HashAlg(b[5])}
	if m.HostHash > HashSHA256 {
		return bad("unknown host hash algorithm %d", b[5])
	}
	if b[6] != 0 || b[7] != 0 {
		return bad("reserved bytes are not zero")
	}
	if bs := binary.LittleEndian.Uint32(b[8:12]); bs != BlockSize {
		return bad("block size %d, format version 1 has %d", bs, BlockSize)
	}
	size := binary.LittleEndian.Uint64(b[12:20])
	if size > MaxImageSize {
		return bad("image size %d exceeds %d", size, int64(MaxImageSize))
	}
	m.Size = int64(size)
	m.Time = time.Unix(0, int64(binary.LittleEndian.Uint64(b[20:28]))).UTC()
	p := b[manifestFixed:]
	for _, dst := range []*string{&m.Name, &m.ID, &m.Host, &m.Source, &m.Snapshot} {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > maxMetaString || n > uint64(len(p)-k) {
			return bad("bad metadata string")
		}
		s := string(p[k : k+int(n)])
		if !utf8.ValidString(s) {
			return bad("metadata string is not UTF-8")
		}
		*dst = s
		p = p[k+int(n):]
	}
	if err := validName(m.Name); err != nil {
		return bad("%v", err)
	}
	if err := validID(m.ID); err != nil {
		return bad("%v", err)
	}
	per := pool.DigestSize
	if m.HostHash != HashNone {
		per += HostHashSize
	}
	total := numBlocks(m.Size)
	var next int64
	for len(p) > 0 {
		h, k := binary.Uvarint(p)
		if k <= 0 {
			return bad("bad run header at block %d", next)
		}
		p = p[k:]
		count := h >> 1
		if count == 0 || count > uint64(total-next) {
			return bad("run of %d blocks at block %d of %d", count, next, total)
		}
		r := run{start: next, count: int64(count), zero: h&1 == 1, first: len(m.blocks)}
		if !r.zero {
			if count > uint64(len(p)/per) {
				return bad("data run of %d blocks at block %d is truncated", count, next)
			}
			for range count {
				var d pool.Digest
				copy(d[:], p[:pool.DigestSize])
				if d.IsZero() {
					return bad("zero digest at block %d", next)
				}
				m.blocks = append(m.blocks, d)
				if m.HostHash != HashNone {
					var hh [HostHashSize]byte
					copy(hh[:], p[pool.DigestSize:per])
					m.hosts = append(m.hosts, hh)
				}
				p = p[per:]
			}
		}
		m.runs = append(m.runs, r)
		next += int64(count)
	}
	if next != total {
		return bad("runs cover %d blocks, the size needs %d", next, total)
	}
	return m, nil
}

// builder assembles a manifest block by block, in order.
type builder struct {
	m *Manifest
}

func (b *builder) add(zero bool, d pool.Digest, host *[HostHashSize]byte) {
	m := b.m
	n := len(m.runs)
	switch {
	case n > 0 && m.runs[n-1].zero == zero:
		m.runs[n-1].count++
	case n > 0:
		last := m.runs[n-1]
		m.runs = append(m.runs, run{start: last.start + last.count, count: 1, zero: zero, first: len(m.blocks)})
	default:
		m.runs = append(m.runs, run{count: 1, zero: zero})
	}
	if zero {
		return
	}
	m.blocks = append(m.blocks, d)
	if m.HostHash != HashNone {
		var h [HostHashSize]byte
		if host != nil {
			h = *host
		}
		m.hosts = append(m.hosts, h)
	}
}
