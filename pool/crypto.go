package pool

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/zeebo/blake3"
	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the size of a pool master key.
const KeySize = 32

// Key-derivation contexts (FORMAT.md §4). Changing them changes the format.
const (
	kdfDigest = "cairn pool v1 digest key"
	kdfAEAD   = "cairn pool v1 object encryption key"
	kdfCheck  = "cairn pool v1 key check"
)

// keys holds the subkeys derived from one master key. The master key itself
// is not kept.
type keys struct {
	aead    cipher.AEAD
	hashers sync.Pool // *blake3.Hasher keyed with the digest subkey
	check   [32]byte
}

func deriveKeys(master []byte) (*keys, error) {
	if len(master) != KeySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(master), KeySize)
	}
	var dk, ak [32]byte
	blake3.DeriveKey(kdfDigest, master, dk[:])
	blake3.DeriveKey(kdfAEAD, master, ak[:])
	k := &keys{}
	blake3.DeriveKey(kdfCheck, master, k.check[:])
	aead, err := chacha20poly1305.NewX(ak[:])
	if err != nil {
		return nil, err
	}
	k.aead = aead
	k.hashers.New = func() any {
		h, err := blake3.NewKeyed(dk[:])
		if err != nil {
			panic("pool: keyed blake3: " + err.Error()) // only on a wrong key length
		}
		return h
	}
	return k, nil
}

func (k *keys) hash(data []byte) Digest {
	h := k.hashers.Get().(*blake3.Hasher)
	h.Reset()
	h.Write(data)
	var d Digest
	h.Sum(d[:0])
	k.hashers.Put(h)
	return d
}

// keyCheck is the value stored in the identity file: it proves a key
// belongs to this pool without revealing anything about the key.
func (k *keys) keyCheck(poolID string) string {
	h, _ := blake3.NewKeyed(k.check[:])
	h.WriteString("cairn key check\x00" + poolID)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (k *keys) matches(poolID, want string) bool {
	got := k.keyCheck(poolID)
	return subtle.ConstantTimeCompare([]byte(got), []byte(strings.ToLower(want))) == 1
}

func (k *keys) nonce() ([]byte, error) {
	n := make([]byte, nonceSize)
	if _, err := rand.Read(n); err != nil {
		return nil, fmt.Errorf("random nonce: %w", err)
	}
	return n, nil
}

// Key file format (FORMAT.md §4): 64 lowercase hex characters and a newline.

// writeNewKeyFile creates path with mode 0600 holding a fresh random key.
// It refuses to overwrite an existing file.
func writeNewKeyFile(path string) ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("key file %s: %w (refusing to overwrite a key)", path, ErrExists)
		}
		return nil, fmt.Errorf("key file: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}

// readKeyFile reads a key file; every failure is ErrNoKey.
func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoKey, err)
	}
	return parseKey(path, b)
}

func parseKey(path string, b []byte) ([]byte, error) {
	s := strings.TrimSpace(string(b))
	key, err := hex.DecodeString(s)
	if err != nil || len(key) != KeySize {
		return nil, fmt.Errorf("%w: key file %s: not a cairn key (want %d hex characters)", ErrNoKey, path, 2*KeySize)
	}
	return key, nil
}
