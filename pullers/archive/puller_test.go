package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	_ "github.com/cairn-backup/cairn/pullers/local"
)

// TestFetchOverPuller imports an archive that the local puller reads
// from a directory full of other things: only the archive's contents
// make the snapshot; a missing archive, a directory and a hostile
// archive fail clearly.
func TestFetchOverPuller(t *testing.T) {
	dir := t.TempDir()
	ms := goodMembers()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "site.tar.gz"), gz(mkTar(t, ms)), 0o600))
	must(os.WriteFile(filepath.Join(dir, "other.txt"), []byte("not imported"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "evil.tar"), mkTar(t, []member{{name: "../x", typ: tar.TypeReg, data: []byte("x")}}), 0o600))
	for i := range 50 {
		sub := filepath.Join(dir, "sub", fmt.Sprintf("d%d", i))
		must(os.MkdirAll(sub, 0o755))
		must(os.WriteFile(filepath.Join(sub, "f"), []byte("deep"), 0o600))
	}
	pull := func(path string) (*pool.Pool, *pool.Manifest, error) {
		p, w := newWriter(t)
		err := (&Puller{}).Pull(context.Background(), &pullers.Job{Host: "h", Sink: w,
			Source: pullers.Source{Method: Method, Name: "site", Path: path, Options: map[string]string{"fetch": "local"}}})
		if err != nil {
			w.Abort()
			return p, nil, err
		}
		m, err := w.Finish(context.Background())
		must(err)
		return p, m, nil
	}
	p, m, err := pull(filepath.Join(dir, "site.tar.gz"))
	must(err)
	_, data := readAt(t, p, m, "b/big.bin")
	if sum(data) != sum(ms[3].data) {
		t.Fatal("b/big.bin differs")
	}
	if _, err := p.Lookup(context.Background(), m.Root, "other.txt"); !errors.Is(err, pool.ErrNotFound) {
		t.Fatalf("other.txt joined the snapshot: %v", err)
	}
	if m.Files != 6 {
		t.Fatalf("snapshot has %d files, want the archive's 6", m.Files)
	}
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(dir, "missing.tar"), "no such file"},
		{filepath.Join(dir, "sub"), "not an archive file"},
		{filepath.Join(dir, "evil.tar"), "leaves the tree"},
	} {
		if _, _, err := pull(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.path, err, tc.want)
		}
	}
	_, w := newWriter(t)
	defer w.Abort()
	err = (&Puller{}).Pull(context.Background(), &pullers.Job{Sink: w, Source: pullers.Source{Method: Method, Path: "/x.tar"}})
	if !errors.Is(err, pullers.ErrPermanent) || !strings.Contains(err.Error(), "option fetch") {
		t.Fatalf("no fetch option: %v", err)
	}
}
