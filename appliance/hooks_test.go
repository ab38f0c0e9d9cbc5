package appliance

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pullers"
	"golang.org/x/crypto/ssh"
)

// TestPrePostCommands runs pre- and post-commands over SSH against a real
// sshd: both run around a good pull; a failing pre-command fails the
// source without pulling, and the post-command still runs; an unknown
// host key is refused.
func TestPrePostCommands(t *testing.T) {
	srv := testenv.SSHD(t)
	resetFake(t)
	releaseFake()
	e := newEnv(t, Config{})
	key, err := os.ReadFile(srv.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	hostKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(srv.HostKey)))
	mark := t.TempDir()
	add := func(name, pre, post, hk string) {
		addr := srv.Host
		in := HostInput{Name: &name, Address: &addr, Sources: []SourceInput{{Name: "data", Method: fakeMethod, Path: "/x",
			Options: map[string]string{"pre": pre, "post": post, "ssh_port": strings.TrimPrefix(srv.Addr, srv.Host+":"),
				"ssh_user": srv.User, "ssh_host_key": hk},
			Secret: map[string]string{"ssh_key": string(key)}}}}
		e.must("socket", "POST", "/api/v1/hosts", in, nil)
	}
	add("good", "echo pre > "+mark+"/good-pre", "echo post > "+mark+"/good-post", hostKey)
	add("badpre", "echo flushing failed >&2; exit 3", "echo post > "+mark+"/badpre-post", hostKey)
	other, _, _, _, _ := ssh.ParseAuthorizedKey([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb5kq1JfY6SRT0kbAzyzVw0I9F4wHtJkXHgY5Ix5mJn x"))
	add("spoofed", "echo pre > "+mark+"/spoofed-pre", "", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other))))

	if j := e.waitJob(e.backup("good").ID); j.State != "done" {
		t.Fatalf("good: %+v", j)
	}
	for _, f := range []string{"good-pre", "good-post"} {
		if _, err := os.Stat(filepath.Join(mark, f)); err != nil {
			t.Errorf("%s did not run: %v", f, err)
		}
	}
	j := e.waitJob(e.backup("badpre").ID)
	if j.State != "failed" || !strings.Contains(j.Error, "pre command exited with status 3: flushing failed") {
		t.Fatalf("badpre: %s %q", j.State, j.Error)
	}
	if _, err := os.Stat(filepath.Join(mark, "badpre-post")); err != nil {
		t.Errorf("the post-command did not run after a failed pre-command: %v", err)
	}
	var snaps []SnapshotBody
	e.must("socket", "GET", "/api/v1/snapshots?host=badpre", nil, &snaps)
	if len(snaps) != 0 {
		t.Fatalf("a source was pulled despite its failed pre-command: %+v", snaps)
	}
	j = e.waitJob(e.backup("spoofed").ID)
	if j.State != "failed" || !strings.Contains(j.Error, "host key mismatch") {
		t.Fatalf("spoofed host key: %s %q", j.State, j.Error)
	}
	if !errors.Is(keepPermanent(permanent{errors.New("x")}, errors.New("y")), pullers.ErrPermanent) {
		t.Fatal("permanence lost")
	}
	if _, err := os.Stat(filepath.Join(mark, "spoofed-pre")); err == nil {
		t.Fatal("a command ran on a host with the wrong host key")
	}
	// Hooks without a host key or a credential are refused up front.
	name, addr := "nokey", "127.0.0.1"
	w := e.do("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Address: &addr, Sources: []SourceInput{{
		Name: "d", Method: fakeMethod, Path: "/x", Options: map[string]string{"pre": "true"}}}})
	if w.Code != 400 || !strings.Contains(w.Body.String(), "ssh_host_key") {
		t.Fatalf("hooks without a host key: %d %s", w.Code, w.Body)
	}
}
