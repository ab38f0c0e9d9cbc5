package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestShownMasksSecrets: command lines that go into logs, errors and the
// report carry no inline password.
func TestShownMasksSecrets(t *testing.T) {
	cmd := exec.Command("benchdrv", "pull", "--opt", "user=root", "--secret", "password=hunter2hunter2", "--secret", "private_key=@/k/id",
		"--opt", "module=mod")
	got := shown(cmd)
	if strings.Contains(got, "hunter2") || !strings.Contains(got, "--secret password=*** --secret private_key=@/k/id --opt module=mod") {
		t.Errorf("shown = %q", got)
	}
	cmd = exec.Command("smbclient", "//127.0.0.1/share", "-p", "445", "-U", "root%s3cretpass", "-c", "mget *")
	if got := shown(cmd); strings.Contains(got, "s3cretpass") || !strings.Contains(got, "-U root%*** -c mget *") {
		t.Errorf("shown = %q", got)
	}
}
