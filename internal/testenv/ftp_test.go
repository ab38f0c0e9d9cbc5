package testenv

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
)

func TestFTP(t *testing.T) {
	g := watchGone(t, "vsftpd")
	done := timed(t, "vsftpd")
	s := FTP(t)
	done()
	g.pid = s.Pid
	defer g.snapshot()

	payload := randomBytes(t, 400<<10)
	if err := os.MkdirAll(filepath.Join(s.AnonDir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.AnonDir, "sub", "blob.bin"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.AnonDir, "top.txt"), []byte("top\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CACertPEM) {
		t.Fatal("CACertPEM does not parse")
	}
	dial := func(tlsOn bool) *ftp.ServerConn {
		t.Helper()
		opts := []ftp.DialOption{ftp.DialWithTimeout(10 * time.Second)}
		if tlsOn {
			opts = append(opts, ftp.DialWithExplicitTLS(&tls.Config{
				RootCAs: pool, ServerName: "127.0.0.1", ClientSessionCache: tls.NewLRUClientSessionCache(8),
			}))
		}
		c, err := ftp.Dial(s.Addr, opts...)
		if err != nil {
			t.Fatalf("ftp dial %s (tls %v): %v", s.Addr, tlsOn, err)
		}
		return c
	}
	retr := func(c *ftp.ServerConn, path string) []byte {
		t.Helper()
		r, err := c.Retr(path)
		if err != nil {
			t.Fatalf("RETR %s: %v", path, err)
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("RETR %s: %v", path, err)
		}
		return b
	}

	for _, tlsOn := range []bool{false, true} {
		// Anonymous: list and retrieve; uploads refused.
		c := dial(tlsOn)
		if err := c.Login("anonymous", "anonymous"); err != nil {
			t.Fatalf("anonymous login (tls %v): %v", tlsOn, err)
		}
		entries, err := c.List("/")
		if err != nil {
			t.Fatalf("LIST (tls %v): %v", tlsOn, err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name)
		}
		sort.Strings(names)
		if !equalStrings(names, []string{"sub", "top.txt"}) {
			t.Fatalf("LIST / (tls %v): %v", tlsOn, names)
		}
		if got := retr(c, "sub/blob.bin"); sha(got) != sha(payload) {
			t.Fatalf("anonymous RETR (tls %v): sha %s want %s", tlsOn, sha(got), sha(payload))
		}
		if err := c.Stor("nope.txt", bytes.NewReader([]byte("x"))); err == nil {
			t.Fatalf("anonymous STOR succeeded (tls %v)", tlsOn)
		}
		c.Quit()

		// Local user: STOR then RETR, and the file lands in UserDir.
		c = dial(tlsOn)
		if err := c.Login(s.User, s.Password); err != nil {
			t.Fatalf("user login (tls %v): %v", tlsOn, err)
		}
		up := randomBytes(t, 123<<10)
		name := "up-plain.bin"
		if tlsOn {
			name = "up-tls.bin"
		}
		if err := c.Stor(name, bytes.NewReader(up)); err != nil {
			t.Fatalf("user STOR (tls %v): %v", tlsOn, err)
		}
		if got := retr(c, name); sha(got) != sha(up) {
			t.Fatalf("user RETR (tls %v): sha mismatch", tlsOn)
		}
		c.Quit()
		onDisk, err := os.ReadFile(filepath.Join(s.UserDir, name))
		if err != nil || sha(onDisk) != sha(up) {
			t.Fatalf("user upload on disk (tls %v): err %v", tlsOn, err)
		}
	}

	// A wrong password is refused.
	c := dial(false)
	if err := c.Login(s.User, s.Password+"x"); err == nil {
		t.Fatalf("wrong password accepted")
	}
	c.Quit()
}
