package sftp

import (
	"context"
	"fmt"
	"strconv"

	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/pullers"
)

// Test is the connection test ("cairn host test"): it logs in (checking
// the pinned host key like Pull), lists the source's first path and
// reports the server's identity:
//
//	host_key              authorized_keys format, for Options["host_key"]
//	host_key_fingerprint  SHA256:…
//	server                the server's SSH version banner
//	path, entries         the path listed and how many names it holds
func (p *Puller) Test(ctx context.Context, s pullers.Source) (map[string]string, error) {
	t, err := parseTarget(s)
	if err != nil {
		return nil, err
	}
	roots, err := Paths(s)
	if err != nil {
		return nil, fmt.Errorf("sftp %s: %w", t.addr, err)
	}
	cn, err := p.dial(ctx, t)
	if err != nil {
		return nil, err
	}
	defer cn.Close()
	out := map[string]string{
		"host_key":             HostKeyString(cn.hostKy),
		"host_key_fingerprint": ssh.FingerprintSHA256(cn.hostKy),
		"server":               cn.server,
		"path":                 roots[0],
	}
	fis, err := cn.c.ReadDirContext(ctx, roots[0])
	if err != nil {
		return out, fmt.Errorf("sftp %s:%s: list: %w", t.addr, roots[0], err)
	}
	out["entries"] = strconv.Itoa(len(fis))
	return out, nil
}
