package testenv

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// Password auth for the test sshd, without touching root's password.
//
// With UsePAM no, sshd checks passwords against /etc/shadow, and root's
// password is not ours to set. With UsePAM yes, OpenSSH uses its program
// name (argv[0]'s base name) as the PAM service. So SSHD runs sshd through a
// symlink named cairn-testenv-sshd, and /etc/pam.d/cairn-testenv-sshd lets
// pam_exec run a small script that accepts a password whose sha256 is
// registered for the user in /run/cairn-testenv-sshpw (0700 root), one file
// per running test sshd, removed in its cleanup. Nothing else uses that PAM
// service. If any part cannot be set up, password auth stays off and
// SSHServer.Password is empty.
const (
	sshPAMService = "cairn-testenv-sshd"
	sshPAMFile    = "/etc/pam.d/" + sshPAMService
	sshPWDir      = "/run/cairn-testenv-sshpw"
	sshPWCheck    = "/etc/cairn-testenv/sshd-pwcheck"
)

var sshPAMConf = `# Written by cairn's internal/testenv. Used only by its test sshd, which
# runs as "` + sshPAMService + `"; accepts passwords registered in ` + sshPWDir + `.
auth     required pam_exec.so quiet expose_authtok ` + sshPWCheck + `
account  required pam_permit.so
session  required pam_permit.so
password required pam_deny.so
`

var sshPWCheckScript = `#!/bin/sh
# Written by cairn's internal/testenv (see ` + sshPAMFile + `).
# stdin: the password (pam_exec expose_authtok, NUL-terminated).
h=$(tr -d '\000' | sha256sum | cut -d' ' -f1)
case "$PAM_USER" in ""|*/*|.*) exit 1 ;; esac
[ -f "` + sshPWDir + `/$PAM_USER.$h" ]
`

type sshPasswordSetup struct {
	password string
	usePAM   string // "yes" or "no"
	argv0    string // the symlink to run sshd through, or ""
}

func sshPassword(t testing.TB, dir string) sshPasswordSetup {
	t.Helper()
	off := sshPasswordSetup{usePAM: "no"}
	if !pamExecAvailable() {
		t.Logf("testenv: sshd: pam_exec.so not found; password auth off")
		return off
	}
	if err := ensureFile(sshPWCheck, sshPWCheckScript, 0o755); err != nil {
		t.Logf("testenv: sshd: %v; password auth off", err)
		return off
	}
	if err := ensureFile(sshPAMFile, sshPAMConf, 0o644); err != nil {
		t.Logf("testenv: sshd: %v; password auth off", err)
		return off
	}
	if err := os.MkdirAll(sshPWDir, 0o700); err != nil {
		t.Logf("testenv: sshd: %v; password auth off", err)
		return off
	}
	link := filepath.Join(dir, sshPAMService)
	if err := os.Symlink(findBin("sshd"), link); err != nil {
		t.Logf("testenv: sshd: %v; password auth off", err)
		return off
	}
	pw := randomSecret(12)
	sum := sha256.Sum256([]byte(pw))
	reg := filepath.Join(sshPWDir, "root."+hex.EncodeToString(sum[:]))
	if err := os.WriteFile(reg, nil, 0o600); err != nil {
		t.Logf("testenv: sshd: %v; password auth off", err)
		return off
	}
	t.Cleanup(func() { _ = os.Remove(reg) })
	return sshPasswordSetup{password: pw, usePAM: "yes", argv0: link}
}

func pamExecAvailable() bool {
	for _, p := range []string{
		"/lib/x86_64-linux-gnu/security/pam_exec.so", "/usr/lib/x86_64-linux-gnu/security/pam_exec.so",
		"/lib/aarch64-linux-gnu/security/pam_exec.so", "/usr/lib/aarch64-linux-gnu/security/pam_exec.so",
		"/lib/security/pam_exec.so", "/usr/lib/security/pam_exec.so",
	} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// ensureFile writes content to path (atomically, via rename) unless the
// file already has exactly that content and mode.
func ensureFile(path, content string, mode os.FileMode) error {
	if b, err := os.ReadFile(path); err == nil && bytes.Equal(b, []byte(content)) {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm() == mode {
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cairn-testenv-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
