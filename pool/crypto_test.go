package pool

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	key, err := writeNewKeyFile(path)
	if err != nil || len(key) != KeySize {
		t.Fatal(err)
	}
	got, err := readKeyFile(path)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("read back: %v", err)
	}
	raw, _ := os.ReadFile(path)
	if len(raw) != 2*KeySize+1 || raw[len(raw)-1] != '\n' {
		t.Fatalf("key file format: %q", raw)
	}
	if _, err := writeNewKeyFile(path); !errors.Is(err, ErrExists) {
		t.Fatalf("overwrite: %v", err)
	}
	// Surrounding whitespace is tolerated; anything else is not a key.
	if k, err := parseKey("x", []byte("  "+strings.ToUpper(string(raw[:64]))+"\r\n")); err != nil || !bytes.Equal(k, key) {
		t.Fatalf("whitespace/upper case: %v", err)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("a", 63), strings.Repeat("a", 66), strings.Repeat("g", 64)} {
		if _, err := parseKey("x", []byte(bad)); !errors.Is(err, ErrNoKey) {
			t.Errorf("parseKey(%q): %v", bad, err)
		}
	}
	if _, err := writeNewKeyFile(filepath.Join(dir, "no", "dir", "k")); err == nil {
		t.Fatal("key file in a missing directory")
	}
}

func TestDerivedKeys(t *testing.T) {
	a, _ := deriveKeys(bytes.Repeat([]byte{1}, KeySize))
	a2, _ := deriveKeys(bytes.Repeat([]byte{1}, KeySize))
	b, _ := deriveKeys(bytes.Repeat([]byte{2}, KeySize))
	if _, err := deriveKeys([]byte("short")); err == nil {
		t.Fatal("short master key accepted")
	}
	data := []byte("some data")
	if a.hash(data) != a2.hash(data) || a.hash(data) == b.hash(data) || a.hash(data) == plainSum(data) {
		t.Fatal("keyed digests: not deterministic or not key-dependent")
	}
	id := "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
	if !a.matches(id, a2.keyCheck(id)) || a.matches(id, b.keyCheck(id)) || a.keyCheck(id) == a.keyCheck("other") {
		t.Fatal("key check value")
	}
	// The subkeys are independent: the check value is not a prefix of
	// anything the digest key produces for the same input.
	if strings.Contains(a.keyCheck(id), a.hash([]byte("cairn key check\x00" + id)).String()[:32]) {
		t.Fatal("key check shares the digest key")
	}
	// Pooled keyed hashers are safe to use concurrently.
	want := a.hash(bytes.Repeat([]byte("x"), 100000))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if a.hash(bytes.Repeat([]byte("x"), 100000)) != want {
					t.Error("concurrent keyed hash differs")
					return
				}
			}
		}()
	}
	wg.Wait()
}
