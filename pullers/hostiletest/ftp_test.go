package hostiletest

import (
	"net"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/ftp"
)

// ftpTree is the SSH hostile tree plus what only FTP can play: sizes that
// lie, a file that grows on every read, a cut data connection, a garbage
// listing, a reply without a status code, and a name with NUL.
func ftpTree() Node {
	root := hostileTree()
	f := func(name, data string) Node { return Node{Name: name, Data: []byte(data), Size: -1} }
	root.Kids = append(root.Kids,
		f("nul\x00name", "EVIL nul\n"),
		f("/etc/passwd", "EVIL absolute\n"),
		Node{Name: "lying-long", Data: []byte("0123456789"), Size: 3},
		Node{Name: "lying-short", Data: []byte("abc"), Size: 10},
		Node{Name: "grows", Data: []byte("more+"), Size: -1, Grows: true},
		Node{Name: "dropped", Data: []byte("half of this never arrives"), Size: -1, Drop: true},
		Node{Name: "garbage", Dir: true, Size: -1, Garbage: true},
		Node{Name: "badreply", Dir: true, Size: -1, BadReply: true, Kids: []Node{f("x", "EVIL unreachable\n")}},
	)
	return root
}

// TestHostileFTP pulls the hostile tree from the FTP server (LIST and
// MLSD) and checks what reached the pool and what did not.
func TestHostileFTP(t *testing.T) {
	for _, mlsd := range []bool{false, true} {
		t.Run(map[bool]string{false: "LIST", true: "MLSD"}[mlsd], func(t *testing.T) {
			srv := StartFTP(t, ftpTree(), mlsd)
			w := newWorld(t)
			h := newHeap()
			srv.OnLines = h.sample
			host, port, _ := net.SplitHostPort(srv.Addr)
			src := pullers.Source{Method: ftp.Method, Name: "src", Path: "/src",
				Options: map[string]string{"host": host, "port": port, "user": "u", "tls": "none", "max_dir_entries": "300"},
				Secret:  map[string]string{"password": Password}}
			m, err := w.pull(t, ftp.New(), src)
			if err != nil {
				t.Fatalf("pull: %v", err)
			}
			w.check(t)
			tree := w.tree(t, m)
			w.checkTree(t, tree)
			for _, gone := range []string{"lying-long", "lying-short", "grows", "dropped", "garbage/negative", "badreply/x"} {
				if _, ok := tree[gone]; ok {
					t.Errorf("%s stored", gone)
				}
			}
			huge := 0
			for name := range tree {
				if strings.HasPrefix(name, "zz-huge/") {
					huge++
				}
			}
			if huge != 300 {
				t.Errorf("%d names kept from the endless directory, want the cap, 300", huge)
			}
			for _, c := range []struct{ path, substr string }{
				{".", `hostile or invalid name "../escape"`},
				{".", `hostile or invalid name "a/b"`},
				{".", `hostile or invalid name "/etc/passwd"`},
				{"zz-huge", "more than 300 names; kept the first 300 listed (option max_dir_entries)"},
				{"lying-long", "more than the listed 3 bytes"},
				{"lying-short", "only 3 of the listed 10 bytes"},
				{"grows", "more than the listed"},
				{"garbage", "listing line"},
				{"badreply", "list directory"},
			} {
				if !errorOn(m, c.path, c.substr) {
					t.Errorf("no error %q on %q in %q", c.substr, c.path, firstN(m.Errors, 20))
				}
			}
			// A reset data connection: the cause is the reset (or, if the
			// reset came after the data, the short length).
			if !errorOn(m, "dropped", "connection reset by peer") && !errorOn(m, "dropped", "of the listed 26 bytes") {
				t.Errorf("no error on the dropped transfer: %q", firstN(m.Errors, 20))
			}
			if !mlsd && !errorOn(m, ".", `"nul\x00name"`) {
				t.Errorf("NUL name not refused: %q", firstN(m.Errors, 20))
			}
			if m.Status != pool.StatusPartial {
				t.Errorf("status %s, want partial", m.Status)
			}
			for _, c := range srv.Commands() {
				if strings.Contains(c, "escape") || strings.Contains(c, "/a/b") || strings.Contains(c, "EVIL") || strings.Contains(c, "/etc") {
					t.Errorf("the client sent %q for a hostile name", c)
				}
			}
			if g := h.growth(); g > 32<<20 {
				t.Errorf("heap grew %d MiB during the pull", g>>20)
			}
			t.Logf("%d entries, %d per-file errors, heap +%d KiB over %d samples", len(tree), m.ErrorCount, h.growth()>>10, h.samples)
		})
	}
}

// TestHostileFTPMillions: an endless listing of names that must all be
// refused streams until the listing byte cap (over a million lines) with
// the heap flat: the listing is parsed as it arrives and no
// refused name or its error is kept beyond the first 100.
func TestHostileFTPMillions(t *testing.T) {
	srv := StartFTP(t, Node{Dir: true, Kids: []Node{
		{Name: "ok.txt", Data: []byte("fine\n"), Size: -1},
		{Name: "flood", Dir: true, Endless: true, EndlessHostile: true, Size: -1},
	}}, false)
	w := newWorld(t)
	h := newHeap()
	srv.OnLines = h.sample
	host, port, _ := net.SplitHostPort(srv.Addr)
	// A 42 MiB byte cap is over a million of these lines.
	m, err := w.pull(t, &ftp.Puller{MaxListing: 42 << 20}, pullers.Source{Method: ftp.Method, Name: "src", Path: "/src",
		Options: map[string]string{"host": host, "port": port, "user": "u", "tls": "none"},
		Secret:  map[string]string{"password": Password}})
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	w.check(t)
	tree := w.tree(t, m)
	if e, ok := tree["ok.txt"]; !ok || w.content(t, e) != "fine\n" {
		t.Errorf("ok.txt: %+v", e)
	}
	if len(tree) != 2 || !errorOn(m, "flood", "listing exceeds the size limit") {
		t.Errorf("tree %v, errors %q", keysOf(tree), firstN(m.Errors, 5))
	}
	lines := h.count()
	if lines < 1_000_000 {
		t.Errorf("only %d lines streamed", lines)
	}
	const limit = 32 << 20
	if g := h.growth(); g > limit {
		t.Errorf("heap grew %d MiB while %d hostile names streamed (limit %d MiB)", g>>20, lines, limit>>20)
	}
	t.Logf("%d lines streamed: heap +%d KiB at most (%d samples)", lines, h.growth()>>10, h.samples)
}
