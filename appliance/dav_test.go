package appliance

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/cairn-backup/cairn/appliance/catalog"
	_ "github.com/cairn-backup/cairn/pullers/local"
)

// srcTree fills a directory with files, a subdirectory, a symlink and
// varied modes, and returns the sha256 of each regular file by slash path.
func srcTree(t *testing.T) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	big := make([]byte, 300<<10)
	rand.Read(big)
	files := map[string][]byte{
		"a.txt":         []byte("hello from a\n"),
		"sub/b.bin":     big,
		"sub/deep/c.sh": []byte("#!/bin/sh\necho c\n"),
	}
	sums := map[string]string{}
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sums[name] = sha(data)
	}
	os.Chmod(filepath.Join(dir, "sub/deep/c.sh"), 0o750)
	if err := os.Symlink("../a.txt", filepath.Join(dir, "sub/link")); err != nil {
		t.Fatal(err)
	}
	return dir, sums
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// restoreEnv is an appliance with host www (a local source with srcTree,
// group web) and host pg (group db), both backed up once, user alice in
// group web with a password and a token, and admin root with a password.
type restoreEnv struct {
	*testEnv
	srv      *httptest.Server
	sums     map[string]string
	src      string
	aliceTok string
	wwwSnap  string
}

func newRestoreEnv(t *testing.T) *restoreEnv {
	resetFake(t)
	releaseFake()
	e := newEnv(t, Config{})
	ctx := context.Background()
	e.s.cat.CreateGroup(ctx, "web")
	e.s.cat.CreateGroup(ctx, "db")
	aliceTok := e.user("alice", "user", "web")
	e.user("boss", "admin")
	setPassword(t, e, "alice", "alice-secret-pw")
	setPassword(t, e, "boss", "boss-secret-pw")
	src, sums := srcTree(t)
	name := "www"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Groups: &[]string{"web"},
		Sources: []SourceInput{{Name: "files", Method: "local", Path: src}}}, nil)
	e.addHost("pg", nil, func(in *HostInput) { in.Groups = &[]string{"db"} })
	for _, h := range []string{"www", "pg"} {
		if j := e.waitJob(e.backup(h).ID); j.State != catalog.JobDone {
			t.Fatalf("backup %s: %+v", h, j)
		}
	}
	var snaps []SnapshotBody
	e.must("socket", "GET", "/api/v1/snapshots?host=www", nil, &snaps)
	if len(snaps) != 1 {
		t.Fatalf("www snapshots: %+v", snaps)
	}
	srv := httptest.NewServer(e.s.Handler())
	t.Cleanup(srv.Close)
	return &restoreEnv{testEnv: e, srv: srv, sums: sums, src: src, aliceTok: aliceTok, wwwSnap: snaps[0].ID}
}

func setPassword(t *testing.T, e *testEnv, name, pw string) {
	t.Helper()
	ctx := context.Background()
	u, err := e.s.cat.User(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	u.PasswordHash = string(h)
	if err := e.s.cat.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
}

// dav does one WebDAV request; auth is "user:password", "bearer:TOKEN" or "".
func (re *restoreEnv) dav(t *testing.T, method, path, auth string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, re.srv.URL+path, nil)
	if method == "PUT" {
		req, _ = http.NewRequest(method, re.srv.URL+path, strings.NewReader("x"))
	}
	if tok, ok := strings.CutPrefix(auth, "bearer:"); ok {
		req.Header.Set("Authorization", "Bearer "+tok)
	} else if u, p, ok := strings.Cut(auth, ":"); ok {
		req.SetBasicAuth(u, p)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// TestDAVAuthAndVisibility: the WebDAV share needs credentials and shows a
// user only the hosts of its groups; hidden hosts are 404.
func TestDAVAuthAndVisibility(t *testing.T) {
	re := newRestoreEnv(t)
	depth1 := map[string]string{"Depth": "1"}
	code, h, _ := re.dav(t, "PROPFIND", "/dav/", "", depth1)
	if code != http.StatusUnauthorized || !strings.Contains(h.Get("WWW-Authenticate"), `Basic realm="cairn"`) {
		t.Fatalf("no credentials: %d %q", code, h.Get("WWW-Authenticate"))
	}
	if code, _, _ := re.dav(t, "PROPFIND", "/dav/", "alice:wrong-password", depth1); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", code)
	}
	if code, _, _ := re.dav(t, "GET", "/dav/www/latest/files/a.txt", "x:cairn_bogus", nil); code != http.StatusUnauthorized {
		t.Fatalf("bogus token: %d", code)
	}
	for _, who := range []string{"alice:alice-secret-pw", "token:" + re.aliceTok, "bearer:" + re.aliceTok} {
		code, _, body := re.dav(t, "PROPFIND", "/dav/", who, depth1)
		if code != http.StatusMultiStatus {
			t.Fatalf("%s: PROPFIND / = %d %s", who, code, body)
		}
		if !strings.Contains(string(body), "/dav/www/") || strings.Contains(string(body), "pg") {
			t.Fatalf("%s: root listing should show www only:\n%s", who, body)
		}
		if code, _, _ := re.dav(t, "PROPFIND", "/dav/pg/", who, depth1); code != http.StatusNotFound {
			t.Fatalf("%s: PROPFIND /pg/ = %d, want 404", who, code)
		}
		if code, _, _ := re.dav(t, "GET", "/dav/pg/latest/data/f000.txt", who, nil); code != http.StatusNotFound {
			t.Fatalf("%s: GET under pg = %d, want 404", who, code)
		}
	}
	code, _, body := re.dav(t, "PROPFIND", "/dav/", "boss:boss-secret-pw", depth1)
	if code != http.StatusMultiStatus || !strings.Contains(string(body), "/dav/www/") || !strings.Contains(string(body), "/dav/pg/") {
		t.Fatalf("admin root listing: %d\n%s", code, body)
	}
	// Content: every file of the source, through latest.
	for name, want := range re.sums {
		code, _, body := re.dav(t, "GET", "/dav/www/latest/files/"+name, "alice:alice-secret-pw", nil)
		if code != http.StatusOK || sha(body) != want {
			t.Fatalf("GET %s: %d, sha %s want %s", name, code, sha(body), want)
		}
	}
	// Range, ETag.
	big, err := os.ReadFile(filepath.Join(re.src, "sub", "b.bin"))
	if err != nil {
		t.Fatal(err)
	}
	code, h, body = re.dav(t, "GET", "/dav/www/latest/files/sub/b.bin", "alice:alice-secret-pw", map[string]string{"Range": "bytes=1000-1999"})
	if code != http.StatusPartialContent || !bytes.Equal(body, big[1000:2000]) || h.Get("ETag") == "" {
		t.Fatalf("Range GET: %d, %d bytes, ETag %q", code, len(body), h.Get("ETag"))
	}
	// Read-only.
	for _, m := range []string{"PUT", "DELETE", "MKCOL"} {
		code, h, _ := re.dav(t, m, "/dav/www/latest/files/new.txt", "boss:boss-secret-pw", nil)
		if code != http.StatusMethodNotAllowed || h.Get("Allow") == "" {
			t.Fatalf("%s: %d Allow=%q, want 405", m, code, h.Get("Allow"))
		}
	} // Password guessing: after 10 failures a name is refused for a while,
	// even with the right password; other users are unaffected.
	for range 10 {
		if code, _, _ := re.dav(t, "GET", "/dav/", "boss:guess", nil); code != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d", code)
		}
	}
	if code, _, _ := re.dav(t, "GET", "/dav/www/latest/files/a.txt", "boss:boss-secret-pw-x", nil); code != http.StatusUnauthorized {
		t.Fatalf("locked out user, new password: %d", code)
	}
	re.s.basic.mu.Lock()
	re.s.basic.m = nil // forget the cached good login to force a check
	re.s.basic.mu.Unlock()
	if code, _, _ := re.dav(t, "GET", "/dav/www/latest/files/a.txt", "boss:boss-secret-pw", nil); code != http.StatusUnauthorized {
		t.Fatalf("locked out user, right password: %d", code)
	}
	if code, _, _ := re.dav(t, "GET", "/dav/www/latest/files/a.txt", "alice:alice-secret-pw", nil); code != http.StatusOK {
		t.Fatalf("other user during lockout: %d", code)
	}
}

// TestDAVRclone lists and copies the share with rclone (a real client) as
// a user, and compares digests with the source.
func TestDAVRclone(t *testing.T) {
	if _, err := exec.LookPath("rclone"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("rclone not installed")
		}
		t.Skip("rclone not installed")
	}
	re := newRestoreEnv(t)
	obscured, err := exec.Command("rclone", "obscure", "alice-secret-pw").Output()
	if err != nil {
		t.Fatal(err)
	}
	remote := ":webdav:"
	args := []string{"--config", "/dev/null", "--webdav-url", re.srv.URL + "/dav/",
		"--webdav-user", "alice", "--webdav-pass", strings.TrimSpace(string(obscured))}
	out, err := exec.Command("rclone", append([]string{"lsf"}, append(args, remote)...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rclone lsf: %v\n%s", err, out)
	}
	if strings.TrimSpace(string(out)) != "www/" {
		t.Fatalf("rclone lsf / = %q, want only www/", out)
	}
	dst := t.TempDir()
	out, err = exec.Command("rclone", append([]string{"copy"}, append(args, remote+"www/latest/files", dst)...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rclone copy: %v\n%s", err, out)
	}
	for name, want := range re.sums {
		b, err := os.ReadFile(filepath.Join(dst, filepath.FromSlash(name)))
		if err != nil || sha(b) != want {
			t.Fatalf("rclone copy %s: %v sha %s want %s", name, err, sha(b), want)
		}
	}
}

// TestHostFilterFS: the per-user tree hides other hosts in every call.
func TestHostFilterFS(t *testing.T) {
	re := newRestoreEnv(t)
	alice, err := re.s.cat.User(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	p := &principal{Name: "alice", Role: "user", UserID: alice.ID}
	fsys := re.s.userTree(context.Background(), p)
	es, err := fs.ReadDir(fsys, ".")
	if err != nil || len(es) != 1 || es[0].Name() != "www" {
		t.Fatalf("ReadDir . = %v %v", es, err)
	}
	for _, name := range []string{"pg", "pg/latest", "pg/latest/data/f000.txt"} {
		if _, err := fs.Stat(fsys, name); !errorsIsNotExist(err) {
			t.Fatalf("Stat %s: %v", name, err)
		}
		if _, err := fs.Lstat(fsys, name); !errorsIsNotExist(err) {
			t.Fatalf("Lstat %s: %v", name, err)
		}
	}
	if _, err := fs.ReadLink(fsys, "pg/latest"); !errorsIsNotExist(err) {
		t.Fatalf("ReadLink pg/latest: %v", err)
	}
	if tgt, err := fs.ReadLink(fsys, "www/latest"); err != nil || tgt == "" {
		t.Fatalf("ReadLink www/latest = %q %v", tgt, err)
	}
	b, err := fs.ReadFile(fsys, "www/latest/files/a.txt")
	if err != nil || sha(b) != re.sums["a.txt"] {
		t.Fatalf("read a.txt: %v", err)
	}
	d, err := fsys.Open(".")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var names []string
	for {
		es, err := d.(fs.ReadDirFile).ReadDir(1)
		for _, e := range es {
			names = append(names, e.Name())
		}
		if err != nil {
			break
		}
	}
	if strings.Join(names, ",") != "www" {
		t.Fatalf("root ReadDir(1) loop = %v", names)
	}
}

func errorsIsNotExist(err error) bool { return err != nil && os.IsNotExist(err) }
