package rsync_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pullers/pullertest"
	"github.com/cairn-backup/cairn/pullers/rsync"
)

// TestRestoreSSH pulls a tree, restores it over SSH into a new directory
// and compares the result on the server's disk.
func TestRestoreSSH(t *testing.T) {
	testenv.Need(t, "rsync")
	s := testenv.SSHD(t)
	src := filepath.Join(s.Dir, "src")
	mt := time.Date(2023, 3, 4, 5, 6, 7, 0, time.UTC)
	big := bytes.Repeat([]byte("0123456789abcdef"), 300000)
	files := map[string][]byte{"a": []byte("hello\n"), "d/b": big, "d/e/empty": nil, "sp ace": []byte("x")}
	for f, data := range files {
		p := filepath.Join(src, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o640); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, mt, mt)
	}
	os.Chmod(filepath.Join(src, "a"), 0o755|os.ModeSetuid)
	if err := os.Symlink("../a", filepath.Join(src, "d/link")); err != nil {
		t.Fatal(err)
	}
	p := pullertest.NewPool(t)
	pl := rsync.New()
	m, err := pullOnce(t, p, pl, sshSource(t, s, src), nil)
	if err != nil || m.ErrorCount != 0 {
		t.Fatalf("pull: %v %v", err, m)
	}
	ctx := context.Background()
	now := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	res, err := pl.Restore(ctx, p.SnapshotFS(ctx, m), "d", sshSource(t, s, src), rsync.RestoreOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(src, "cairn-restore-20260102T030405Z")
	t.Logf("%+v", res)
	if res.Dest != want || len(res.Errors) != 0 || res.Files != 2 { // b and e/empty
		t.Fatalf("result %+v, want dest %s", res, want)
	}
	got, err := os.ReadFile(filepath.Join(want, "b"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("restored b: %d bytes, %v", len(got), err)
	}
	st, err := os.Stat(filepath.Join(want, "b"))
	if err != nil || !st.ModTime().Equal(mt) || st.Mode().Perm() != 0o640 {
		t.Fatalf("restored b: %v %v %v", st.ModTime(), st.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(want, "link")); err != nil || l != "../a" {
		t.Fatalf("restored link: %q %v", l, err)
	}
	if st, err := os.Stat(filepath.Join(want, "e/empty")); err != nil || st.Size() != 0 {
		t.Fatalf("restored empty: %v", err)
	}

	// The whole snapshot into an explicit destination.
	dest := filepath.Join(s.Dir, "full")
	_, err = pl.Restore(ctx, p.SnapshotFS(ctx, m), ".", sshSource(t, s, src), rsync.RestoreOptions{Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	for f, data := range files {
		got, err := os.ReadFile(filepath.Join(dest, f))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes %v", f, len(got), err)
		}
	}
	if st, err := fs.Stat(p.SnapshotFS(ctx, m), "a"); err != nil || st.Mode()&fs.ModeSetuid == 0 {
		t.Errorf("snapshot: setuid lost: %v %v", st.Mode(), err)
	}
	if st, err := os.Stat(filepath.Join(dest, "a")); err != nil || st.Mode()&os.ModeSetuid == 0 {
		t.Errorf("setuid lost: %v %v", st.Mode(), err)
	}
}
