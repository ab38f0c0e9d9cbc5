package appliance

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairn-backup/cairn/pullers/rsync"
	"github.com/cairn-backup/cairn/pullers/sftp"
	"github.com/cairn-backup/cairn/pullers/tar"
	"golang.org/x/crypto/ssh"
)

// SSHKeyName is the appliance's own SSH private key in the data dir
// (ed25519, OpenSSH format, mode 0600); its public half is next to it with
// ".pub". Hosts onboarded with `cairn host onboard` trust this key.
const SSHKeyName = "ssh_ed25519_key"

// initSSHKey creates the appliance's SSH key pair in dir on first start,
// and checks that an existing one parses.
func initSSHKey(dir string) error {
	p := filepath.Join(dir, SSHKeyName)
	if _, err := readSSHKey(p); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("appliance ssh key: %w", err)
	}
	host, _ := os.Hostname()
	block, err := ssh.MarshalPrivateKey(priv, "cairn@"+host)
	if err != nil {
		return fmt.Errorf("appliance ssh key: %w", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return fmt.Errorf("appliance ssh key: %w", err)
	}
	// Write to a temporary name first, so a crash never leaves half a key.
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
		return fmt.Errorf("appliance ssh key %s: %w", tmp, err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " cairn@" + host + "\n"
	if err := os.WriteFile(p+".pub", []byte(line), 0o644); err != nil {
		return fmt.Errorf("appliance ssh key %s.pub: %w", p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("appliance ssh key %s: %w", p, err)
	}
	return nil
}

// readSSHKey reads and parses the private key at p, refusing one that
// others may read.
func readSSHKey(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("appliance ssh key %s: mode %o, want 0600", p, fi.Mode().Perm())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if _, err := ssh.ParsePrivateKey(b); err != nil {
		return nil, fmt.Errorf("appliance ssh key %s: %w", p, err)
	}
	return b, nil
}

// applianceKey returns the appliance's SSH private key (PEM) and its
// public key.
func (s *Server) applianceKey() ([]byte, ssh.PublicKey, error) {
	b, err := readSSHKey(filepath.Join(s.dataDir, SSHKeyName))
	if err != nil {
		return nil, nil, fmt.Errorf("appliance ssh key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, nil, err
	}
	return b, signer.PublicKey(), nil
}

// usesSSH says whether a source with these (effective) options logs in
// over SSH, and so may use the appliance's own key.
func usesSSH(method string, opts map[string]string) bool {
	switch method {
	case sftp.Method, tar.Method, MethodImageSSH, MethodImageSFTP:
		return true
	case rsync.Method, MethodImageRsync:
		return opts["transport"] == "ssh"
	}
	return false
}

// withApplianceKey gives an SSH source with no credential of its own
// (neither private_key nor password) the appliance's key. It changes
// secret in place.
func (s *Server) withApplianceKey(method string, opts, secret map[string]string) error {
	if !usesSSH(method, opts) || secret["private_key"] != "" || secret["password"] != "" {
		return nil
	}
	b, _, err := s.applianceKey()
	if err != nil {
		return err
	}
	secret["private_key"] = string(b)
	return nil
}

func marshalAuthorizedKey(k ssh.PublicKey) []byte { return ssh.MarshalAuthorizedKey(k) }
