package hostiletest

import (
	"archive/tar"
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/archive"
	_ "github.com/cairn-backup/cairn/pullers/ftp" // the fetchers, by method name
	"github.com/cairn-backup/cairn/pullers/sftp"
)

// tarOf builds a tar of the given headers (regular files carry their
// name's content "data of NAME").
func tarOf(t *testing.T, hs ...tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hs {
		h.ModTime = time.Unix(1700000000, 0)
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		var data []byte
		if h.Typeflag == tar.TypeReg {
			data = []byte("data of " + h.Name)
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestHostileArchiveFetch: the archive method fetching over FTP and SFTP
// from a hostile host. The archive's directory lists hostile names too;
// an archive with members that leave the tree is refused whole, nothing
// committed; a good one with shell-syntax names is imported verbatim.
func TestHostileArchiveFetch(t *testing.T) {
	reg := func(name string) tar.Header { return tar.Header{Typeflag: tar.TypeReg, Name: name} }
	archives := map[string][]byte{
		"good.tar":     tarOf(t, reg("$(touch "+marker+")"), reg("-rf"), tar.Header{Typeflag: tar.TypeDir, Name: "sub/", Mode: 0o755}, reg("sub/x"), tar.Header{Typeflag: tar.TypeSymlink, Name: "sub/up", Linkname: "../-rf"}),
		"dotdot.tar":   tarOf(t, reg("ok"), reg("../escape")),
		"absolute.tar": tarOf(t, reg("/etc/cron.d/evil")),
		"link-out.tar": tarOf(t, tar.Header{Typeflag: tar.TypeSymlink, Name: "passwd", Linkname: "/etc/passwd"}),
		"link-up.tar":  tarOf(t, tar.Header{Typeflag: tar.TypeSymlink, Name: "up", Linkname: "../../.."}),
		"hardlink.tar": tarOf(t, tar.Header{Typeflag: tar.TypeLink, Name: "shadow", Linkname: "/etc/shadow"}),
	}
	root := Node{Dir: true, Kids: []Node{
		{Name: "../escape", Data: []byte("EVIL up\n"), Size: -1},
		{Name: "a/b", Data: []byte("EVIL slash\n"), Size: -1},
		{Name: "$(touch " + marker + ")", Data: []byte("subst\n"), Size: -1},
		{Name: "out", Target: "/etc", Size: -1},
	}}
	for name, data := range archives {
		root.Kids = append(root.Kids, Node{Name: name, Data: data, Size: -1})
	}
	ftpSrv := StartFTP(t, root, false)
	fh, fp, _ := net.SplitHostPort(ftpSrv.Addr)
	sshSrv := Start(t, root)
	sh, sp, _ := net.SplitHostPort(sshSrv.Addr)
	fetchers := map[string]map[string]string{
		"ftp":  {"fetch": "ftp", "host": fh, "port": fp, "user": "u", "tls": "none"},
		"sftp": {"fetch": "sftp", "host": sh, "port": sp, "user": "u", "host_key": sftp.HostKeyString(sshSrv.HostKey)},
	}
	for fetch, opts := range fetchers {
		for name := range archives {
			t.Run(fetch+"/"+name, func(t *testing.T) {
				w := newWorld(t)
				src := pullers.Source{Method: archive.Method, Name: "src", Path: "/src/" + name, Options: opts,
					Secret: map[string]string{"password": Password}}
				m, err := w.pull(t, &archive.Puller{}, src)
				w.check(t)
				if name != "good.tar" {
					if err == nil || !errors.Is(err, archive.ErrRefused) {
						t.Fatalf("pull: %v, want the archive refused", err)
					}
					t.Logf("refused: %v", err)
					return
				}
				if err != nil {
					t.Fatalf("pull: %v", err)
				}
				tree := w.tree(t, m)
				for p, want := range map[string]string{"$(touch " + marker + ")": "data of $(touch " + marker + ")", "-rf": "data of -rf", "sub/x": "data of sub/x"} {
					e, ok := tree[p]
					if !ok || e.Type != pool.TypeFile || w.content(t, e) != want {
						t.Errorf("%s: %+v, want %q", p, e, want)
					}
				}
				if e := tree["sub/up"]; e.Type != pool.TypeSymlink || e.Target != "../-rf" {
					t.Errorf("sub/up: %+v", e)
				}
				if len(tree) != 5 {
					t.Errorf("snapshot holds %d entries: %v", len(tree), keysOf(tree))
				}
			})
		}
	}
	for _, c := range ftpSrv.Commands() {
		if strings.Contains(c, "escape") || strings.Contains(c, "/a/b") {
			t.Errorf("the FTP fetcher sent %q for a hostile name", c)
		}
	}
}

func keysOf(m map[string]pool.Entry) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
