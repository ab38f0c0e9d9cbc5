package pool

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVerifyContent(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	src := t.TempDir()
	genTree(t, src, 21, 10, 5<<20)
	m := backupDir(t, ctx, p, src, "h", "s")
	for _, path := range []string{"big0.bin", "d01/e1/f0001.txt"} {
		e := mustLookup(t, p, m.Root, path)
		data, err := os.ReadFile(filepath.Join(src, filepath.FromSlash(path)))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.VerifyContent(ctx, &e, bytes.NewReader(data)); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		bad := bytes.Clone(data)
		bad[len(bad)-10] ^= 1
		for name, r := range map[string]io.Reader{
			"altered": bytes.NewReader(bad),
			"short":   bytes.NewReader(data[:len(data)-1]),
			"long":    io.MultiReader(bytes.NewReader(data), strings.NewReader("x")),
		} {
			if err := p.VerifyContent(ctx, &e, r); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s %s: %v, want ErrCorrupt", path, name, err)
			}
		}
	}
	// An empty file has nothing to compare but its size.
	if err := p.VerifyContent(ctx, &Entry{Name: "e", Type: TypeFile}, strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	if err := p.VerifyContent(ctx, &Entry{Name: "d", Type: TypeDir}, strings.NewReader("")); err == nil {
		t.Fatal("a directory verified as a file")
	}
}

func TestCheckSelect(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	src := t.TempDir()
	genTree(t, src, 22, 30, 3<<20)
	backupDir(t, ctx, p, src, "h", "s")
	none, err := p.Check(ctx, CheckOptions{ReadData: true, Select: func(Digest) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	all, err := p.Check(ctx, CheckOptions{ReadData: true, Select: func(Digest) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	// Trees and chunk lists are read by the structure walk in any case.
	if all.ReadObjects != all.Objects || none.ReadObjects >= all.ReadObjects || none.ReadObjects == 0 {
		t.Fatalf("select none re-read %d, all %d of %d objects", none.ReadObjects, all.ReadObjects, all.Objects)
	}
	half, err := p.Check(ctx, CheckOptions{ReadData: true, Select: func(d Digest) bool { return d[0] < 128 }})
	if err != nil || half.ReadObjects <= none.ReadObjects || half.ReadObjects >= all.ReadObjects {
		t.Fatalf("select half: %d (none %d, all %d), %v", half.ReadObjects, none.ReadObjects, all.ReadObjects, err)
	}
}
