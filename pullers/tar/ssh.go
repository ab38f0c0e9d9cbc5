package tar

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/pullers"
)

// ErrHostKeyChanged: the server's host key differs from the pinned
// Options["host_key"]. It wraps pullers.ErrPermanent.
var ErrHostKeyChanged = fmt.Errorf("host key changed: %w", pullers.ErrPermanent)

// ErrAuth: the server refused the credentials. It wraps
// pullers.ErrPermanent.
var ErrAuth = fmt.Errorf("login refused: %w", pullers.ErrPermanent)

type target struct {
	addr    string
	user    string
	auth    []ssh.AuthMethod
	pinned  ssh.PublicKey
	timeout time.Duration
}

func parseTarget(host string, s *pullers.Source) (*target, error) {
	o := s.Options
	h := o["host"]
	if h == "" {
		h = host
	}
	if h == "" {
		return nil, errors.New("no host (Options[\"host\"])")
	}
	port := o["port"]
	if port == "" {
		port = "22"
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return nil, fmt.Errorf("bad port %q", port)
	}
	t := &target{addr: net.JoinHostPort(h, port), user: o["user"], timeout: 30 * time.Second}
	if t.user == "" {
		t.user = "root"
	}
	if v := o["timeout"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("bad timeout %q", v)
		}
		t.timeout = d
	}
	if k := strings.TrimSpace(o["host_key"]); k != "" {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
		if err != nil {
			return nil, fmt.Errorf("pinned host_key: %w", err)
		}
		t.pinned = pub
	}
	auth, err := pullers.SSHAuth(s.Secret["private_key"], s.Secret["passphrase"], s.Secret["password"], "private_key", "password")
	if err != nil {
		return nil, err
	}
	t.auth = auth
	return t, nil
}

// dial logs in. The connection is closed when ctx ends (stop undoes that).
func (p *Puller) dial(ctx context.Context, t *target) (*ssh.Client, func() bool, error) {
	var seen ssh.PublicKey
	var keyErr error
	cfg := &ssh.ClientConfig{
		User: t.user,
		Auth: t.auth,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			seen = key
			if t.pinned == nil {
				return nil // trust on first use: reported by SeenHostKey
			}
			if key.Type() == t.pinned.Type() && subtle.ConstantTimeCompare(key.Marshal(), t.pinned.Marshal()) == 1 {
				return nil
			}
			keyErr = fmt.Errorf("%w: the server presents %s %s, but %s %s is pinned",
				ErrHostKeyChanged, key.Type(), ssh.FingerprintSHA256(key), t.pinned.Type(), ssh.FingerprintSHA256(t.pinned))
			return keyErr
		},
		Timeout:       t.timeout,
		ClientVersion: "SSH-2.0-cairn",
	}
	if t.pinned != nil {
		cfg.HostKeyAlgorithms = []string{t.pinned.Type()}
		if t.pinned.Type() == ssh.KeyAlgoRSA {
			cfg.HostKeyAlgorithms = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		}
	}
	dial := p.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: t.timeout}
		dial = d.DialContext
	}
	raw, err := dial(ctx, "tcp", t.addr)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	_ = raw.SetDeadline(time.Now().Add(t.timeout))
	sc, chans, reqs, err := ssh.NewClientConn(raw, t.addr, cfg)
	if err != nil {
		stop()
		raw.Close()
		switch {
		case ctx.Err() != nil:
			return nil, nil, ctx.Err()
		case keyErr != nil:
			return nil, nil, keyErr
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, nil, fmt.Errorf("%w: user %q: %v", ErrAuth, t.user, err)
		}
		return nil, nil, fmt.Errorf("ssh handshake: %w", err)
	}
	_ = raw.SetDeadline(time.Time{})
	if seen != nil {
		if p.OnHostKey != nil {
			p.OnHostKey(seen)
		}
		if t.pinned == nil {
			p.mu.Lock()
			p.seen = seen
			p.mu.Unlock()
		}
	}
	return ssh.NewClient(sc, chans, reqs), stop, nil
}

// HostKeyString formats a key as Options["host_key"] wants it.
func HostKeyString(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
