package images

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

func sampleManifest(alg HashAlg) *Manifest {
	m := &Manifest{Name: "vm1.disk", ID: "20261123T200000.000000000Z-0a1b2c3d", Host: "hv1", Source: "ssh:/dev/vg0/root",
		Snapshot: "snap-1", Time: time.Unix(1790000000, 5).UTC(), Size: 5*BlockSize + 7, HostHash: alg}
	b := builder{m: m}
	for i, zero := range []bool{false, false, true, true, false, false} {
		var d pool.Digest
		d[0], d[31] = byte(i+1), 0xee
		h := [HostHashSize]byte{byte(i)}
		b.add(zero, d, &h)
	}
	return m
}

func TestManifestRoundTrip(t *testing.T) {
	for _, alg := range []HashAlg{HashNone, HashSHA256} {
		m := sampleManifest(alg)
		enc := m.encode()
		got, err := DecodeManifest(enc)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.encode(), enc) || got.Name != m.Name || got.ID != m.ID || got.Host != m.Host ||
			got.Source != m.Source || got.Snapshot != m.Snapshot || !got.Time.Equal(m.Time) || got.Size != m.Size {
			t.Fatalf("round trip differs: %+v", got)
		}
		if len(got.runs) != 3 || got.DataBlocks() != 4 {
			t.Fatalf("runs %+v", got.runs)
		}
		for i := range int64(6) {
			d, zero, ok := got.Block(i)
			if !ok || zero != (i == 2 || i == 3) || (!zero && d[0] != byte(i+1)) {
				t.Errorf("block %d: %v %v %v", i, d[0], zero, ok)
			}
			h, ok := got.HostHashOf(i)
			switch {
			case alg == HashNone && ok:
				t.Errorf("block %d: host hash without one recorded", i)
			case alg == HashSHA256 && !zero && h[0] != byte(i):
				t.Errorf("block %d: host hash %x", i, h[:2])
			case alg == HashSHA256 && zero && h != zeroSHA256(BlockSize):
				t.Errorf("hole %d: host hash is not that of zeros", i)
			}
		}
		if got.BlockLen(5) != 7 {
			t.Errorf("tail length %d", got.BlockLen(5))
		}
		if _, _, ok := got.Block(6); ok {
			t.Error("block past the end")
		}
	}
}

func TestDecodeManifestRejects(t *testing.T) {
	good := sampleManifest(HashSHA256).encode()
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"short":       good[:10],
		"magic":       mut(func(b []byte) []byte { b[0] = 'X'; return b }),
		"version":     mut(func(b []byte) []byte { b[4] = 2; return b }),
		"hash alg":    mut(func(b []byte) []byte { b[5] = 9; return b }),
		"block size":  mut(func(b []byte) []byte { b[9] = 1; return b }),
		"huge size":   mut(func(b []byte) []byte { b[19] = 0x7f; return b }),
		"truncated":   good[:len(good)-1],
		"trailing":    append(bytes.Clone(good), 0),
		"bigger size": mut(func(b []byte) []byte { b[15]++; return b }),
		"bad name":    mut(func(b []byte) []byte { b[29] = '/'; return b }),
	}
	for name, b := range cases {
		if _, err := DecodeManifest(b); !errors.Is(err, ErrCorruptManifest) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add(sampleManifest(HashNone).encode())
	f.Add(sampleManifest(HashSHA256).encode())
	f.Add((&Manifest{Name: "a", ID: "b"}).encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptManifest) {
				t.Fatalf("error not ErrCorruptManifest: %v", err)
			}
			return
		}
		n := m.NumBlocks()
		data := 0
		for _, r := range m.runs {
			if !r.zero {
				data += int(r.count)
			}
		}
		if data != m.DataBlocks() || int64(len(b)) < int64(data)*pool.DigestSize {
			t.Fatalf("%d data blocks in runs, %d digests, %d input bytes", data, m.DataBlocks(), len(b))
		}
		if n > 0 {
			for _, i := range []int64{0, n / 2, n - 1} {
				if _, _, ok := m.Block(i); !ok {
					t.Fatalf("block %d of %d not found", i, n)
				}
			}
		}
		m2, err := DecodeManifest(m.encode())
		if err != nil || !bytes.Equal(m2.encode(), m.encode()) {
			t.Fatalf("re-encode does not round-trip: %v", err)
		}
	})
}
