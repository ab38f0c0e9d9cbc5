package main

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// regularDigests keeps only the regular files of a treeDigest, by their
// content digest (modes differ between a restore and the source where
// the protocol does not carry them).
func regularDigests(all map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range all {
		if strings.HasPrefix(v, "file ") {
			f := strings.Fields(v)
			out[k] = f[len(f)-1]
		}
	}
	return out
}

// TestSFTPHostEndToEnd drives the real binary against a real sshd:
// serve, host add --method sftp with the client key, host test, backup
// run --wait, backup ls --json, a restore to a local directory and a
// restore --to-host, both checked file by file by sha256.
func TestSFTPHostEndToEnd(t *testing.T) {
	testenv.NeedRoot(t, "the unix socket grants admin to root (or the server's own uid); run as root")
	sd := testenv.SSHD(t)
	src := filepath.Join(sd.Dir, "srv")
	makeTree(t, src)
	want := regularDigests(treeDigest(t, src))
	data := filepath.Join(t.TempDir(), "data")
	startServe(t, data)

	out := mustCLI(t, data, "host", "add", "web1", "--method", "sftp", "--opt", "host="+sd.Host,
		"--opt", "port="+strconv.Itoa(sd.Port), "--opt", "user="+sd.User, "--secret-file", "private_key="+sd.KeyFile,
		"--path", src, "--source", "srv")
	if !strings.Contains(out, "added host web1 with source srv (sftp "+src+")") {
		t.Fatalf("host add said %q", out)
	}
	fp := ssh.FingerprintSHA256(sd.HostKey)
	out = mustCLI(t, data, "host", "test", "web1")
	if !strings.Contains(out, "source srv (sftp): ok") || !strings.Contains(out, fp) || !strings.Contains(out, "OpenSSH") {
		t.Fatalf("host test said %q (want ok and %s)", out, fp)
	}

	mustCLI(t, data, "backup", "run", "web1", "--wait")
	var snaps []e2eSnapshot
	if err := json.Unmarshal([]byte(mustCLI(t, data, "backup", "ls", "--json")), &snaps); err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 1 || snaps[0].Host != "web1" || snaps[0].Source != "srv" || snaps[0].Status != "complete" {
		t.Fatalf("backup ls --json = %+v", snaps)
	}
	// The first backup pinned the host key.
	out = mustCLI(t, data, "host", "test", "web1")
	if !strings.Contains(out, "pinned:") || !strings.Contains(out, "pinned:                "+fp) {
		t.Fatalf("host test after the first backup: %q", out)
	}

	local := filepath.Join(t.TempDir(), "restored")
	mustCLI(t, data, "restore", "web1/"+snaps[0].ID, "--to", local)
	if got := regularDigests(treeDigest(t, local)); !equalMaps(got, want) {
		t.Fatalf("local restore:\n got %v\nwant %v", got, want)
	}

	_, errOut, code := cairnCLI(t, data, "restore", "web1/latest/srv", "--to-host")
	if code != 0 {
		t.Fatalf("restore --to-host: exit %d: %s", code, errOut)
	}
	m, _ := filepath.Glob(filepath.Join(src, "cairn-restore-*"))
	if len(m) != 1 || !strings.Contains(errOut, m[0]) {
		t.Fatalf("restore --to-host made %v; it said %q", m, errOut)
	}
	if got := regularDigests(treeDigest(t, m[0])); !equalMaps(got, want) {
		t.Fatalf("restore on the host:\n got %v\nwant %v", got, want)
	}
	// A subdirectory, into a directory named on the command line.
	dest := filepath.Join(sd.Dir, "etc-back")
	mustCLI(t, data, "restore", "web1/latest/srv/etc", "--to-host", "--host-dir", dest)
	wantEtc := map[string]string{}
	for k, v := range want {
		if rest, ok := strings.CutPrefix(k, "etc/"); ok {
			wantEtc[rest] = v
		}
	}
	if got := regularDigests(treeDigest(t, dest)); !equalMaps(got, wantEtc) {
		t.Fatalf("restore of etc on the host:\n got %v\nwant %v", got, wantEtc)
	}
	if _, errOut, code := cairnCLI(t, data, "restore", "web1/latest/srv", "--to-host", "--to", "/tmp/x"); code == 0 || !strings.Contains(errOut, "either") {
		t.Fatalf("--to with --to-host: exit %d: %s", code, errOut)
	}
	// Accepting the key seen now (the same one) keeps it pinned.
	out = mustCLI(t, data, "host", "test", "web1", "--source", "srv", "--accept-new-key")
	if !strings.Contains(out, "source srv (sftp): ok") || !strings.Contains(out, "pinned:                "+fp) {
		t.Fatalf("host test --accept-new-key said %q", out)
	}
}

func equalMaps(a, b map[string]string) bool {
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
