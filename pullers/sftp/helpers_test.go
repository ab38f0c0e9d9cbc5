package sftp_test

import (
	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/internal/testenv"
)

func sshFingerprint(s *testenv.SSHServer) string { return ssh.FingerprintSHA256(s.HostKey) }
