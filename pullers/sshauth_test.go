package pullers_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/pullers"
	"golang.org/x/crypto/ssh"
)

func TestSSHAuth(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	key := string(pem.EncodeToMemory(block))

	if auth, err := pullers.SSHAuth(key, "", "pw", "private_key", "password"); err != nil || len(auth) != 2 {
		t.Fatalf("key + password: %d methods, %v", len(auth), err)
	}
	_, err = pullers.SSHAuth("not a key", "", "", "ssh_private_key", "ssh_password")
	if !errors.Is(err, pullers.ErrPermanent) || !strings.Contains(err.Error(), "ssh_private_key") {
		t.Fatalf("bad key: %v, want a permanent error naming ssh_private_key", err)
	}
	_, err = pullers.SSHAuth("", "", "", "private_key", "password")
	if !errors.Is(err, pullers.ErrPermanent) || !strings.Contains(err.Error(), `"password"`) {
		t.Fatalf("no credentials: %v", err)
	}
}
