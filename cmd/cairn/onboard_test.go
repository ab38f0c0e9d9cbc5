package main

import (
	"encoding/json"
	"github.com/cairn-backup/cairn/internal/testenv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostOnboardCLI prints the onboarding snippet through the real
// binary and serve.
func TestHostOnboardCLI(t *testing.T) {
	testenv.NeedRoot(t, "the unix socket grants admin to root (or the server's own uid); run as root")
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	startServe(t, data)
	mustCLI(t, data, "host", "add", "web1", "--method", "local", "--path", tmp)
	out := mustCLI(t, data, "host", "onboard", "web1", "--from", "192.0.2.9", "--create-user", "--rsync", "--path", "/srv/www")
	pub, err := os.ReadFile(filepath.Join(data, "ssh_ed25519_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	key := strings.Join(strings.Fields(string(pub))[:2], " ")
	for _, want := range []string{"#!/bin/sh", "useradd", `from="192.0.2.9"`, `command="rrsync -ro /srv/www"`, "no-pty", key} {
		if !strings.Contains(out, want) {
			t.Errorf("snippet lacks %q:\n%s", want, out)
		}
	}
	var b struct {
		User, From string
		KeyLine    string `json:"key_line"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, data, "host", "onboard", "web1", "--from", "192.0.2.9", "--user", "bk", "--json")), &b); err != nil {
		t.Fatal(err)
	}
	if b.User != "bk" || b.From != "192.0.2.9" || strings.Contains(b.KeyLine, "rrsync") || !strings.Contains(b.KeyLine, key) {
		t.Errorf("--json: %+v", b)
	}
	if _, errOut, code := cairnCLI(t, data, "host", "onboard", "web1", "--from", "192.0.2.9", "--user", "bad;user"); code == 0 || !strings.Contains(errOut, "bad user name") {
		t.Errorf("bad user: exit %d, stderr %q", code, errOut)
	}
}
