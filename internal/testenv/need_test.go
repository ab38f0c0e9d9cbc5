package testenv

import "testing"

// TestNeedMessageNamesPackage checks that Need's message for a missing
// binary names its Debian package, including node (package nodejs), whose
// name differs from the binary's, and says so for an unknown binary.
func TestNeedMessageNamesPackage(t *testing.T) {
	for bin, want := range map[string]string{
		"node":              "testenv: binary node not found (Debian package nodejs; run `make deps`)",
		"chromium":          "testenv: binary chromium not found (Debian package chromium; run `make deps`)",
		"/usr/sbin/sshd":    "testenv: binary /usr/sbin/sshd not found (Debian package openssh-server; run `make deps`)",
		"no-such-binary-xy": "testenv: binary no-such-binary-xy not found (Debian package unknown package; run `make deps`)",
	} {
		if got := missingMessage(bin); got != want {
			t.Errorf("missingMessage(%q) = %q, want %q", bin, got, want)
		}
	}
}

// TestNeedInstalled checks that Need passes for installed binaries, found in
// PATH and in the sbin dirs.
func TestNeedInstalled(t *testing.T) {
	Need(t, "sh", "sleep")
	if findBin("sh") == "" {
		t.Fatal("findBin(sh) is empty although Need passed")
	}
}
