package secret

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret.key")
	b, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st.Mode(), err)
	}
	plain := []byte("hunter2-password")
	s1, err := b.Seal("source-secret", plain)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := b.Seal("source-secret", plain)
	if bytes.Equal(s1, s2) {
		t.Fatal("two seals of one value are equal: nonce reuse")
	}
	if bytes.Contains(s1, plain) {
		t.Fatal("sealed value contains the plaintext")
	}
	// Reloading gives the same key.
	b2, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b2.Open("source-secret", s1)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open = %q, %v", got, err)
	}
	if _, err := b2.Open("other-purpose", s1); !errors.Is(err, ErrOpen) {
		t.Fatalf("open with another purpose: %v, want ErrOpen", err)
	}
	s1[len(s1)-1] ^= 1
	if _, err := b2.Open("source-secret", s1); !errors.Is(err, ErrOpen) {
		t.Fatalf("open of a damaged value: %v, want ErrOpen", err)
	}
	other, _ := LoadOrCreate(filepath.Join(t.TempDir(), "k"))
	if _, err := other.Open("source-secret", s2); !errors.Is(err, ErrOpen) {
		t.Fatalf("open with another key: %v, want ErrOpen", err)
	}
	if _, err := b.Open("source-secret", []byte{1, 2}); !errors.Is(err, ErrOpen) {
		t.Fatalf("open of a short value: %v", err)
	}
}

func TestKeyFileModeChecked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret.key")
	if _, err := LoadOrCreate(path); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	if _, err := LoadOrCreate(path); err == nil {
		t.Fatal("a world-readable key file was accepted")
	}
}
