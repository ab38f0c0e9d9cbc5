package appliance

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pullers"
)

// TestNetworkMethodsRegistered: the appliance knows every network puller.
func TestNetworkMethodsRegistered(t *testing.T) {
	ms := pullers.Methods()
	for _, m := range []string{"sftp", "smb", "ftp", "tar", "rsync", "postgres", "mariadb"} {
		if !slices.Contains(ms, m) {
			t.Errorf("method %s not registered (have %v)", m, ms)
		}
	}
	e := newEnv(t, Config{})
	var got []MethodBody
	e.must("socket", "GET", "/api/v1/methods", nil, &got)
	titles := map[string]string{}
	for _, m := range got {
		titles[m.Name] = m.Title
	}
	for _, m := range []string{"sftp", "smb", "ftp", "tar", "rsync", "postgres", "mariadb"} {
		if titles[m] == "" {
			t.Errorf("GET /api/v1/methods: %s missing or without a title: %+v", m, got)
		}
	}
	// A network source without what it needs is refused when added.
	name := "bad"
	w := e.do("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{{Name: "x", Method: "sftp", Path: "/etc",
		Options: map[string]string{"host": "h"}}}})
	if w.Code != 400 || !strings.Contains(w.Body.String(), `needs the option \"user\"`) {
		t.Fatalf("sftp without user: %d %s", w.Code, w.Body)
	}
}

// treeDigests maps every regular file below dir (relative, slash paths)
// to its sha256.
func treeDigests(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		sum := sha256.Sum256(b)
		out[filepath.ToSlash(rel)] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func fillTree(t *testing.T, dir string) {
	t.Helper()
	big := make([]byte, 300<<10)
	rand.Read(big)
	files := map[string][]byte{
		"hosts":            []byte("127.0.0.1 localhost\n"),
		"sub/app.conf":     []byte("listen 80\n"),
		"sub/deeper/big":   big,
		"name with space":  []byte("x"),
		"sub/deeper/empty": nil,
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

func sftpSourceInput(t *testing.T, s *testenv.SSHServer, dir string, extra map[string]string) SourceInput {
	t.Helper()
	key, err := os.ReadFile(s.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	opts := map[string]string{"host": s.Host, "port": strconv.Itoa(s.Port), "user": s.User}
	for k, v := range extra {
		opts[k] = v
	}
	return SourceInput{Name: "data", Method: "sftp", Path: dir, Options: opts, Secret: map[string]string{"private_key": string(key)}}
}

// TestSFTPTrustOnFirstUseAndRestoreToHost runs the sftp puller from the
// appliance against a real sshd: the connection test, a first backup
// that pins the host key, a restore back to the host checked by digest
// on the server side, and a server with another host key on the same
// pinned source, which fails permanently naming both fingerprints.
func TestSFTPTrustOnFirstUseAndRestoreToHost(t *testing.T) {
	s1 := testenv.SSHD(t)
	s2 := testenv.SSHD(t)
	dir := filepath.Join(s1.Dir, "data")
	fillTree(t, dir)
	want := treeDigests(t, dir)

	e := newEnv(t, Config{RetryBackoff: time.Millisecond})
	name := "web"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{sftpSourceInput(t, s1, dir, nil)}}, nil)

	var tests []SourceTestBody
	e.must("socket", "POST", "/api/v1/hosts/web/test", nil, &tests)
	fp1, fp2 := ssh.FingerprintSHA256(s1.HostKey), ssh.FingerprintSHA256(s2.HostKey)
	if len(tests) != 1 || !tests[0].OK || tests[0].Identity["host_key_fingerprint"] != fp1 || tests[0].Pinned != "" ||
		tests[0].Identity["entries"] != "3" {
		t.Fatalf("host test: %+v", tests)
	}

	j := e.waitJob(e.backup("web").ID)
	if j.State != "done" {
		t.Fatalf("first backup %s: %s", j.State, j.Error)
	}
	var hb HostBody
	e.must("socket", "GET", "/api/v1/hosts/web", nil, &hb)
	pinned := hb.Sources[0].Options["host_key"]
	if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pinned)); err != nil || ssh.FingerprintSHA256(k) != fp1 {
		t.Fatalf("host_key after the first backup = %q (%v), want the key of %s", pinned, err, fp1)
	}
	e.must("socket", "POST", "/api/v1/hosts/web/test", nil, &tests)
	if tests[0].Pinned != fp1 {
		t.Fatalf("host test after pinning: %+v", tests)
	}
	// A second backup with the pin works (and reuses the content).
	if j := e.waitJob(e.backup("web").ID); j.State != "done" {
		t.Fatalf("second backup %s: %s", j.State, j.Error)
	}

	// Restore the whole snapshot to the host, then one subdirectory.
	var rj JobBody
	e.must("socket", "POST", "/api/v1/restores", RestoreToHostInput{Host: "web", Snapshot: "latest", Source: "data", ToHost: true}, &rj)
	rj = e.waitJob(rj.ID)
	if rj.State != "done" {
		t.Fatalf("restore to host %s: %s", rj.State, rj.Error)
	}
	var prog struct {
		Result hostRestoreResult `json:"result"`
	}
	if err := json.Unmarshal(rj.Progress, &prog); err != nil {
		t.Fatal(err)
	}
	dest := prog.Result.Dest
	if filepath.Dir(dest) != dir || !strings.HasPrefix(filepath.Base(dest), "cairn-restore-") || prog.Result.Files != int64(len(want)) {
		t.Fatalf("restore result %+v (dir %s)", prog.Result, dir)
	}
	if got := treeDigests(t, dest); !mapsEqual(got, want) {
		t.Fatalf("restored on the host:\n got %v\nwant %v", got, want)
	}
	e.must("socket", "POST", "/api/v1/restores", RestoreToHostInput{Host: "web", Snapshot: "latest", Source: "data",
		Path: "sub", ToHost: true, Dest: filepath.Join(s1.Dir, "only-sub")}, &rj)
	if rj = e.waitJob(rj.ID); rj.State != "done" {
		t.Fatalf("restore of sub %s: %s", rj.State, rj.Error)
	}
	wantSub := map[string]string{}
	for k, v := range want {
		if rest, ok := strings.CutPrefix(k, "sub/"); ok {
			wantSub[rest] = v
		}
	}
	if got := treeDigests(t, filepath.Join(s1.Dir, "only-sub")); !mapsEqual(got, wantSub) {
		t.Fatalf("restored sub:\n got %v\nwant %v", got, wantSub)
	}
	// In place (admin): a changed file of a subtree is put back where it was.
	if err := os.WriteFile(filepath.Join(dir, "sub", "app.conf"), []byte("changed on the host\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	e.must("socket", "POST", "/api/v1/restores", RestoreToHostInput{Host: "web", Snapshot: "latest", Source: "data",
		Path: "sub", ToHost: true, InPlace: true}, &rj)
	if rj = e.waitJob(rj.ID); rj.State != "done" {
		t.Fatalf("restore in place %s: %s", rj.State, rj.Error)
	}
	now := treeDigests(t, dir)
	for k, v := range want {
		if now[k] != v {
			t.Fatalf("after the in-place restore %s = %s, want %s", k, now[k], v)
		}
	}
	// Refused: to_host with to, in_place below admin, a method that cannot.
	if w := e.do("socket", "POST", "/api/v1/restores", RestoreToHostInput{Snapshot: "latest", Host: "web", Source: "data", ToHost: true, To: "/tmp/x"}); w.Code != 400 {
		t.Fatalf("to_host with to: %d %s", w.Code, w.Body)
	}
	op := e.user("op", "operator")
	if w := e.do(op, "POST", "/api/v1/restores", RestoreToHostInput{Snapshot: "latest", Host: "web", Source: "data", ToHost: true, InPlace: true}); w.Code != 403 {
		t.Fatalf("in_place as operator: %d %s", w.Code, w.Body)
	}

	// Same pinned options, another server (another host key): refused.
	src := sftpSourceInput(t, s2, dir, map[string]string{"host_key": pinned})
	e.must("socket", "PUT", "/api/v1/hosts/web/sources/data", src, nil)
	j = e.waitJob(e.backup("web").ID)
	if j.State != "failed" || !strings.Contains(j.Error, fp1) || !strings.Contains(j.Error, fp2) ||
		!strings.Contains(j.Error, "host key changed") {
		t.Fatalf("backup against another host key: %s: %q (want both %s and %s)", j.State, j.Error, fp1, fp2)
	}
	var jobs []JobBody
	e.must("socket", "GET", "/api/v1/jobs", nil, &jobs)
	for _, o := range jobs {
		if o.RetryOf == j.ID {
			t.Fatalf("the refused backup was retried: job %d", o.ID)
		}
	}
	e.must("socket", "GET", "/api/v1/hosts/web", nil, &hb)
	if hb.Sources[0].Options["host_key"] != pinned {
		t.Fatalf("the pin changed: %q", hb.Sources[0].Options["host_key"])
	}
	e.must("socket", "POST", "/api/v1/hosts/web/test", nil, &tests)
	if tests[0].OK || !strings.Contains(tests[0].Error, fp2) {
		t.Fatalf("host test against the other key: %+v", tests)
	}
	// An admin accepts the new key; then backups work again.
	if w := e.do(op, "POST", "/api/v1/hosts/web/test?accept=true", nil); w.Code != 403 {
		t.Fatalf("accept as operator: %d %s", w.Code, w.Body)
	}
	e.must("socket", "POST", "/api/v1/hosts/web/test?accept=true", nil, &tests)
	if !tests[0].OK || tests[0].Pinned != fp2 {
		t.Fatalf("accept: %+v", tests)
	}
	if j := e.waitJob(e.backup("web").ID); j.State != "done" {
		t.Fatalf("backup after accepting the new key: %s: %s", j.State, j.Error)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// restoreToHostAndCheck backs up host (one source "data") and restores it
// to the host, then compares the digests found in the directory the
// restore reports, mapped by local, with want.
func restoreToHostAndCheck(t *testing.T, e *testEnv, host string, want map[string]string, local func(dest string) string) hostRestoreResult {
	t.Helper()
	if j := e.waitJob(e.backup(host).ID); j.State != "done" {
		t.Fatalf("backup of %s %s: %s", host, j.State, j.Error)
	}
	var rj JobBody
	e.must("socket", "POST", "/api/v1/restores", RestoreToHostInput{Host: host, Snapshot: "latest", Source: "data", ToHost: true}, &rj)
	if rj = e.waitJob(rj.ID); rj.State != "done" {
		t.Fatalf("restore to %s %s: %s", host, rj.State, rj.Error)
	}
	var prog struct {
		Result hostRestoreResult `json:"result"`
	}
	if err := json.Unmarshal(rj.Progress, &prog); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(prog.Result.Dest, "cairn-restore-") {
		t.Fatalf("restore result %+v", prog.Result)
	}
	if got := treeDigests(t, local(prog.Result.Dest)); !mapsEqual(got, want) {
		t.Fatalf("restored on %s:\n got %v\nwant %v", host, got, want)
	}
	return prog.Result
}

// TestSMBRestoreToHost: backup and restore to the host over SMB against
// Samba, checked by digest on the share's disk.
func TestSMBRestoreToHost(t *testing.T) {
	sm := testenv.Samba(t)
	fillTree(t, filepath.Join(sm.Dir, "data"))
	want := treeDigests(t, filepath.Join(sm.Dir, "data"))
	e := newEnv(t, Config{})
	name := "fileserver"
	// No host option: the host's address is the server.
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Address: &sm.Host, Sources: []SourceInput{{Name: "data", Method: "smb", Path: "data",
		Options: map[string]string{"port": strconv.Itoa(sm.Port), "user": sm.User, "share": sm.Share},
		Secret:  map[string]string{"password": sm.Password}}}}, nil)
	var tests []SourceTestBody
	e.must("socket", "POST", "/api/v1/hosts/fileserver/test", nil, &tests)
	if len(tests) != 1 || !tests[0].OK || tests[0].Identity["share"] != sm.Share {
		t.Fatalf("host test: %+v", tests)
	}
	restoreToHostAndCheck(t, e, "fileserver", want, func(dest string) string { return filepath.Join(sm.Dir, filepath.FromSlash(dest)) })
}

// TestFTPSPinAndRestoreToHost: the first FTPS backup pins the
// certificate (trust on first use), which lets the restore upload (FTP
// restores go only to an authenticated server).
func TestFTPSPinAndRestoreToHost(t *testing.T) {
	srv := testenv.FTP(t)
	dir := filepath.Join(srv.UserDir, "data")
	fillTree(t, dir)
	want := treeDigests(t, dir)
	// The FTP user must be able to read the tree and write the restore.
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
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{{Name: "data", Method: "ftp", Path: "/data",
		Options: map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "user": srv.User},
		Secret:  map[string]string{"password": srv.Password}}}}, nil)
	restoreToHostAndCheck(t, e, "ftphost", want, func(dest string) string { return filepath.Join(srv.UserDir, filepath.FromSlash(dest)) })
	var hb HostBody
	e.must("socket", "GET", "/api/v1/hosts/ftphost", nil, &hb)
	if fp := hb.Sources[0].Options["tls_fingerprint"]; !strings.HasPrefix(fp, "sha256:") {
		t.Fatalf("tls_fingerprint after the first backup: %q", fp)
	}
	if w := e.do("socket", "POST", "/api/v1/restores", RestoreToHostInput{Host: "ftphost", Snapshot: "latest", Source: "data",
		ToHost: true, InPlace: true}); w.Code != 400 {
		t.Fatalf("ftp in place: %d %s", w.Code, w.Body)
	}
}

// TestSSHMethodsPinOnFirstUse: tar and rsync over SSH pin the host key of
// their first backup in Options["host_key"], and then keep working with
// the pin; the content matches the source by digest.
func TestSSHMethodsPinOnFirstUse(t *testing.T) {
	testenv.Need(t, "tar", "rsync")
	sd := testenv.SSHD(t)
	dir := filepath.Join(sd.Dir, "data")
	fillTree(t, dir)
	want := treeDigests(t, dir)
	e := newEnv(t, Config{})
	for _, tc := range []struct {
		method string
		opts   map[string]string
	}{
		{"tar", nil},
		{"rsync", map[string]string{"transport": "ssh"}},
	} {
		t.Run(tc.method, func(t *testing.T) {
			name := "h-" + tc.method
			in := sftpSourceInput(t, sd, dir, tc.opts)
			in.Method = tc.method
			e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{in}}, nil)
			for i := range 2 {
				if j := e.waitJob(e.backup(name).ID); j.State != "done" {
					t.Fatalf("backup %d: %s: %s", i+1, j.State, j.Error)
				}
				var hb HostBody
				e.must("socket", "GET", "/api/v1/hosts/"+name, nil, &hb)
				k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hb.Sources[0].Options["host_key"]))
				if err != nil || ssh.FingerprintSHA256(k) != ssh.FingerprintSHA256(sd.HostKey) {
					t.Fatalf("after backup %d: host_key %q (%v)", i+1, hb.Sources[0].Options["host_key"], err)
				}
			}
			// The snapshot holds the source's files.
			to := filepath.Join(e.dir, "restores", tc.method)
			var rj JobBody
			e.must("socket", "POST", "/api/v1/restores", RestoreInput{Host: name, Snapshot: "latest", Source: "data", To: to}, &rj)
			if rj = e.waitJob(rj.ID); rj.State != "done" {
				t.Fatalf("restore: %s: %s", rj.State, rj.Error)
			}
			if got := treeDigests(t, to); !mapsEqual(got, want) {
				t.Fatalf("snapshot:\n got %v\nwant %v", got, want)
			}
		})
	}
}
