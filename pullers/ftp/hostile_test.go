package ftp

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// TestHostileServer pulls from a scripted server that lists "..",
// absolute paths, names with "/", duplicates, garbage lines, an endless
// listing, a symlink out of the tree and files whose sizes lie. Only the
// well-formed entries are stored, each bad one is a clear per-file error,
// and the pull ends.
func TestHostileServer(t *testing.T) {
	for _, mlsd := range []bool{false, true} {
		t.Run(map[bool]string{false: "LIST", true: "MLSD"}[mlsd], func(t *testing.T) {
			s := newFakeServer(t)
			s.mlsd = mlsd
			if mlsd {
				s.lists["/"] = strings.Join([]string{
					"type=cdir;modify=20240101000000; .",
					"type=pdir;modify=20240101000000; ..",
					"type=dir;modify=20240101000000; ..",
					"type=file;size=5;modify=20240102030405.123; good.txt",
					"type=file;size=5;modify=20240102030405; ../../escape",
					"type=file;size=5;modify=20240102030405; /etc/shadow",
					"type=file;size=5;modify=20240102030405; a/b",
					"type=file;size=3;modify=20240102030405; lying-long",
					"type=file;size=10;modify=20240102030405; lying-short",
					"type=OS.unix=slink:/etc/passwd;modify=20240102030405; evil-link",
					"type=file;size=5;modify=20240102030405; dup",
					"type=file;size=6;modify=20240102030405; dup",
					"type=dir;modify=20240101000000; sub",
					"type=dir;modify=20240101000000; endless",
					"garbage",
					"",
				}, "\r\n")
				s.lists["/sub"] = "type=file;size=2;modify=20240102030405; x\r\n"
			} else {
				s.lists["/"] = strings.Join([]string{
					"total 42",
					"drwxr-xr-x 2 u g 4096 Jan 01 2024 .",
					"drwxr-xr-x 2 u g 4096 Jan 01 2024 ..",
					"-rw-r--r-- 1 u g 5 Jan 02 2024 good.txt",
					"-rw-r--r-- 1 u g 5 Jan 02 2024 ../../escape",
					"-rw-r--r-- 1 u g 5 Jan 02 2024 /etc/shadow",
					"-rw-r--r-- 1 u g 5 Jan 02 2024 a/b",
					"-rw-r--r-- 1 u g 3 Jan 02 2024 lying-long",
					"-rw-r--r-- 1 u g 10 Jan 02 2024 lying-short",
					"lrwxrwxrwx 1 u g 11 Jan 02 2024 evil-link -> /etc/passwd",
					"-rw-r--r-- 1 u g 5 Jan 02 2024 dup",
					"-rw-r--r-- 1 u g 6 Jan 02 2024 dup",
					"drwxr-xr-x 2 u g 4096 Jan 01 2024 sub",
					"drwxr-xr-x 2 u g 4096 Jan 01 2024 endless",
					"garbage line here",
					"",
				}, "\r\n")
				s.lists["/sub"] = "-rw-r--r-- 1 u g 2 Jan 02 2024 x\r\n"
				s.mdtm["/good.txt"] = "20240102030405"
			}
			s.endless["/endless"] = true
			s.files["/good.txt"] = []byte("hello")
			s.files["/lying-long"] = []byte("0123456789")
			s.files["/lying-short"] = []byte("abc")
			s.files["/dup"] = []byte("first")
			s.files["/sub/x"] = []byte("xy")
			for _, bad := range []string{"/../../escape", "/etc/shadow", "/a/b", "../../escape"} {
				s.files[bad] = []byte("EVIL!")
			}

			p := newPool(t)
			pl := &Puller{MaxListing: 64 << 10}
			m, _, _, err := pull(t, p, pl, pullers.Source{Method: Method, Path: "/",
				Options: map[string]string{"host": "127.0.0.1", "port": portOf(s.addr()), "tls": "none"}}, nil)
			must(t, err)
			got := treeOf(t, p, m)
			want := map[string]string{
				"good.txt":  "hello",
				"evil-link": "-> /etc/passwd",
				"dup":       "first",
				"sub":       "<dir>",
				"sub/x":     "xy",
				"endless":   "<dir>",
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("tree = %q\nwant   %q", got, want)
			}
			if m.Status != pool.StatusPartial {
				t.Errorf("status %s, want partial", m.Status)
			}
			for _, c := range []struct{ path, substr string }{
				{".", `hostile or invalid name "../../escape"`},
				{".", `hostile or invalid name "/etc/shadow"`},
				{".", `hostile or invalid name "a/b"`},
				{".", `listed "dup" twice`},
				{".", `listing line "garbage`},
				{"lying-long", "more than the listed 3 bytes"},
				{"lying-short", "only 3 of the listed 10 bytes"},
				{"endless", "listing exceeds the size limit"},
			} {
				if !errorsContain(m, c.path, c.substr) {
					t.Errorf("no error %q on %q in %q", c.substr, c.path, m.Errors)
				}
			}
			for _, c := range s.commands() {
				if strings.HasPrefix(c, "RETR") && strings.Contains(c, "EVIL") || strings.Contains(c, "escape") || strings.Contains(c, "shadow") {
					t.Errorf("client sent %q for a hostile name", c)
				}
			}
			e, err := p.Lookup(context.Background(), m.Root, "good.txt")
			must(t, err)
			wantT := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
			if mlsd {
				wantT = wantT.Add(123 * time.Millisecond)
			}
			if e.ModTime != wantT.UnixNano() {
				t.Errorf("good.txt mtime %v, want %v", time.Unix(0, e.ModTime).UTC(), wantT)
			}
		})
	}
}

// TestDeepTree: a server whose every directory contains itself again is
// cut at MaxDepth.
func TestDeepTree(t *testing.T) {
	s := newFakeServer(t)
	dir := "/"
	for i := 0; i < 20; i++ {
		s.lists[dir] = "drwxr-xr-x 2 u g 4096 Jan 01 2024 d\r\n"
		if dir == "/" {
			dir = "/d"
		} else {
			dir += "/d"
		}
	}
	p := newPool(t)
	m, _, _, err := pull(t, p, &Puller{MaxDepth: 5}, pullers.Source{Path: "/",
		Options: map[string]string{"host": "127.0.0.1", "port": portOf(s.addr()), "tls": "none"}}, nil)
	must(t, err)
	got := treeOf(t, p, m)
	if len(got) != 5 || got["d/d/d/d/d"] != "<dir>" {
		t.Errorf("tree %q", keys(got))
	}
	if !errorsContain(m, "d/d/d/d/d/d", "deeper than 5 levels") {
		t.Errorf("errors %q", m.Errors)
	}
}

// TestCancel: a cancelled context stops a pull that is stuck in a
// listing that never ends.
func TestCancel(t *testing.T) {
	s := newFakeServer(t)
	s.stall["/"] = true
	p := newPool(t)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := p.NewWriter(context.Background(), pool.SnapshotMeta{Host: "h", Source: "s"})
	must(t, err)
	defer w.Abort()
	done := make(chan error, 1)
	go func() {
		done <- New().Pull(ctx, &pullers.Job{Host: "x", Sink: w, Source: pullers.Source{Path: "/",
			Options: map[string]string{"host": "127.0.0.1", "port": portOf(s.addr()), "tls": "none"}}})
	}()
	// Wait until the listing has started.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if cs := s.commands(); len(cs) > 0 && strings.HasPrefix(cs[len(cs)-1], "LIST") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no LIST seen")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Pull after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Pull did not return after cancel")
	}
}

// TestControlFlood: an endless reply on the control connection is cut at
// the reply cap and fails the login, with bounded memory.
func TestControlFlood(t *testing.T) {
	s := newFakeServer(t)
	s.floodFeat = true
	p := newPool(t)
	_, _, _, err := pull(t, p, New(), pullers.Source{Path: "/",
		Options: map[string]string{"host": "127.0.0.1", "port": portOf(s.addr()), "tls": "none"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "reply too long") {
		t.Fatalf("flooded FEAT: %v", err)
	}
}
