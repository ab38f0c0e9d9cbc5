package dbdump

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/pullers"
)

// ErrHostKeyChanged: the SSH host key differs from the pinned
// Options["ssh_host_key"]. It wraps pullers.ErrPermanent.
var ErrHostKeyChanged = fmt.Errorf("ssh host key changed: %w", pullers.ErrPermanent)

// sshTarget is mode (b): the dump tools run on the host over SSH.
type sshTarget struct {
	addr    string
	user    string
	auth    []ssh.AuthMethod
	pinned  ssh.PublicKey
	timeout time.Duration
}

// parseSSH reads the ssh_* options; nil when Options["via"] is not "ssh".
func parseSSH(host string, src *pullers.Source) (*sshTarget, error) {
	o := src.Options
	switch o["via"] {
	case "", "local":
		return nil, nil
	case "ssh":
	default:
		return nil, fmt.Errorf("option via=%q: want local or ssh", o["via"])
	}
	h := o["ssh_host"]
	if h == "" {
		h = host
	}
	if h == "" {
		return nil, errors.New("no ssh_host")
	}
	port := o["ssh_port"]
	if port == "" {
		port = "22"
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return nil, fmt.Errorf("bad ssh_port %q", port)
	}
	t := &sshTarget{addr: net.JoinHostPort(h, port), user: o["ssh_user"], timeout: 30 * time.Second}
	if t.user == "" {
		t.user = "root"
	}
	if k := strings.TrimSpace(o["ssh_host_key"]); k != "" {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
		if err != nil {
			return nil, fmt.Errorf("ssh_host_key: %w", err)
		}
		t.pinned = pub
	}
	auth, err := pullers.SSHAuth(src.Secret["ssh_private_key"], src.Secret["ssh_passphrase"], src.Secret["ssh_password"], "ssh_private_key", "ssh_password")
	if err != nil {
		return nil, err
	}
	t.auth = auth
	return t, nil
}

// dialSSH logs in; the client is closed when ctx ends.
func (p *Puller) dialSSH(ctx context.Context, t *sshTarget) (*ssh.Client, error) {
	var keyErr error
	var seen ssh.PublicKey
	cfg := &ssh.ClientConfig{
		User: t.user, Auth: t.auth, Timeout: t.timeout, ClientVersion: "SSH-2.0-cairn",
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			seen = key
			if t.pinned == nil {
				return nil // trust on first use: SeenHostKey
			}
			if key.Type() == t.pinned.Type() && subtle.ConstantTimeCompare(key.Marshal(), t.pinned.Marshal()) == 1 {
				return nil
			}
			keyErr = fmt.Errorf("%w: the server presents %s, but %s is pinned", ErrHostKeyChanged,
				ssh.FingerprintSHA256(key), ssh.FingerprintSHA256(t.pinned))
			return keyErr
		},
	}
	dial := p.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: t.timeout}
		dial = d.DialContext
	}
	raw, err := dial(ctx, "tcp", t.addr)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", t.addr, err)
	}
	_ = raw.SetDeadline(time.Now().Add(t.timeout))
	sc, chans, reqs, err := ssh.NewClientConn(raw, t.addr, cfg)
	if err != nil {
		raw.Close()
		if keyErr != nil {
			return nil, fmt.Errorf("ssh %s: %w", t.addr, keyErr)
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("ssh %s: login as %s refused: %v: %w", t.addr, t.user, err, pullers.ErrPermanent)
		}
		return nil, fmt.Errorf("ssh %s: %w", t.addr, err)
	}
	_ = raw.SetDeadline(time.Time{})
	if t.pinned == nil && seen != nil {
		p.mu.Lock()
		p.seen = seen
		p.mu.Unlock()
	}
	client := ssh.NewClient(sc, chans, reqs)
	context.AfterFunc(ctx, func() { client.Close() })
	return client, nil
}

// SeenHostKey returns the SSH host key of the last mode-(b) login made
// without a pin (trust on first use), in authorized_keys format, or "".
// The appliance stores it as Options["ssh_host_key"].
func (p *Puller) SeenHostKey() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		return ""
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(p.seen)))
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// remoteWord quotes s for the remote shell, with the local credential
// file (and its directory) replaced by the remote one ("$d/cred", "$d").
func remoteWord(s, cred, dir string) string {
	var parts []string
	for i, piece := range strings.Split(s, cred) {
		if i > 0 {
			parts = append(parts, `"$d/cred"`)
		}
		for j, sub := range strings.Split(piece, dir) {
			if j > 0 {
				parts = append(parts, `"$d"`)
			}
			if sub != "" {
				parts = append(parts, shellQuote(sub))
			}
		}
	}
	if len(parts) == 0 {
		return "''"
	}
	return strings.Join(parts, "")
}

// remoteRunner runs specs on the host. The credential file is sent first
// on stdin (dd reads exactly its length into a 0600 file in a private
// mktemp dir that a trap removes), then spec.stdin follows for the tool.
func remoteRunner(client *ssh.Client, c *conn, binDir string) func(ctx context.Context, spec cmdSpec, out io.Writer, redact func(string) string) error {
	return func(ctx context.Context, spec cmdSpec, out io.Writer, redact func(string) string) error {
		cred, err := os.ReadFile(c.cred)
		if err != nil {
			return err
		}
		words := []string{"env"} // quoted VAR=value words are not assignments to a shell
		for _, kv := range spec.env {
			k, _, _ := strings.Cut(kv, "=")
			if k == "PATH" || k == "HOME" {
				continue // the host's own PATH finds its own tools
			}
			words = append(words, remoteWord(kv, c.cred, c.dir))
		}
		tool := path.Base(spec.path)
		if binDir != "" {
			tool = path.Join(binDir, tool)
		}
		prelude := ""
		if spec.blockOut {
			// The host's stdbuf, when it has a working one (see stdbufOut).
			prelude = fmt.Sprintf(`o=; stdbuf %[1]s true 2>/dev/null && o='stdbuf %[1]s'; `, stdbufOut)
			words = append(words, "$o")
		}
		words = append(words, shellQuote(tool))
		for _, a := range spec.args {
			words = append(words, remoteWord(a, c.cred, c.dir))
		}
		script := fmt.Sprintf(`umask 077; d=$(mktemp -d) || exit 125; trap 'rm -rf "$d"' EXIT; `+
			`dd bs=1 count=%d of="$d/cred" 2>/dev/null || exit 125; %s%s`, len(cred), prelude, strings.Join(words, " "))
		sess, err := client.NewSession()
		if err != nil {
			return fmt.Errorf("ssh session: %w", ctxErr(ctx, err))
		}
		defer sess.Close()
		tail := &tailBuffer{max: 4 << 10}
		var in io.Reader = bytes.NewReader(cred)
		if spec.stdin != nil {
			in = io.MultiReader(in, spec.stdin)
		}
		sess.Stdin, sess.Stdout, sess.Stderr = in, out, tail
		err = sess.Run(script)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			msg := strings.TrimSpace(tail.String())
			return fmt.Errorf("%s on the host: %v: %s", tool, err, redact(msg))
		}
		return nil
	}
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
