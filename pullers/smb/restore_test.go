package smb_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers/pullertest"
	"github.com/cairn-backup/cairn/pullers/smb"
)

// TestRestoreToHost pulls the scenario over SMB, restores it into a new
// directory on the share and checks, on the server's disk, every file's
// digest and mtime.
func TestRestoreToHost(t *testing.T) {
	s := testenv.Samba(t)
	sc := pullertest.Generate(t, s.Dir, pullertest.Options{})
	p := pullertest.NewPool(t)
	src := source(s, "scenario")
	m, _ := pullertest.Pull(t, p, smb.New(), src, nil, nil)
	ctx := context.Background()
	fsys := p.SnapshotFS(ctx, m)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	res, err := smb.Restore(ctx, fsys, ".", src, smb.RestoreOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Dest != "scenario/cairn-restore-20260102T030405Z" {
		t.Fatalf("Dest = %q", res.Dest)
	}
	for _, e := range res.Errors {
		if !strings.HasPrefix(e, pullertest.DeepDir+"/") {
			t.Errorf("restore error %q", pullertest.Short(e))
		}
	}
	dir := filepath.Join(sc.Dir, "cairn-restore-20260102T030405Z")
	checked := 0
	err = fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name == pullertest.DeepDir {
			return fs.SkipDir // past PATH_MAX: errors above
		}
		info, _ := d.Info()
		e := info.Sys().(*pool.Entry)
		local := filepath.Join(dir, filepath.FromSlash(name))
		st, err := os.Lstat(local)
		if err != nil {
			t.Errorf("restored %q: %v", name, err)
			return nil
		}
		if e.Type != pool.TypeFile {
			return nil
		}
		checked++
		f, _ := fsys.Open(name)
		h := sha256.New()
		io.Copy(h, f)
		f.Close()
		data, err := os.ReadFile(local)
		if err != nil {
			t.Errorf("read restored %q: %v", name, err)
			return nil
		}
		if sum := sha256.Sum256(data); !bytes.Equal(sum[:], h.Sum(nil)) {
			t.Errorf("restored %q: digest differs", name)
		}
		if got, want := st.ModTime().UnixNano()/100, e.ModTime/100; got != want {
			t.Errorf("restored %q: mtime %v, want %v", name, st.ModTime().UTC(), time.Unix(0, e.ModTime).UTC())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restored %d files, %d dirs, %d bytes; %d files checked on disk; %d errors", res.Files, res.Dirs, res.Bytes, checked, len(res.Errors))
	if checked < 20 {
		t.Errorf("only %d files checked", checked)
	}
	if _, err := smb.Restore(ctx, fsys, ".", src, smb.RestoreOptions{Now: func() time.Time { return now }}); err == nil {
		t.Error("a second restore into the same new directory succeeded")
	}
}
