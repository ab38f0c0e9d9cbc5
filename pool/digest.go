package pool

import (
	"encoding/hex"
	"fmt"
)

// DigestSize is the size of a Digest in bytes.
const DigestSize = 32

// A Digest names an object: BLAKE3-256 of its plaintext, keyed when the pool
// is encrypted. It is comparable and usable as a map key.
type Digest [DigestSize]byte

// String returns the lowercase hex form used in object paths.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// IsZero reports whether d is the zero digest, which names no object.
func (d Digest) IsZero() bool { return d == Digest{} }

// ParseDigest parses the 64-character hex form of a digest.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*DigestSize {
		return d, fmt.Errorf("digest %q: want %d hex characters, got %d", s, 2*DigestSize, len(s))
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fmt.Errorf("digest %q: %w", s, err)
	}
	return d, nil
}

// MarshalText implements encoding.TextMarshaler (JSON uses the hex form).
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Digest) UnmarshalText(b []byte) error {
	p, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}
