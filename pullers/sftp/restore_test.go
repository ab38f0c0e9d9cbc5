package sftp_test

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
	"github.com/cairn-backup/cairn/pullers/sftp"
)

// checkRestored compares every entry of the snapshot subtree with what
// the server wrote under dir (read on the server's disk: the server is
// this machine): content digest, mode, mtime, symlink target. Paths
// under skip are not checked (they may be in errs).
func checkRestored(t *testing.T, fsys fs.FS, subtree, dir string, skip string) int {
	t.Helper()
	n := 0
	err := fs.WalkDir(fsys, subtree, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(name, subtree), "/")
		if skip != "" && (rel == skip || strings.HasPrefix(rel, skip+"/")) {
			return fs.SkipDir
		}
		local := filepath.Join(dir, filepath.FromSlash(rel))
		info, _ := d.Info()
		e := info.Sys().(*pool.Entry)
		st, err := os.Lstat(local)
		if err != nil {
			t.Errorf("restored %q: %v", rel, err)
			return nil
		}
		n++
		switch e.Type {
		case pool.TypeSymlink:
			got, err := os.Readlink(local)
			if err != nil || got != e.Target {
				t.Errorf("restored link %q -> %q (%v), want %q", rel, got, err, e.Target)
			}
			return nil
		case pool.TypeFile:
			f, err := fsys.Open(name)
			if err != nil {
				t.Fatal(err)
			}
			h1 := sha256.New()
			io.Copy(h1, f)
			f.Close()
			data, err := os.ReadFile(local)
			if err != nil {
				t.Errorf("read restored %q: %v", rel, err)
				return nil
			}
			h2 := sha256.Sum256(data)
			if !bytes.Equal(h1.Sum(nil), h2[:]) {
				t.Errorf("restored %q: digest differs", rel)
			}
		}
		if rel != "" {
			if got, want := st.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), e.Mode; got != want {
				t.Errorf("restored %q: mode %v, want %v", rel, got, want)
			}
			if got, want := st.ModTime().Unix(), time.Unix(0, e.ModTime).Unix(); got != want {
				t.Errorf("restored %q: mtime %d, want %d", rel, got, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRestoreToHost(t *testing.T) {
	s := testenv.SSHD(t)
	sc := pullertest.Generate(t, s.Dir, pullertest.Options{})
	p := pullertest.NewPool(t)
	src := keySource(t, s, sc.Dir)
	m, _ := pullertest.Pull(t, p, sftp.New(), src, nil, nil)
	ctx := context.Background()
	fsys := p.SnapshotFS(ctx, m)

	// The whole snapshot into a new directory next to the source.
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	res, err := sftp.Restore(ctx, fsys, ".", src, sftp.RestoreOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(sc.Dir, "cairn-restore-20260102T030405Z")
	if res.Dest != want {
		t.Fatalf("Dest = %q, want %q", res.Dest, want)
	}
	for _, e := range res.Errors {
		if !strings.HasPrefix(e, pullertest.DeepDir+"/") {
			t.Errorf("restore error %q", pullertest.Short(e))
		}
	}
	n := checkRestored(t, fsys, ".", want, pullertest.DeepDir)
	t.Logf("restored %d files, %d dirs, %d links, %d bytes; %d entries checked; %d errors", res.Files, res.Dirs, res.Symlinks, res.Bytes, n, len(res.Errors))
	if n < 40 || res.Files < 25 {
		t.Errorf("only %d entries restored and checked", n)
	}
	// The same name again: refused, nothing overwritten.
	if _, err := sftp.Restore(ctx, fsys, ".", src, sftp.RestoreOptions{Now: func() time.Time { return now }}); err == nil {
		t.Error("a second restore into the same new directory succeeded")
	}

	// One file into a given directory.
	dest := filepath.Join(s.Dir, "one")
	res, err = sftp.Restore(ctx, fsys, "data/small", src, sftp.RestoreOptions{Dest: dest})
	if err != nil || len(res.Errors) > 0 || res.Files != 1 {
		t.Fatalf("restore one file: %+v %v", res, err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "small")); err != nil || string(b) != "small file\n" {
		t.Errorf("one file: %q %v", b, err)
	}

	// In place, over a symlink that points out: the link is replaced,
	// its target untouched.
	inplace := filepath.Join(s.Dir, "inplace")
	outside := filepath.Join(s.Dir, "outside-target")
	if err := os.WriteFile(outside, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(inplace, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(inplace, "small")); err != nil {
		t.Fatal(err)
	}
	res, err = sftp.Restore(ctx, fsys, "data", src, sftp.RestoreOptions{Dest: inplace, InPlace: true})
	if err != nil || len(res.Errors) > 0 {
		t.Fatalf("restore in place: %+v %v", res, err)
	}
	if b, _ := os.ReadFile(outside); string(b) != "keep me" {
		t.Errorf("the restore wrote through a symlink: outside target now %q", b)
	}
	checkRestored(t, fsys, "data", inplace, "")
}
