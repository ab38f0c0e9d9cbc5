package appliance

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
)

// tarGz makes a tar.gz of name → content (names ending in / are dirs).
func tarGz(t *testing.T, files map[string]string, order []string) []byte {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, n := range order {
		h := &tar.Header{Name: n, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(files[n]))}
		if strings.HasSuffix(n, "/") {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, files[n])
	}
	tw.Close()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(raw.Bytes())
	zw.Close()
	return out.Bytes()
}

// snapshotFile reads a file of the newest snapshot of host/source.
func snapshotFile(t *testing.T, e *testEnv, host, source, name string) string {
	t.Helper()
	ctx := context.Background()
	last, err := e.s.cat.LastSnapshot(ctx, host, source, false)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := pool.ParseDigest(last.Root)
	ent, err := e.s.pool.Lookup(ctx, root, name)
	if err != nil {
		t.Fatalf("%s in %s/%s: %v", name, host, source, err)
	}
	cr, err := e.s.pool.OpenContent(ctx, &ent)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(cr)
	return string(b)
}

var importFiles = map[string]string{"etc/": "", "etc/app.conf": "key = value\n", "www/index.html": "<h1>hi</h1>\n", "README": "imported\n"}
var importOrder = []string{"www/index.html", "etc/", "README", "etc/app.conf"}

// TestImportOverAPI: POST .../import streams an archive into a snapshot
// (operators only); a hostile archive is a 400 with the reason and
// leaves no snapshot.
func TestImportOverAPI(t *testing.T) {
	e := newEnv(t, Config{})
	e.addHost("web1", nil)
	post := func(as, path string, body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/octet-stream")
		if as == "socket" {
			req = req.WithContext(context.WithValue(req.Context(), peerKey, peer{unix: true, uid: 0}))
		} else if as != "" {
			req.Header.Set("Authorization", "Bearer "+as)
		}
		w := httptest.NewRecorder()
		e.s.Handler().ServeHTTP(w, req)
		return w
	}
	good := tarGz(t, importFiles, importOrder)
	if w := post("", "/api/v1/hosts/web1/import", good); w.Code != 401 {
		t.Fatalf("import without credentials: %d %s", w.Code, w.Body)
	}
	if w := post(e.user("viewer", "user"), "/api/v1/hosts/web1/import", good); w.Code != 403 && w.Code != 404 {
		t.Fatalf("import as a user: %d %s", w.Code, w.Body)
	}
	w := post(e.user("op", "operator"), "/api/v1/hosts/web1/import?source=site", good)
	if w.Code != 200 {
		t.Fatalf("import: %d %s", w.Code, w.Body)
	}
	var ib ImportBody
	if err := json.Unmarshal(w.Body.Bytes(), &ib); err != nil {
		t.Fatal(err)
	}
	if ib.Format != "tar+gzip" || ib.Snapshot.Source != "site" || ib.Snapshot.Files != 3 || ib.ArchiveBytes != int64(len(good)) {
		t.Fatalf("import answer: %+v", ib)
	}
	for n, c := range importFiles {
		if !strings.HasSuffix(n, "/") && snapshotFile(t, e, "web1", "site", n) != c {
			t.Fatalf("%s differs", n)
		}
	}
	evil := tarGz(t, map[string]string{"../../root/.ssh/authorized_keys": "ssh-ed25519 AAAA evil"}, []string{"../../root/.ssh/authorized_keys"})
	w = post("socket", "/api/v1/hosts/web1/import?source=evil", evil)
	if w.Code != 400 || !strings.Contains(w.Body.String(), "leaves the tree") {
		t.Fatalf("hostile import: %d %s", w.Code, w.Body)
	}
	w = post("socket", "/api/v1/hosts/web1/import?source=bad/name", good)
	if w.Code != 400 {
		t.Fatalf("import with a bad source name: %d %s", w.Code, w.Body)
	}
	if w := post("socket", "/api/v1/hosts/nosuch/import", good); w.Code != 404 {
		t.Fatalf("import to an unknown host: %d %s", w.Code, w.Body)
	}
	snaps, err := e.s.cat.Snapshots(context.Background(), "web1")
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots: %+v %v", snaps, err)
	}
}

// TestArchiveSourceOverSFTP: a source of method archive fetches an
// archive from a real sshd over sftp and backs up its contents.
func TestArchiveSourceOverSFTP(t *testing.T) {
	srv := testenv.SSHD(t)
	dir := filepath.Join(srv.Dir, "dumps")
	if err := os.MkdirAll(filepath.Join(dir, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "site.tar.gz"), tarGz(t, importFiles, importOrder), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "old", "other.tar.gz"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Config{})
	in := sftpSourceInput(t, srv, filepath.Join(dir, "site.tar.gz"), map[string]string{"fetch": "sftp"})
	in.Method = "archive"
	name, addr := "web1", srv.Host
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Address: &addr, Sources: []SourceInput{in}}, nil)
	if j := e.waitJob(e.backup("web1").ID); j.State != "done" {
		t.Fatalf("archive over sftp: %s %s", j.State, j.Error)
	}
	for n, c := range importFiles {
		if !strings.HasSuffix(n, "/") && snapshotFile(t, e, "web1", "data", n) != c {
			t.Fatalf("%s differs", n)
		}
	}
}

// TestArchiveSourceOverFTP: the same over a real vsftpd, with other files
// next to the archive (not read) and a zip.
func TestArchiveSourceOverFTP(t *testing.T) {
	srv := testenv.FTP(t)
	dir := filepath.Join(srv.UserDir, "exports")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"site.tar.gz": tarGz(t, importFiles, importOrder), "notes.txt": []byte("not imported"),
		"big.bin": bytes.Repeat([]byte("unread "), 1<<20)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(srv.UserDir, &st); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			os.Chown(p, int(st.Uid), int(st.Gid))
		}
		return err
	})
	e := newEnv(t, Config{})
	name := "ftphost"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{{Name: "site", Method: "archive", Path: "/exports/site.tar.gz",
		Options: map[string]string{"fetch": "ftp", "host": srv.Host, "port": strconv.Itoa(srv.Port), "user": srv.User},
		Secret:  map[string]string{"password": srv.Password}}}}, nil)
	if j := e.waitJob(e.backup("ftphost").ID); j.State != "done" {
		t.Fatalf("archive over ftp: %s %s", j.State, j.Error)
	}
	for n, c := range importFiles {
		if !strings.HasSuffix(n, "/") && snapshotFile(t, e, "ftphost", "site", n) != c {
			t.Fatalf("%s differs", n)
		}
	}
	last, _ := e.s.cat.LastSnapshot(context.Background(), "ftphost", "site", false)
	if last.Files != 3 || last.Status != "complete" {
		t.Fatalf("snapshot: %+v", last)
	}
}
