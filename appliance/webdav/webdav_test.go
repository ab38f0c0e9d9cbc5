package webdav

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

const (
	snap1 = "2024-01-02T03:04:05Z"
	snap2 = "2024-02-03T04:05:06Z"
)

var mtime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func mkfile(data []byte, perm fs.FileMode) *fstest.MapFile {
	e := &pool.Entry{Type: pool.TypeFile, Mode: perm, Size: int64(len(data)), ModTime: mtime.UnixNano()}
	if len(data) > 0 {
		e.Content = pool.Digest(sha256.Sum256(data)) // stands in for the pool's digest
	}
	return &fstest.MapFile{Data: data, Mode: perm, ModTime: mtime, Sys: e}
}

func symlink(target string) *fstest.MapFile {
	e := &pool.Entry{Type: pool.TypeSymlink, Mode: 0o777, Target: target, ModTime: mtime.UnixNano()}
	return &fstest.MapFile{Data: []byte(target), Mode: fs.ModeSymlink | 0o777, ModTime: mtime, Sys: e}
}

func big(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/253)
	}
	return b
}

func testTree() fstest.MapFS {
	m := fstest.MapFS{}
	for _, h := range []string{"web1", "db1"} {
		for _, s := range []string{snap1, snap2} {
			r := h + "/" + s + "/root/"
			m[r+"etc/hostname"] = mkfile([]byte(h+" "+s+"\n"), 0o644)
			m[r+"etc/localtime"] = symlink("/usr/share/zoneinfo/UTC")
			m[r+"home/alice/notes.txt"] = mkfile([]byte("notes of "+h+"\n"), 0o600)
			m[r+"home/alice/rel"] = symlink("notes.txt")
			m[r+"home/alice/docs"] = symlink("../../etc")
			m[r+"home/alice/other-host"] = symlink("../../../../../db1/" + snap1)
			m[r+"home/alice/loop"] = symlink("loop")
			m[r+"home/alice/dangling"] = symlink("nothing-here")
			m[r+"home/alice/empty"] = mkfile(nil, 0o644)
			m[r+"home/alice/My Doc ü.txt"] = mkfile([]byte("unicode name\n"), 0o644)
			m[r+"var/big.bin"] = mkfile(big(3<<20+17), 0o644)
		}
		m[h+"/latest"] = symlink(snap2)
	}
	return m
}

func newServer(t *testing.T, fsys fs.FS, prefix string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(NewHandler(fsys, prefix))
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, u string, hdr map[string]string, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

func TestOptionsAndWriteMethods(t *testing.T) {
	m := testTree()
	srv := newServer(t, m, "/dav")
	resp, _ := do(t, "OPTIONS", srv.URL+"/dav/web1/", nil, "")
	if resp.StatusCode != 200 || resp.Header.Get("Allow") != "OPTIONS, GET, HEAD, PROPFIND" || resp.Header.Get("DAV") != "1" {
		t.Errorf("OPTIONS: %d Allow=%q DAV=%q", resp.StatusCode, resp.Header.Get("Allow"), resp.Header.Get("DAV"))
	}
	target := srv.URL + "/dav/web1/" + snap1 + "/root/etc/hostname"
	for _, method := range []string{"PUT", "DELETE", "MKCOL", "COPY", "MOVE", "PROPPATCH", "LOCK", "UNLOCK", "POST", "PATCH", "TRACE", "SEARCH"} {
		for _, u := range []string{target, srv.URL + "/dav/web1/", srv.URL + "/dav/web1/new-file"} {
			resp, _ := do(t, method, u, map[string]string{"Destination": srv.URL + "/dav/web1/x", "Overwrite": "T"}, "data")
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != Allow {
				t.Errorf("%s %s: %d Allow=%q", method, u, resp.StatusCode, resp.Header.Get("Allow"))
			}
		}
	}
	if got := string(m["web1/"+snap1+"/root/etc/hostname"].Data); got != "web1 "+snap1+"\n" {
		t.Errorf("content changed: %q", got)
	}
}

func TestFileSystemRefusesWrites(t *testing.T) {
	ctx := context.Background()
	s := NewFileSystem(testTree())
	name := "/web1/" + snap1 + "/root/etc/hostname"
	for op, err := range map[string]error{
		"mkdir":  s.Mkdir(ctx, "/web1/x", 0o755),
		"remove": s.RemoveAll(ctx, name),
		"rename": s.Rename(ctx, name, "/web1/y"),
		"open w": func() error { _, err := s.OpenFile(ctx, name, os.O_WRONLY, 0); return err }(),
		"create": func() error { _, err := s.OpenFile(ctx, "/web1/new", os.O_CREATE|os.O_RDONLY, 0o644); return err }(),
		"trunc":  func() error { _, err := s.OpenFile(ctx, name, os.O_TRUNC, 0); return err }(),
		"write": func() error {
			f, err := s.OpenFile(ctx, name, os.O_RDONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("x"))
			return err
		}(),
	} {
		if !errors.Is(err, fs.ErrPermission) {
			t.Errorf("%s: %v, want ErrPermission", op, err)
		}
	}
}

type multistatus struct {
	Responses []struct {
		Href  string `xml:"href"`
		Props []struct {
			Status string `xml:"status"`
			Prop   struct {
				Length   string    `xml:"getcontentlength"`
				Modified string    `xml:"getlastmodified"`
				ETag     string    `xml:"getetag"`
				Type     string    `xml:"getcontenttype"`
				Res      *struct{} `xml:"resourcetype>collection"`
			} `xml:"prop"`
		} `xml:"propstat"`
	} `xml:"response"`
}

type propEntry struct {
	length   string
	modified string
	etag     string
	dir      bool
}

func propfind(t *testing.T, u, depth string) (int, map[string]propEntry) {
	t.Helper()
	hdr := map[string]string{"Content-Type": "application/xml"}
	if depth != "" {
		hdr["Depth"] = depth
	}
	resp, body := do(t, "PROPFIND", u, hdr, `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`)
	if resp.StatusCode != http.StatusMultiStatus {
		return resp.StatusCode, nil
	}
	var ms multistatus
	if err := xml.Unmarshal(body, &ms); err != nil {
		t.Fatalf("PROPFIND %s: %v\n%s", u, err, body)
	}
	out := map[string]propEntry{}
	for _, r := range ms.Responses {
		href, err := url.PathUnescape(r.Href)
		if err != nil {
			t.Fatal(err)
		}
		var e propEntry
		for _, ps := range r.Props {
			if !strings.Contains(ps.Status, "200") {
				continue
			}
			e = propEntry{ps.Prop.Length, ps.Prop.Modified, ps.Prop.ETag, ps.Prop.Res != nil}
		}
		out[href] = e
	}
	return resp.StatusCode, out
}

func TestPropfind(t *testing.T) {
	m := testTree()
	srv := newServer(t, m, "/dav")
	base := "/dav/web1/" + snap1 + "/root/home/alice/"

	t.Run("depth 1 matches the tree", func(t *testing.T) {
		code, got := propfind(t, srv.URL+base, "1")
		if code != http.StatusMultiStatus {
			t.Fatalf("status %d", code)
		}
		want := []string{base, base + "My Doc ü.txt", base + "docs/", base + "empty", base + "notes.txt", base + "rel"}
		if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, want) {
			t.Errorf("hrefs %q\nwant %q", keys, want)
		}
		notes := m["web1/"+snap1+"/root/home/alice/notes.txt"]
		if e := got[base+"notes.txt"]; e.length != fmt.Sprint(len(notes.Data)) || e.dir ||
			e.modified != mtime.Format(http.TimeFormat) || e.etag != `"`+sum(notes.Data)+`"` {
			t.Errorf("notes.txt props %+v", e)
		}
		// A symlink shows as its target: rel is notes.txt, docs is etc.
		if e := got[base+"rel"]; e.length != fmt.Sprint(len(notes.Data)) || e.dir {
			t.Errorf("rel props %+v", e)
		}
		if e := got[base+"docs/"]; !e.dir {
			t.Errorf("docs props %+v", e)
		}
		if e := got[base+"empty"]; e.length != "0" || e.etag != `"empty"` {
			t.Errorf("empty props %+v", e)
		}
	})

	t.Run("host level shows latest as a directory", func(t *testing.T) {
		_, got := propfind(t, srv.URL+"/dav/web1/", "1")
		want := []string{"/dav/web1/", "/dav/web1/" + snap1 + "/", "/dav/web1/" + snap2 + "/", "/dav/web1/latest/"}
		if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, want) {
			t.Errorf("hrefs %q, want %q", keys, want)
		}
		_, got = propfind(t, srv.URL+"/dav/web1/latest/root/etc/", "1")
		if e, ok := got["/dav/web1/latest/root/etc/hostname"]; !ok || e.length != fmt.Sprint(len("web1 "+snap2+"\n")) {
			t.Errorf("through latest: %v", got)
		}
	})

	t.Run("depth 0", func(t *testing.T) {
		_, got := propfind(t, srv.URL+base+"notes.txt", "0")
		if len(got) != 1 {
			t.Errorf("depth 0 gave %d responses", len(got))
		}
		_, got = propfind(t, srv.URL+"/dav/", "0")
		if _, ok := got["/dav/"]; len(got) != 1 || !ok {
			t.Errorf("root depth 0: %v", got)
		}
	})

	t.Run("infinite depth refused", func(t *testing.T) {
		for _, d := range []string{"infinity", ""} {
			if code, _ := propfind(t, srv.URL+"/dav/", d); code != http.StatusForbidden {
				t.Errorf("Depth %q: %d, want 403", d, code)
			}
		}
	})

	t.Run("links out of bounds are hidden", func(t *testing.T) {
		for _, name := range []string{"other-host", "loop", "dangling"} {
			if code, _ := propfind(t, srv.URL+base+name, "0"); code != http.StatusNotFound {
				t.Errorf("%s: %d, want 404", name, code)
			}
		}
		if code, _ := propfind(t, srv.URL+"/dav/web1/"+snap1+"/root/etc/localtime", "0"); code != http.StatusNotFound {
			t.Errorf("absolute link: %d", code)
		}
	})
}

func TestGet(t *testing.T) {
	m := testTree()
	srv := newServer(t, m, "/dav")

	t.Run("content digests", func(t *testing.T) {
		n := 0
		for name, f := range m {
			if !f.Mode.IsRegular() {
				continue
			}
			resp, body := do(t, "GET", srv.URL+"/dav/"+(&url.URL{Path: name}).EscapedPath(), nil, "")
			if resp.StatusCode != 200 || sum(body) != sum(f.Data) {
				t.Errorf("GET %s: %d, %d bytes", name, resp.StatusCode, len(body))
			}
			if want := `"` + sum(f.Data) + `"`; len(f.Data) > 0 && resp.Header.Get("ETag") != want {
				t.Errorf("GET %s: ETag %q, want %q", name, resp.Header.Get("ETag"), want)
			}
			if resp.Header.Get("Last-Modified") != mtime.Format(http.TimeFormat) {
				t.Errorf("GET %s: Last-Modified %q", name, resp.Header.Get("Last-Modified"))
			}
			n++
		}
		if n != 20 {
			t.Errorf("checked %d files", n)
		}
		resp, body := do(t, "GET", srv.URL+"/dav/db1/latest/root/home/alice/rel", nil, "")
		if resp.StatusCode != 200 || string(body) != "notes of db1\n" {
			t.Errorf("GET through links: %d %q", resp.StatusCode, body)
		}
		resp, body = do(t, "HEAD", srv.URL+"/dav/web1/latest/var/big.bin", nil, "")
		if resp.StatusCode != 404 || len(body) != 0 {
			t.Errorf("HEAD missing: %d", resp.StatusCode)
		}
	})

	t.Run("range", func(t *testing.T) {
		data := m["web1/"+snap2+"/root/var/big.bin"].Data
		u := srv.URL + "/dav/web1/latest/root/var/big.bin"
		for rng, want := range map[string][]byte{
			"bytes=100-199":         data[100:200],
			"bytes=-10":             data[len(data)-10:],
			"bytes=3145700-":        data[3145700:],
			"bytes=1048576-1048576": data[1048576:1048577],
		} {
			resp, body := do(t, "GET", u, map[string]string{"Range": rng}, "")
			if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, want) {
				t.Errorf("Range %s: %d, %d bytes", rng, resp.StatusCode, len(body))
			}
		}
		etag := `"` + sum(data) + `"`
		resp, _ := do(t, "GET", u, map[string]string{"If-None-Match": etag}, "")
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("If-None-Match: %d", resp.StatusCode)
		}
	})
}

// TestHostilePaths sends raw request lines so that no client normalises
// them, against a share of a real directory with a secret next to it.
func TestHostilePaths(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "share")
	const secret = "TOP-SECRET-CONTENT"
	must(t, os.MkdirAll(filepath.Join(root, "host/snap"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "secret.txt"), []byte(secret), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "host/snap/ok.txt"), []byte("fine\n"), 0o644))
	must(t, os.Symlink("../../secret.txt", filepath.Join(root, "host/escape")))
	must(t, os.Symlink(filepath.Join(dir, "secret.txt"), filepath.Join(root, "host/abs")))
	must(t, os.Symlink("..", filepath.Join(root, "host/up")))
	srv := newServer(t, os.DirFS(root), "/dav")
	addr := strings.TrimPrefix(srv.URL, "http://")

	resp, body := do(t, "GET", srv.URL+"/dav/host/snap/ok.txt", nil, "")
	if resp.StatusCode != 200 || string(body) != "fine\n" {
		t.Fatalf("control request: %d %q", resp.StatusCode, body)
	}
	paths := []string{
		"/dav/../secret.txt",
		"/dav/%2e%2e/secret.txt",
		"/dav/%2E%2E/secret.txt",
		"/dav/host/..%2f..%2f..%2fsecret.txt",
		"/dav/host/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
		"/dav//..//..//secret.txt",
		"/dav/host/snap/../../../secret.txt",
		"/dav/..%5c..%5csecret.txt",
		"/dav/host/..\\..\\..\\secret.txt",
		"/dav/%c0%ae%c0%ae/secret.txt",
		"/dav/%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%afsecret.txt",
		"/dav/%e0%80%ae%e0%80%ae/secret.txt",
		"/dav/host/escape",
		"/dav/host/abs",
		"/dav/host/up/../secret.txt",
		"/dav/host/up/up/secret.txt",
		"/dav/%00/../secret.txt",
		"/dav/host%00/snap/ok.txt",
		"/dav/./../secret.txt",
		"/secret.txt",
		"/davsecret.txt",
		"/dav/../../../../../../etc/passwd",
	}
	for _, p := range paths {
		for _, method := range []string{"GET", "PROPFIND"} {
			status, body := rawRequest(t, addr, method, p)
			if strings.Contains(body, secret) || strings.Contains(body, "root:") || strings.Contains(body, "secret.txt<") {
				t.Errorf("%s %s leaked: %d %q", method, p, status, body)
			}
			if status == 200 || status == 207 {
				t.Errorf("%s %s: %d", method, p, status)
			}
		}
	}
}

func rawRequest(t *testing.T, addr, method, uri string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nDepth: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", method, uri, addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, uri, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                 ".",
		"/":                ".",
		"/a/b/":            "a/b",
		"a//b":             "a/b",
		"/../../a":         "a",
		"/a/../../b":       "b",
		"/a/./b/..":        "a",
		`..\..\x`:          `..\..\x`,
		"/web1/latest/x.y": "web1/latest/x.y",
	} {
		got, err := CleanPath(in)
		if err != nil || got != want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"a\x00b", "\xc0\xae\xc0\xae", "/a/\xff"} {
		if got, err := CleanPath(in); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("CleanPath(%q) = %q, %v; want ErrNotExist", in, got, err)
		}
	}
}

func FuzzWebDAVPath(f *testing.F) {
	for _, s := range []string{"", "/", "../a", "/a/../../b", "a\x00", "%2e%2e", `..\..`, "//a//b//", "\xc0\xae", "/./.", "a/./../.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := CleanPath(in)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("CleanPath(%q): unexpected error %v", in, err)
			}
			return
		}
		if !fs.ValidPath(got) || strings.IndexByte(got, 0) >= 0 {
			t.Fatalf("CleanPath(%q) = %q: not a valid fs path", in, got)
		}
		for _, el := range strings.Split(got, "/") {
			if el == ".." {
				t.Fatalf("CleanPath(%q) = %q: has ..", in, got)
			}
		}
		if again, err := CleanPath(got); err != nil || again != got {
			t.Fatalf("CleanPath not idempotent: %q -> %q -> %q, %v", in, got, again, err)
		}
		// Whatever the input, the result is inside the root: joining it
		// to a root and cleaning keeps the root prefix.
		if j := path.Join("/root", got); j != "/root" && !strings.HasPrefix(j, "/root/") {
			t.Fatalf("CleanPath(%q) = %q escapes: %q", in, got, j)
		}
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
