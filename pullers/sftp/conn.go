package sftp

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/pullers"
)

// ErrHostKeyChanged is returned when the server's host key differs from
// the pinned Options["host_key"]. It wraps pullers.ErrPermanent: nothing
// is retried until an admin accepts the new key.
var ErrHostKeyChanged = fmt.Errorf("host key changed: %w", pullers.ErrPermanent)

// ErrAuth is returned when the server refuses the credentials. It wraps
// pullers.ErrPermanent.
var ErrAuth = fmt.Errorf("login refused: %w", pullers.ErrPermanent)

// target is a parsed Source: where and how to log in.
type target struct {
	addr    string
	user    string
	auth    []ssh.AuthMethod
	methods string // for messages: "password", "key"
	pinned  ssh.PublicKey
	timeout time.Duration
}

func (t *target) String() string { return t.addr }

// parseTarget reads Options host, port, user, host_key, timeout and
// Secret password, private_key, passphrase.
func parseTarget(s pullers.Source) (*target, error) {
	o := s.Options
	host := o["host"]
	if host == "" {
		return nil, errors.New("sftp: no host (Options[\"host\"])")
	}
	port := o["port"]
	if port == "" {
		port = "22"
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return nil, fmt.Errorf("sftp %s: bad port %q", host, port)
	}
	t := &target{addr: net.JoinHostPort(host, port), user: o["user"], timeout: 30 * time.Second}
	if t.user == "" {
		return nil, fmt.Errorf("sftp %s: no user (Options[\"user\"])", t.addr)
	}
	if v := o["timeout"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("sftp %s: bad timeout %q", t.addr, v)
		}
		t.timeout = d
	}
	if k := strings.TrimSpace(o["host_key"]); k != "" {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
		if err != nil {
			return nil, fmt.Errorf("sftp %s: pinned host_key: %w", t.addr, err)
		}
		t.pinned = pub
	}
	var names []string
	if pk := s.Secret["private_key"]; pk != "" {
		var signer ssh.Signer
		var err error
		if pp := s.Secret["passphrase"]; pp != "" {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(pk), []byte(pp))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(pk))
		}
		if err != nil {
			return nil, fmt.Errorf("sftp %s: private_key: %w: %w", t.addr, err, pullers.ErrPermanent)
		}
		t.auth = append(t.auth, ssh.PublicKeys(signer))
		names = append(names, "key "+ssh.FingerprintSHA256(signer.PublicKey()))
	}
	if pw := s.Secret["password"]; pw != "" {
		t.auth = append(t.auth, ssh.Password(pw), ssh.KeyboardInteractive(
			func(_, _ string, qs []string, _ []bool) ([]string, error) {
				a := make([]string, len(qs))
				for i := range a {
					a[i] = pw
				}
				return a, nil
			}))
		names = append(names, "password")
	}
	if len(t.auth) == 0 {
		return nil, fmt.Errorf("sftp %s: no credentials (Secret \"password\" or \"private_key\"): %w", t.addr, pullers.ErrPermanent)
	}
	t.methods = strings.Join(names, ", ")
	return t, nil
}

// conn is one SSH connection with its SFTP session.
type conn struct {
	ssh    *ssh.Client
	c      *sftp.Client
	in     *listMeter
	stop   func() bool // stops the ctx watcher
	hostKy ssh.PublicKey
	server string // server version banner
	once   sync.Once
}

// Close ends the session; it may be called more than once.
func (c *conn) Close() {
	c.once.Do(func() {
		c.stop()
		c.c.Close()
		c.ssh.Close()
	})
}

// alive reports whether the session still answers.
func (c *conn) alive() bool {
	_, err := c.c.Getwd()
	return err == nil
}

// listMeter watches the SFTP packets the server sends and meters the
// listing replies (SSH_FXP_NAME): while armed, it counts their bytes and
// names and cancels the listing once it goes over its budget. File data
// (SSH_FXP_DATA) read at the same time by other requests is not counted.
// The packet framing is parsed on the side; pkg/sftp does the real
// decoding.
type listMeter struct {
	r io.Reader

	// Parser state, used by the one goroutine that reads the session.
	hdr  [13]byte // length, type, id, count
	hn   int      // header bytes collected
	left int64    // body bytes of the current packet still to pass

	mu       sync.Mutex
	bytes    int64
	names    int64
	maxBytes int64
	maxNames int64
	cancel   func()
	over     string // "bytes" or "names": which budget was exceeded
}

const fxpName = 104 // SSH_FXP_NAME

func (m *listMeter) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	m.scan(p[:n])
	return n, err
}

// want is how many header bytes the current packet has: 4 (length), the
// type, and for a NAME reply the id and the count of names.
func (m *listMeter) want() int {
	w := 5
	if m.hn >= 5 && m.hdr[4] == fxpName {
		w = 13
	}
	if m.hn >= 4 {
		w = int(min(int64(w), 4+int64(binary.BigEndian.Uint32(m.hdr[:4]))))
	}
	return w
}

func (m *listMeter) scan(p []byte) {
	for len(p) > 0 {
		if m.left > 0 {
			k := min(int64(len(p)), m.left)
			m.left -= k
			p = p[k:]
			continue
		}
		k := copy(m.hdr[m.hn:m.want()], p)
		m.hn += k
		p = p[k:]
		if m.hn < m.want() {
			continue
		}
		length := int64(binary.BigEndian.Uint32(m.hdr[:4]))
		if m.hn >= 5 && m.hdr[4] == fxpName {
			var count int64
			if m.hn >= 13 {
				count = int64(binary.BigEndian.Uint32(m.hdr[9:13]))
			}
			m.note(4+length, count)
		}
		m.left = 4 + length - int64(m.hn)
		m.hn = 0
	}
}

func (m *listMeter) note(bytes, names int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cancel == nil {
		return
	}
	// A reply arriving when a budget is already spent cancels the
	// listing (and is lost with it); the one that goes over is still
	// read, so the listing keeps every name up to the budget.
	switch {
	case m.bytes > m.maxBytes:
		m.over = "bytes"
	case m.names >= m.maxNames:
		m.over = "names"
	default:
		m.bytes += bytes
		m.names += names
		return
	}
	m.cancel()
	m.cancel = nil
}

// arm calls cancel once the listing replies from now on exceed maxBytes
// bytes or maxNames names.
func (m *listMeter) arm(maxBytes, maxNames int64, cancel func()) {
	m.mu.Lock()
	m.bytes, m.names, m.maxBytes, m.maxNames, m.cancel, m.over = 0, 0, maxBytes, maxNames, cancel, ""
	m.mu.Unlock()
}

// disarm ends the metering and says which budget was exceeded, if any.
func (m *listMeter) disarm() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cancel = nil
	return m.over
}

// HostKeyString formats a key in authorized_keys format, as
// Options["host_key"] wants it.
func HostKeyString(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func keyAlgorithms(k ssh.PublicKey) []string {
	if k.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{k.Type()}
}

// dial logs in and starts the sftp subsystem. The connection is closed
// when ctx ends.
func (p *Puller) dial(ctx context.Context, t *target) (*conn, error) {
	var seen ssh.PublicKey
	var keyErr error
	cfg := &ssh.ClientConfig{
		User: t.user,
		Auth: t.auth,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			seen = key
			if t.pinned == nil {
				return nil // trust on first use: reported through SeenHostKey
			}
			if key.Type() == t.pinned.Type() && subtle.ConstantTimeCompare(key.Marshal(), t.pinned.Marshal()) == 1 {
				return nil
			}
			keyErr = fmt.Errorf("sftp %s: %w: the server presents %s %s, but %s %s is pinned; if the host was reinstalled, accept the new key",
				t.addr, ErrHostKeyChanged, key.Type(), ssh.FingerprintSHA256(key), t.pinned.Type(), ssh.FingerprintSHA256(t.pinned))
			return keyErr
		},
		Timeout:       t.timeout,
		ClientVersion: "SSH-2.0-cairn",
	}
	if t.pinned != nil {
		cfg.HostKeyAlgorithms = keyAlgorithms(t.pinned)
	}
	dialer := p.Dial
	if dialer == nil {
		d := &net.Dialer{Timeout: t.timeout}
		dialer = d.DialContext
	}
	raw, err := dialer(ctx, "tcp", t.addr)
	if err != nil {
		return nil, fmt.Errorf("sftp %s: connect: %w", t.addr, err)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	fail := func(err error) (*conn, error) {
		stop()
		raw.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sftp %s: %w", t.addr, ctx.Err())
		}
		return nil, err
	}
	_ = raw.SetDeadline(time.Now().Add(t.timeout))
	sc, chans, reqs, err := ssh.NewClientConn(raw, t.addr, cfg)
	if err != nil {
		switch {
		case keyErr != nil:
			return fail(keyErr)
		case strings.Contains(err.Error(), "unable to authenticate"):
			return fail(fmt.Errorf("sftp %s: %w: user %q with %s: %v", t.addr, ErrAuth, t.user, t.methods, err))
		}
		return fail(fmt.Errorf("sftp %s: ssh handshake: %w", t.addr, err))
	}
	_ = raw.SetDeadline(time.Time{})
	client := ssh.NewClient(sc, chans, reqs)
	p.noteHostKey(seen)

	sess, err := client.NewSession()
	if err != nil {
		client.Close()
		return fail(fmt.Errorf("sftp %s: open session: %w", t.addr, err))
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		client.Close()
		return fail(fmt.Errorf("sftp %s: start the sftp subsystem: %w", t.addr, err))
	}
	wr, err := sess.StdinPipe()
	if err != nil {
		client.Close()
		return fail(fmt.Errorf("sftp %s: %w", t.addr, err))
	}
	rd, err := sess.StdoutPipe()
	if err != nil {
		client.Close()
		return fail(fmt.Errorf("sftp %s: %w", t.addr, err))
	}
	in := &listMeter{r: rd}
	c, err := sftp.NewClientPipe(in, wr,
		sftp.UseConcurrentReads(true),
		sftp.UseFstat(true),
		sftp.MaxConcurrentRequestsPerFile(64),
	)
	if err != nil {
		client.Close()
		return fail(fmt.Errorf("sftp %s: sftp handshake: %w", t.addr, err))
	}
	return &conn{ssh: client, c: c, in: in, stop: stop, hostKy: seen, server: string(sc.ServerVersion())}, nil
}

func (p *Puller) noteHostKey(k ssh.PublicKey) {
	if k == nil {
		return
	}
	p.mu.Lock()
	p.seen = k
	cb := p.OnHostKey
	p.mu.Unlock()
	if cb != nil {
		cb(k)
	}
}
