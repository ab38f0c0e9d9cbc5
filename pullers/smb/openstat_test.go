package smb

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hirochachacha/go-smb2"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pullers"
)

// TestOpenStat: the metadata taken from the CREATE response is there
// (so fetches need no QUERY_INFO with this go-smb2) and says what
// QUERY_INFO says of the same handle.
func TestOpenStat(t *testing.T) {
	s := testenv.Samba(t)
	p := filepath.Join(s.Dir, "f")
	if err := os.WriteFile(p, []byte("twelve bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2021, 3, 4, 5, 6, 7, 123456700, time.UTC)
	if err := os.Chtimes(p, mt, mt); err != nil {
		t.Fatal(err)
	}
	tg, err := parseTarget(pullers.Source{Options: map[string]string{"host": s.Host, "port": strconv.Itoa(s.Port),
		"user": s.User, "share": s.Share}, Secret: map[string]string{"password": s.Password}})
	if err != nil {
		t.Fatal(err)
	}
	cn, err := New().dial(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	f, err := cn.share.Open("f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := openStat(f)
	if got == nil {
		t.Fatal("openStat: no metadata from the CREATE response (go-smb2 changed?); every fetch now costs a QUERY_INFO")
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	want := fi.(*smb2.FileStat)
	if got.Size() != 12 || got.Size() != want.Size() || !got.ModTime().Equal(mt) || !got.ModTime().Equal(want.ModTime()) ||
		got.FileAttributes != want.FileAttributes {
		t.Errorf("openStat %d bytes, %v, attrs %#x; QUERY_INFO %d bytes, %v, attrs %#x",
			got.Size(), got.ModTime(), got.FileAttributes, want.Size(), want.ModTime(), want.FileAttributes)
	}
}
