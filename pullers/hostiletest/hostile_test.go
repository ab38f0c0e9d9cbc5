package hostiletest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/sftp"
	"github.com/cairn-backup/cairn/pullers/tar"
)

const marker = Marker

// hostileTree is the tree every SSH puller is pulled from.
func hostileTree() Node {
	f := func(name, data string) Node { return Node{Name: name, Data: []byte(data), Size: -1} }
	return Node{Dir: true, Kids: []Node{
		f("ok.txt", "fine\n"),
		f("$(touch "+marker+")", "subst\n"),
		f("`touch "+marker+"`", "backticks\n"),
		f("; touch "+marker+" #", "semicolon\n"),
		f("-rf", "dash\n"),
		f("../escape", "EVIL up\n"),
		f("..", "EVIL dotdot\n"),
		f(".", "EVIL dot\n"),
		f("a/b", "EVIL slash\n"),
		{Name: "out", Target: "/etc", Size: -1},
		{Name: "up", Target: "../../../../..", Size: -1},
		{Name: "loop", Dir: true, Size: -1, Kids: []Node{{Name: "self", Target: ".", Size: -1}, {Name: "parent", Target: "..", Size: -1}}},
		{Name: "sub", Dir: true, Size: -1, Kids: []Node{f("deep.txt", "deep\n"), {Name: "back", Target: "../..", Size: -1}}},
		{Name: "zz-huge", Dir: true, Endless: true, Size: -1},
	}}
}

// snapshotTree lists every path of a snapshot with its entry.
func snapshotTree(t *testing.T, p *pool.Pool, m *pool.Manifest) map[string]pool.Entry {
	t.Helper()
	out := map[string]pool.Entry{}
	var walk func(prefix string, d pool.Digest)
	walk = func(prefix string, d pool.Digest) {
		es, err := p.ReadTree(context.Background(), d)
		if err != nil {
			t.Fatalf("read tree %s: %v", prefix, err)
		}
		for _, e := range es {
			out[prefix+e.Name] = e
			if e.Type == pool.TypeDir {
				walk(prefix+e.Name+"/", e.Subtree)
			}
		}
	}
	walk("", m.Root)
	return out
}

// TestHostileSSHHost pulls the hostile tree with every SSH puller and
// checks what reached the pool.
func TestHostileSSHHost(t *testing.T) {
	srv := Start(t, hostileTree())
	host, port, _ := net.SplitHostPort(srv.Addr)
	cwd, _ := os.Getwd()
	os.Remove(filepath.Join(cwd, marker))
	sp := sftp.New()
	sp.MaxListBytes = 1 << 20 // the endless directory stops here
	capped := sftp.New()
	capped.MaxEntries = 300 // or here, as max_dir_entries sets it
	for _, c := range []struct {
		name, method string
		pl           pullers.Puller
		endlessErr   string
	}{
		{"sftp", sftp.Method, sp, "listing longer than"},
		{"sftp-max-entries", sftp.Method, capped, "more than 300 names in one directory"},
		{"tar", "tar", tar.New(), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			src := pullers.Source{Method: c.method, Name: "src", Path: "/src",
				Options: map[string]string{"host": host, "port": port, "user": "u", "host_key": sftp.HostKeyString(srv.HostKey)},
				Secret:  map[string]string{"password": Password}}
			m, err := w.pull(t, c.pl, src)
			if err != nil {
				t.Fatalf("pull: %v", err)
			}
			w.check(t)
			tree := w.tree(t, m)
			w.checkTree(t, tree)
			// Bounded: the endless directory (sftp) stopped at the cap and
			// said so.
			huge := 0
			for name := range tree {
				if strings.HasPrefix(name, "zz-huge/") {
					huge++
				}
			}
			if huge > 20000 {
				t.Errorf("%d names kept from the endless directory", huge)
			}
			if c.endlessErr != "" && (huge == 0 || !errorOn(m, "zz-huge", c.endlessErr)) {
				t.Errorf("endless listing: %d names, errors %q", huge, m.Errors)
			}
			if m.ErrorCount == 0 {
				t.Errorf("no per-file errors for the refused names")
			}
			// Nothing the server sent was run.
			for _, dir := range []string{cwd, t.TempDir(), os.TempDir()} {
				if _, err := os.Stat(filepath.Join(dir, marker)); err == nil {
					t.Fatalf("%s exists in %s: a name from the server was executed", marker, dir)
				}
			}
			t.Logf("%s: %d entries, %d per-file errors, e.g. %q", c.method, len(tree), m.ErrorCount, firstN(m.Errors, 3))
		})
	}
	for _, cmd := range srv.Execs() {
		if strings.Contains(cmd, marker) || strings.Contains(cmd, "escape") {
			t.Errorf("a server-sent name reached a command line: %q", cmd)
		}
	}
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
