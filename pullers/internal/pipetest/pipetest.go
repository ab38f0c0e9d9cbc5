// Package pipetest has helpers for the pullers' tests of pipelined
// fetching: a tree of many small files and a few large ones, and the
// content digests of a snapshot to compare it with.
package pipetest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/pool"
)

// Data is file i's content: n pseudo-random bytes.
func Data(i, n int) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 0x5eed))
	b := make([]byte, n)
	for k := range b {
		b[k] = byte(r.Uint32())
	}
	return b
}

// Tree writes small files (d00/f000 … spread over 10 directories, 0 to
// 40 kB) and one large/LN file per entry of large under root, and returns
// the SHA-256 of every file by slash path relative to root.
func Tree(t testing.TB, root string, small int, large []int) map[string][32]byte {
	t.Helper()
	sums := map[string][32]byte{}
	write := func(rel string, data []byte) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sums[rel] = sha256.Sum256(data)
	}
	for i := range small {
		write(fmt.Sprintf("d%02d/f%03d", i%10, i), Data(i, (i*7919)%40000))
	}
	for i, n := range large {
		write(fmt.Sprintf("large/L%d", i), Data(1000+i, n))
	}
	return sums
}

// Sums returns the SHA-256 of every regular file in snapshot m.
func Sums(t testing.TB, p *pool.Pool, m *pool.Manifest) map[string][32]byte {
	t.Helper()
	fsys := p.SnapshotFS(context.Background(), m)
	sums := map[string][32]byte{}
	err := fs.WalkDir(fsys, ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := fsys.Open(rel)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		sums[rel] = [32]byte(h.Sum(nil))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

// Compare reports every file of want that got lacks or holds with other
// content, and every file got has beyond want, except the paths in
// missing, which must be absent from got.
func Compare(t testing.TB, want, got map[string][32]byte, missing ...string) {
	t.Helper()
	skip := map[string]bool{}
	for _, m := range missing {
		skip[m] = true
		if _, ok := got[m]; ok {
			t.Errorf("%s: in the snapshot, want it missing", m)
		}
	}
	n := 0
	for rel, sum := range want {
		if skip[rel] {
			continue
		}
		g, ok := got[rel]
		switch {
		case !ok:
			t.Errorf("%s: missing from the snapshot", rel)
		case g != sum:
			t.Errorf("%s: content differs", rel)
		default:
			n++
		}
	}
	for rel := range got {
		if _, ok := want[rel]; !ok {
			t.Errorf("%s: in the snapshot but not in the source", rel)
		}
	}
	if n == 0 {
		t.Error("no file compared")
	}
}
