package ftp

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cairn-backup/cairn/pool"
)

func TestParseListLine(t *testing.T) {
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		line string
		want ListEntry
	}{
		{"-rw-r--r--    1 0        0              13 May 06  2023 hello.txt",
			ListEntry{Name: "hello.txt", Type: pool.TypeFile, Size: 13, Mode: 0o644, HasMode: true,
				ModTime: time.Date(2023, 5, 6, 0, 0, 0, 0, time.UTC), HasUID: true, HasGID: true}},
		{"-rw-r--r--    1 alice    staff        1234 Mar 09 14:15  two  spaces ",
			ListEntry{Name: " two  spaces ", Type: pool.TypeFile, Size: 1234, Mode: 0o644, HasMode: true,
				User: "alice", Group: "staff", ModTime: time.Date(2024, 3, 9, 14, 15, 0, 0, time.UTC)}},
		// A recent-format date in the future is last year's.
		{"drwxr-sr-t   2 u g 4096 Dec 24 10:00 dir",
			ListEntry{Name: "dir", Type: pool.TypeDir, Mode: 0o755 | fs.ModeSetgid | fs.ModeSticky, HasMode: true,
				User: "u", Group: "g", ModTime: time.Date(2023, 12, 24, 10, 0, 0, 0, time.UTC)}},
		{"lrwxrwxrwx 1 u g 9 Jan  1  2020 link -> ../target",
			ListEntry{Name: "link", Type: pool.TypeSymlink, Target: "../target", Mode: 0o777, HasMode: true,
				User: "u", Group: "g", ModTime: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"crw-rw-rw- 1 0 0 1, 3 Jan 1 2020 null",
			ListEntry{Name: "null", Type: pool.TypeCharDev, Rdev: mkdev(1, 3), Mode: 0o666, HasMode: true,
				HasUID: true, HasGID: true, ModTime: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}},
		// No group column, setuid.
		{"-rwsr-xr-x 1 root 42 Feb 29 2020 su",
			ListEntry{Name: "su", Type: pool.TypeFile, Size: 42, Mode: 0o755 | fs.ModeSetuid, HasMode: true,
				User: "root", ModTime: time.Date(2020, 2, 29, 0, 0, 0, 0, time.UTC)}},
		// ACL marker.
		{"-rw-r--r--+ 1 u g 7 Jan 1 2020 acl",
			ListEntry{Name: "acl", Type: pool.TypeFile, Size: 7, Mode: 0o644, HasMode: true,
				User: "u", Group: "g", ModTime: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}},
		// Windows / IIS.
		{"01-16-24  02:15PM       <DIR>          My Folder",
			ListEntry{Name: "My Folder", Type: pool.TypeDir, ModTime: time.Date(2024, 1, 16, 14, 15, 0, 0, time.UTC)}},
		{"12-31-99  12:05AM                 1234 file.txt",
			ListEntry{Name: "file.txt", Type: pool.TypeFile, Size: 1234, ModTime: time.Date(1999, 12, 31, 0, 5, 0, 0, time.UTC)}},
		{"2024-01-16  14:15                 1,234 big.dat",
			ListEntry{Name: "big.dat", Type: pool.TypeFile, Size: 1234, ModTime: time.Date(2024, 1, 16, 14, 15, 0, 0, time.UTC)}},
	} {
		got, err := ParseListLine(c.line, now)
		if err != nil {
			t.Errorf("%q: %v", c.line, err)
			continue
		}
		if got != c.want {
			t.Errorf("%q:\n got %+v\nwant %+v", c.line, got, c.want)
		}
	}
	for _, line := range []string{"total 12", "", "   "} {
		if _, err := ParseListLine(line, now); !errors.Is(err, errSkip) {
			t.Errorf("%q: %v, want skip", line, err)
		}
	}
	for _, line := range []string{
		"garbage", "?rw-r--r-- 1 u g 1 Jan 1 2020 x", "-rw-r--r-- 1 u g -5 Jan 1 2020 x",
		"-rw-r--r-- 1 u g 5 Foo 1 2020 x", "-rw-r--r-- 1 u g 5 Jan 1 2020", "-rw-r--r-- 1 u g 5 Jan 1 25:99 x",
		"02-30-24  02:15PM  1 x", "13-01-24  02:15PM  1 x", "01-01-24  13:15PM  1 x", "01-01-24  02:15PM  -1 x",
		"01-01-24  02:15PM  <DIR>", "-rw-r--r-- 1 u g 5 Jan 1 2020 " + strings.Repeat("x", maxLineLen),
	} {
		if e, err := ParseListLine(line, now); err == nil {
			t.Errorf("%q: parsed as %+v, want an error", line, e)
		}
	}
}

func TestParseMLSDLine(t *testing.T) {
	for _, c := range []struct {
		line string
		want ListEntry
	}{
		{"type=file;size=5;modify=20240102030405.5;UNIX.mode=0644;UNIX.uid=1000;UNIX.gid=100; a b",
			ListEntry{Name: "a b", Type: pool.TypeFile, Size: 5, Precise: true, Mode: 0o644, HasMode: true,
				UID: 1000, GID: 100, HasUID: true, HasGID: true,
				ModTime: time.Date(2024, 1, 2, 3, 4, 5, 500e6, time.UTC)}},
		{"Type=dir;Modify=20240102030405;UNIX.mode=2755; d",
			ListEntry{Name: "d", Type: pool.TypeDir, Precise: true, Mode: 0o755 | fs.ModeSetgid, HasMode: true,
				ModTime: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}},
		{"type=OS.unix=slink:/etc/x;size=6; l",
			ListEntry{Name: "l", Type: pool.TypeSymlink, Target: "/etc/x"}},
	} {
		got, err := ParseMLSDLine(c.line)
		if err != nil {
			t.Errorf("%q: %v", c.line, err)
			continue
		}
		if got != c.want {
			t.Errorf("%q:\n got %+v\nwant %+v", c.line, got, c.want)
		}
	}
	for _, line := range []string{"type=cdir; .", "type=pdir; .."} {
		if _, err := ParseMLSDLine(line); !errors.Is(err, errSkip) {
			t.Errorf("%q: %v, want skip", line, err)
		}
	}
	for _, line := range []string{"type=file;size=x; a", "type=file;size=-1; a", "type=file;", "nofacts",
		"type=weird; a", "type=file;modify=2024; a", "type=file;modify=20240102030405.1234567890; a", "type=file;unix.mode=9; a"} {
		if e, err := ParseMLSDLine(line); err == nil {
			t.Errorf("%q: parsed as %+v, want an error", line, e)
		}
	}
}

// FuzzParseList: no listing line makes the parsers panic, and what they
// accept is sane: a non-empty name within the line, a known type, a
// non-negative size only on files, permission bits only.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{
		"-rw-r--r--    1 0        0              13 May 06  2023 hello.txt",
		"lrwxrwxrwx 1 u g 9 Jan  1  2020 link -> ../target",
		"crw-rw-rw- 1 0 0 1, 3 Jan 1 2020 null",
		"brw-rw---- 1 0 6 8,0 Jan 1 10:00 sda",
		"01-16-24  02:15PM       <DIR>          My Folder",
		"2024-01-16  14:15                 1,234 big.dat",
		"type=file;size=5;modify=20240102030405.5;UNIX.mode=0644; a b",
		"type=OS.unix=slink:/etc/x; l",
		"total 0",
	} {
		f.Add(s)
	}
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, line string) {
		for _, parse := range []func(string) (ListEntry, error){
			func(s string) (ListEntry, error) { return ParseListLine(s, now) },
			ParseMLSDLine,
		} {
			e, err := parse(line)
			if err != nil {
				continue
			}
			if e.Name == "" || !strings.Contains(line, e.Name) {
				t.Fatalf("%q: name %q", line, e.Name)
			}
			if e.Type < pool.TypeFile || e.Type > pool.TypeSocket {
				t.Fatalf("%q: type %d", line, e.Type)
			}
			if e.Size < 0 || (e.Type != pool.TypeFile && e.Size != 0) {
				t.Fatalf("%q: size %d for %s", line, e.Size, e.Type)
			}
			if e.Mode&^(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
				t.Fatalf("%q: mode %v", line, e.Mode)
			}
			if utf8.ValidString(line) && !utf8.ValidString(e.Name) {
				t.Fatalf("%q: name %q cut inside a rune", line, e.Name)
			}
		}
	})
}
