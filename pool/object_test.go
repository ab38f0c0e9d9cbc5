package pool

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func testKeys(t testing.TB) *keys {
	k, err := deriveKeys(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sampleText(n int) []byte {
	return []byte(strings.Repeat("the quick brown fox jumps over the lazy dog\n", n/44+1)[:n])
}

// encodeFor builds a stored object the way Pool does.
func encodeFor(t testing.TB, k *keys, kind Kind, plain []byte, binding []byte, named bool) []byte {
	if k == nil {
		var tr *Digest
		if named {
			s := plainSum(plain)
			tr = &s
		}
		return encodeObject(nil, kind, plain, nil, nil, binding, tr)
	}
	n, err := k.nonce()
	if err != nil {
		t.Fatal(err)
	}
	return encodeObject(nil, kind, plain, k.aead, n, binding, nil)
}

func TestObjectRoundTripAndCorruption(t *testing.T) {
	k := testKeys(t)
	inputs := map[string][]byte{
		"empty": {}, "small": []byte("hello"), "text": sampleText(100000), "binary": func() []byte {
			b := make([]byte, 50000)
			for i := range b {
				b[i] = byte(i*7919 ^ i>>3)
			}
			return b
		}(),
	}
	for _, enc := range []*keys{nil, k} {
		for _, named := range []bool{false, true} {
			for name, plain := range inputs {
				d := plainSum(plain)
				if enc != nil {
					d = enc.hash(plain)
				}
				binding := objectBinding(d)
				if named {
					binding = namedBinding("snapshots/x")
				}
				raw := encodeFor(t, enc, KindTree, plain, binding, named)
				open := func(raw []byte) (Kind, []byte, error) {
					if enc == nil {
						kind, got, err := decodeObject(raw, nil, binding, named, plainSum)
						if err == nil && !named && plainSum(got) != d {
							err = ErrCorrupt
						}
						return kind, got, err
					}
					return decodeObject(raw, enc.aead, binding, false, nil)
				}
				kind, got, err := open(raw)
				if err != nil || kind != KindTree || !bytes.Equal(got, plain) {
					t.Fatalf("%s enc=%v named=%v: round trip: kind=%v err=%v", name, enc != nil, named, kind, err)
				}
				// Every truncation and every single bit flip is detected.
				for cut := 0; cut < len(raw); cut += 1 + len(raw)/97 {
					if _, _, err := open(raw[:cut]); !errors.Is(err, ErrCorrupt) {
						t.Fatalf("%s enc=%v named=%v: truncated to %d: err=%v", name, enc != nil, named, cut, err)
					}
				}
				for i := 0; i < len(raw); i += 1 + len(raw)/211 {
					for _, bit := range []byte{1, 0x80} {
						flipped := append([]byte(nil), raw...)
						flipped[i] ^= bit
						if _, _, err := open(flipped); !errors.Is(err, ErrCorrupt) {
							t.Fatalf("%s enc=%v named=%v: flip at %d: err=%v", name, enc != nil, named, i, err)
						}
					}
				}
			}
		}
	}
}

func TestEncryptedObjectBoundToDigest(t *testing.T) {
	k := testKeys(t)
	a, b := []byte("content A"), []byte("content B")
	rawA := encodeFor(t, k, KindData, a, objectBinding(k.hash(a)), false)
	// Stored under B's name, A's bytes fail authentication.
	if _, _, err := decodeObject(rawA, k.aead, objectBinding(k.hash(b)), false, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("swapped object: %v", err)
	}
	rawN := encodeFor(t, k, KindManifest, a, namedBinding("snapshots/1"), true)
	if _, _, err := decodeObject(rawN, k.aead, namedBinding("snapshots/2"), false, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("renamed named object: %v", err)
	}
	// An object of another key is corrupt, not garbage.
	other, _ := deriveKeys(bytes.Repeat([]byte{8}, KeySize))
	if _, _, err := decodeObject(rawA, other.aead, objectBinding(k.hash(a)), false, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("other key: %v", err)
	}
	// Keyed digests differ from plain ones and between keys.
	if k.hash(a) == Digest(plainSum(a)) || k.hash(a) == other.hash(a) {
		t.Fatal("keyed digest leaks the plain digest")
	}
	if h1, h2 := k.hash(a), k.hash(a); h1 != h2 {
		t.Fatal("keyed hash not deterministic (hasher reuse)")
	}
	// Encrypted objects do not contain the plaintext even when stored raw.
	secret := []byte("a secret that must not appear in storage, repeated: " + strings.Repeat("zz", 10))
	raw := encodeFor(t, k, KindData, secret, objectBinding(k.hash(secret)), false)
	if bytes.Contains(raw, []byte("secret")) {
		t.Fatal("plaintext visible in encrypted object")
	}
}

func TestCompressionDecision(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		want uint8
	}{
		{"tiny", []byte("abcabcabc"), compNone},
		{"text", sampleText(1 << 20), compZstd},
		{"random", randomish(1 << 20), compNone},
		{"small random", randomish(20000), compNone},
		{"small text", sampleText(20000), compZstd},
		{"random 4 KiB", randomish(4096), compNone},
		{"random just under 4 KiB", randomish(4095), compNone},
		{"text 4 KiB", sampleText(4096), compZstd},
	} {
		raw := encodeObject(nil, KindData, c.data, nil, nil, nil, nil)
		h, err := parseHeader(raw)
		if err != nil || h.comp != c.want {
			t.Errorf("%s: compression %d (err %v), want %d", c.name, h.comp, err, c.want)
		}
		if c.want == compNone && len(raw) != headerSize+len(c.data) {
			t.Errorf("%s: raw object is %d bytes", c.name, len(raw))
		}
	}
}

// hexish is random lowercase hex digits.
func hexish(n int) []byte {
	b := randomish(n)
	for i := range b {
		b[i] = "0123456789abcdef"[b[i]&15]
	}
	return b
}

// symbols is random bytes out of the first k values (log2 k bits a byte).
func symbols(n, k int) []byte {
	b := randomish(n)
	for i := range b {
		b[i] = byte(int(b[i]) * k / 256)
	}
	return b
}

// worthCompressing judges by entropy where it can: random data of 4 KiB
// or more is not tried, low-entropy data is tried without sampling, and
// in between (or under 4 KiB) the samples or the object are tried.
func TestWorthCompressing(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		want bool
	}{
		{"random 4 KiB", randomish(4096), false},
		{"random 1 MiB", randomish(1 << 20), false},
		{"random under 4 KiB: tried", randomish(4095), true},
		{"hex: tried", hexish(20000), true},
		{"large hex: tried without samples", hexish(1 << 20), true},
		{"large text", sampleText(1 << 20), true},
		// 7.4 bits a byte and no repeats: the samples are tried and
		// do not shrink.
		{"181 symbols", symbols(100000, 181), false},
		// 7.4 bits a byte with repeats: the samples shrink.
		{"181 symbols repeated", bytes.Repeat(symbols(2000, 181), 50), true},
	} {
		if got := worthCompressing(c.data); got != c.want {
			t.Errorf("%s (%.2f bits a byte): %v, want %v", c.name, byteEntropy(c.data), got, c.want)
		}
	}
}

func TestByteEntropy(t *testing.T) {
	for _, c := range []struct {
		name     string
		segs     [][]byte
		min, max float64
	}{
		{"empty", nil, 0, 0},
		{"one symbol", [][]byte{bytes.Repeat([]byte{7}, 1000)}, 0, 0},
		{"two symbols", [][]byte{bytes.Repeat([]byte{1, 2}, 500)}, 1, 1},
		{"hex", [][]byte{hexish(1 << 16)}, 3.99, 4},
		{"random in segments", [][]byte{randomish(8192), randomish(8192)[:100], randomish(3)}, 7.95, 8},
	} {
		if h := byteEntropy(c.segs...); h < c.min-1e-9 || h > c.max+1e-9 {
			t.Errorf("%s: entropy %.4f, want %.2f…%.2f", c.name, h, c.min, c.max)
		}
	}
}

// randomish is deterministic incompressible data (xorshift).
func randomish(n int) []byte {
	b := make([]byte, n)
	x := uint64(88172645463325252)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x >> 32)
	}
	return b
}

func FuzzDecodeObject(f *testing.F) {
	k := testKeys(f)
	for _, plain := range [][]byte{nil, []byte("x"), sampleText(5000), randomish(3000)} {
		for _, named := range []bool{false, true} {
			f.Add(encodeFor(f, nil, KindData, plain, namedBinding("n"), named), false, named)
			f.Add(encodeFor(f, k, KindChunkList, plain, namedBinding("n"), named), true, named)
		}
	}
	f.Add([]byte("CRNO"), false, false)
	f.Add([]byte{}, true, false)
	f.Fuzz(func(t *testing.T, raw []byte, encrypted, named bool) {
		var kind Kind
		var plain []byte
		var err error
		if encrypted {
			kind, plain, err = decodeObject(raw, k.aead, namedBinding("n"), false, nil)
		} else {
			kind, plain, err = decodeObject(raw, nil, namedBinding("n"), named, plainSum)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode error is not ErrCorrupt: %v", err)
			}
			return
		}
		if !kind.valid() {
			t.Fatalf("accepted invalid kind %d", kind)
		}
		h, _ := parseHeader(raw)
		if uint64(len(plain)) != h.plainLen {
			t.Fatalf("length %d, header %d", len(plain), h.plainLen)
		}
	})
}

func FuzzParseIdentity(f *testing.F) {
	good, _ := json.Marshal(identity{Format: identityFormat, Version: 1, ID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8", Digest: digestPlain, Layout: layoutV1, Compression: "zstd"})
	enc, _ := json.Marshal(identity{Format: identityFormat, Version: 1, ID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8", Digest: digestKeyed, Layout: layoutV1, Compression: "zstd",
		Encryption: &identityEncryption{Cipher: cipherXChaCha, KDF: kdfBLAKE3, KeyCheck: strings.Repeat("ab", 16)}})
	f.Add(good)
	f.Add(enc)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"format":"cairn-pool","version":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := parseIdentity(b)
		if err != nil {
			return
		}
		if id.Version != FormatVersion || len(id.ID) != 36 || (id.Encryption != nil) != (id.Digest == digestKeyed) {
			t.Fatalf("accepted inconsistent identity %+v", id)
		}
	})
}

// BenchmarkEncodeObject measures the CPU side of Put (compression decision,
// compression, header) without storage: random data must be skipped at
// memory speed.
func BenchmarkEncodeObject(b *testing.B) {
	for name, data := range map[string][]byte{"random": randomish(1 << 20), "text": sampleText(1 << 20)} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			buf := make([]byte, 0, len(data)+1024)
			for range b.N {
				buf = encodeObject(buf[:0], KindData, data, nil, nil, nil, nil)
			}
		})
	}
	k := testKeys(b)
	b.Run("random-encrypted", func(b *testing.B) {
		data := randomish(1 << 20)
		b.SetBytes(int64(len(data)))
		buf := make([]byte, 0, len(data)+1024)
		nonce, _ := k.nonce()
		for range b.N {
			buf = encodeObject(buf[:0], KindData, data, k.aead, nonce, nil, nil)
		}
	})
}
