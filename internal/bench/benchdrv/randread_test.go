package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRandRead checks the digest of randread against the blocks of the
// file hashed in the same shuffled order, and that -span limits the read.
func TestRandRead(t *testing.T) {
	data := make([]byte, 300_000) // 4 full 64 KiB blocks and a short one
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		r, w, _ := os.Pipe()
		old := os.Stdout
		os.Stdout = w
		err := randRead(append([]string{"--file", f}, args...))
		os.Stdout = old
		w.Close()
		out, _ := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	want := func(n int) string {
		const bs = 64 << 10
		blocks := (n + bs - 1) / bs
		h := sha256.New()
		for _, i := range rand.New(rand.NewPCG(1, 0x5eed)).Perm(blocks) {
			h.Write(data[i*bs : min((i+1)*bs, n)])
		}
		return fmt.Sprintf("%d %x", n, h.Sum(nil))
	}
	if got := run(); got != want(len(data)) {
		t.Errorf("whole file: got %s, want %s", got, want(len(data)))
	}
	if got := run("--span", "131072"); got != want(131072) {
		t.Errorf("span 128 KiB: got %s, want %s", got, want(131072))
	}
	if bytes.Equal([]byte(run("--seed", "2")), []byte(run())) {
		t.Error("another seed read in the same order")
	}
	if err := randRead([]string{"--file", filepath.Join(t.TempDir(), "missing")}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
}
