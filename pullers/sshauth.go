package pullers

import (
	"fmt"

	"golang.org/x/crypto/ssh"
)

// SSHAuth builds the SSH auth methods from a source's credentials: a
// private key (optionally with a passphrase) and/or a password. keyName and
// passwordName name the Secret keys in errors. A bad key or no credential
// at all is a permanent error (a retry cannot fix it).
func SSHAuth(privateKey, passphrase, password, keyName, passwordName string) ([]ssh.AuthMethod, error) {
	var auth []ssh.AuthMethod
	if privateKey != "" {
		var signer ssh.Signer
		var err error
		if passphrase != "" {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(privateKey), []byte(passphrase))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(privateKey))
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %w", keyName, err, ErrPermanent)
		}
		auth = append(auth, ssh.PublicKeys(signer))
	}
	if password != "" {
		auth = append(auth, ssh.Password(password))
	}
	if len(auth) == 0 {
		return nil, fmt.Errorf("no credentials (Secret %q or %q): %w", keyName, passwordName, ErrPermanent)
	}
	return auth, nil
}
