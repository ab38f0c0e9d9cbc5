package corpus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func tiny(seed uint64) Config {
	c := Full(seed)
	c.SmallFiles = 400
	c.LargeFiles = 2
	c.LargeSize = 2 << 20
	c.FilesPerDir = 5
	return c
}

// treeDigest hashes every path, type, size, mtime and content under root.
func treeDigest(t *testing.T, root string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(h, "%s %v %d %d\n", rel, info.Mode(), info.Size(), info.ModTime().UnixNano())
		if d.Type().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func generate(t *testing.T, c Config) (string, *Plan) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "corpus")
	p := NewPlan(c)
	if err := Generate(context.Background(), dir, p); err != nil {
		t.Fatal(err)
	}
	return dir, p
}

func TestGenerateDeterministic(t *testing.T) {
	a, p := generate(t, tiny(1))
	b, _ := generate(t, tiny(1))
	c, _ := generate(t, tiny(2))
	da, db, dc := treeDigest(t, a), treeDigest(t, b), treeDigest(t, c)
	if da != db {
		t.Fatalf("same seed, different trees: %s vs %s", da, db)
	}
	if da == dc {
		t.Fatalf("different seeds, same tree %s", da)
	}
	st := p.Stats()
	if st.Files != 402 || st.LargeFiles != 2 {
		t.Fatalf("stats = %+v", st)
	}
	var n int
	var total int64
	filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if d.Type().IsRegular() {
			info, _ := d.Info()
			n++
			total += info.Size()
		}
		return nil
	})
	if n != st.Files || total != st.Bytes {
		t.Fatalf("tree has %d files, %d bytes; plan says %d, %d", n, total, st.Files, st.Bytes)
	}
	if st.SmallMin < 100 || st.SmallMax > 64<<10 {
		t.Fatalf("small sizes out of range: %+v", st)
	}
	// Nested: some directory at depth ≥ 3.
	deep := false
	for _, d := range p.Dirs {
		if bytes.Count([]byte(d), []byte("/")) >= 2 {
			deep = true
		}
	}
	if !deep {
		t.Fatal("no nested directories")
	}
}

func TestPlanShape(t *testing.T) {
	for _, tc := range []struct {
		name           string
		c              Config
		minGiB, maxGiB float64
	}{
		{"full", Full(1), 1.7, 2.4},
		{"quick", Quick(1), 0.15, 0.25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := NewPlan(tc.c).Stats()
			gib := float64(st.Bytes) / (1 << 30)
			if gib < tc.minGiB || gib > tc.maxGiB {
				t.Errorf("size %.2f GiB, want %.2f–%.2f", gib, tc.minGiB, tc.maxGiB)
			}
			frac := float64(st.CompressibleBytes) / float64(st.Bytes)
			if frac < 0.4 || frac > 0.6 {
				t.Errorf("compressible fraction %.2f, want about half", frac)
			}
		})
	}
}

func TestTextCompressesRandomDoesNot(t *testing.T) {
	p := NewPlan(tiny(7))
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []Kind{Text, Log, JSON, Random} {
		buf := make([]byte, 4<<20)
		io.ReadFull(p.stream(k, 3, 0), buf)
		ratio := float64(len(buf)) / float64(len(enc.EncodeAll(buf, nil)))
		t.Logf("%v: zstd ratio %.2f", k, ratio)
		lo, hi := 2.5, 6.0
		if k == Random {
			lo, hi = 0.9, 1.01
		}
		if ratio < lo || ratio > hi {
			t.Errorf("%v: zstd ratio %.2f, want %.1f–%.1f", k, ratio, lo, hi)
		}
	}
}

func TestMutateAndRevert(t *testing.T) {
	ctx := context.Background()
	a, p := generate(t, tiny(3))
	b, _ := generate(t, tiny(3))
	orig := treeDigest(t, a)
	cha, err := Mutate(ctx, a, 9)
	if err != nil {
		t.Fatal(err)
	}
	chb, err := Mutate(ctx, b, 9)
	if err != nil {
		t.Fatal(err)
	}
	ma := treeDigest(t, a)
	if ma == orig {
		t.Fatal("Mutate changed nothing")
	}
	if mb := treeDigest(t, b); ma != mb {
		t.Fatal("same tree and seed mutated differently")
	}
	if fmt.Sprint(cha) != fmt.Sprint(chb) {
		t.Fatal("change lists differ")
	}
	// 402 files: 2% ≈ 8 changed (including ≥1 of the 2 large), 1% ≈ 4 deleted and added.
	if n := len(cha.Rewritten) + len(cha.Patched); n != 8 {
		t.Errorf("changed %d files, want 8", n)
	}
	if len(cha.Patched) < 1 {
		t.Error("no large file patched in place")
	}
	if len(cha.Deleted) != 4 || len(cha.Added) != 4 {
		t.Errorf("deleted %d, added %d, want 4 and 4", len(cha.Deleted), len(cha.Added))
	}
	for _, rel := range cha.Patched {
		info, err := os.Stat(filepath.Join(a, rel))
		if err != nil || info.Size() != 2<<20 {
			t.Errorf("patched %s changed size: %v %v", rel, info, err)
		}
	}
	for _, rel := range cha.Deleted {
		if _, err := os.Stat(filepath.Join(a, rel)); !os.IsNotExist(err) {
			t.Errorf("%s not deleted", rel)
		}
	}
	if err := Revert(ctx, a, p, cha); err != nil {
		t.Fatal(err)
	}
	if got := treeDigest(t, a); got != orig {
		t.Fatal("Revert did not restore the original tree")
	}
}

func TestStamp(t *testing.T) {
	stamp := filepath.Join(t.TempDir(), "stamp")
	p1, p2 := NewPlan(tiny(1)), NewPlan(tiny(2))
	if err := CheckStamp(stamp, p1); err != ErrStale {
		t.Fatalf("missing stamp: %v", err)
	}
	if err := WriteStamp(stamp, p1); err != nil {
		t.Fatal(err)
	}
	if err := CheckStamp(stamp, p1); err != nil {
		t.Fatal(err)
	}
	if err := CheckStamp(stamp, p2); err != ErrStale {
		t.Fatalf("other seed: %v", err)
	}
}
