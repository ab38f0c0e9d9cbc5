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

// listMeter watches the SFTP packets of a session in both directions and
// meters the replies (SSH_FXP_NAME) to the READDIRs of each armed
// listing: it counts their bytes and names and cancels that listing once
// it goes over its budget. Several listings may be armed at once: a
// listing is known by the path its OPENDIR names, its handle by the
// HANDLE reply to that OPENDIR, its READDIRs by that handle, and their
// replies by request id. File data (SSH_FXP_DATA) and the replies to
// other requests are not counted. The framing is parsed on the side;
// pkg/sftp does the real encoding and decoding.
type listMeter struct {
	r  io.Reader
	w  io.WriteCloser
	rf framer // replies, parsed by the one goroutine that reads the session
	wf framer // requests, parsed under pkg/sftp's write lock, before they are sent

	mu      sync.Mutex
	byPath  map[string]*metered
	opens   map[uint32]*metered // OPENDIR id
	handles map[string]*metered
	reads   map[uint32]*metered // READDIR id
}

// metered is one armed listing.
type metered struct {
	path     string
	bytes    int64
	names    int64
	maxBytes int64
	maxNames int64
	cancel   func()
	over     string // "bytes" or "names": which budget was exceeded
	handle   string
	ids      []uint32 // its OPENDIR and READDIRs waiting for a reply
}

// SFTP packet types ([draft-ietf-secsh-filexfer-02]).
const (
	fxpClose   = 4
	fxpOpendir = 11
	fxpReaddir = 12
	fxpStatus  = 101
	fxpHandle  = 102
	fxpName    = 104
)

// maxHandle is the longest handle SFTP allows (256 bytes); maxMeterPath
// the longest OPENDIR path matched to an armed listing.
const (
	maxHandle    = 256
	maxMeterPath = 256 << 10
)

func newListMeter(r io.Reader, w io.WriteCloser) *listMeter {
	m := &listMeter{r: r, w: w, byPath: map[string]*metered{}, opens: map[uint32]*metered{},
		handles: map[string]*metered{}, reads: map[uint32]*metered{}}
	m.rf.want = func(typ byte) int {
		switch typ {
		case fxpHandle:
			return maxHandle + 1 // one more: to see a handle that is too long
		case fxpName, fxpStatus:
			return 0
		}
		return -1
	}
	m.rf.got = m.reply
	m.wf.want = func(typ byte) int {
		switch typ {
		case fxpOpendir:
			return maxMeterPath
		case fxpReaddir, fxpClose:
			return maxHandle
		}
		return -1
	}
	m.wf.got = m.request
	return m
}

func (m *listMeter) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	m.rf.scan(p[:n])
	return n, err
}

func (m *listMeter) Write(p []byte) (int, error) {
	m.wf.scan(p) // before the server can answer
	return m.w.Write(p)
}

func (m *listMeter) Close() error { return m.w.Close() }

// request notes an OPENDIR of an armed path, or a READDIR or CLOSE of an
// armed listing's handle.
func (m *listMeter) request(typ byte, id uint32, _ int64, str []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch typ {
	case fxpOpendir:
		if l := m.byPath[string(str)]; l != nil && l.cancel != nil {
			m.opens[id] = l
			l.ids = append(l.ids, id)
		}
	case fxpReaddir:
		if l := m.handles[string(str)]; l != nil {
			m.reads[id] = l
			l.ids = append(l.ids, id)
		}
	case fxpClose:
		delete(m.handles, string(str))
	}
}

// reply meters a NAME reply to a metered READDIR and learns the handle
// of a metered OPENDIR.
func (m *listMeter) reply(typ byte, id uint32, length int64, str []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch typ {
	case fxpHandle:
		l := m.opens[id]
		if l == nil {
			return
		}
		delete(m.opens, id)
		if len(str) > maxHandle {
			l.overLocked("bytes") // no valid handle: nothing to meter the listing by
			return
		}
		l.handle = string(str)
		m.handles[l.handle] = l
	case fxpStatus:
		delete(m.opens, id)
		delete(m.reads, id)
	case fxpName:
		l := m.reads[id]
		if l == nil {
			return
		}
		delete(m.reads, id)
		var count int64
		if len(str) >= 4 {
			count = int64(binary.BigEndian.Uint32(str[:4]))
		}
		l.noteLocked(4+length, count)
	}
}

func (l *metered) noteLocked(bytes, names int64) {
	if l.cancel == nil {
		return
	}
	// A reply arriving when a budget is already spent cancels the
	// listing (and is lost with it); the one that goes over is still
	// read, so the listing keeps every name up to the budget.
	switch {
	case l.bytes > l.maxBytes:
		l.overLocked("bytes")
	case l.names >= l.maxNames:
		l.overLocked("names")
	default:
		l.bytes += bytes
		l.names += names
	}
}

func (l *metered) overLocked(what string) {
	if l.cancel == nil {
		return
	}
	l.over = what
	l.cancel()
	l.cancel = nil
}

// arm meters the listing of path (as given to ReadDir): cancel is called
// once its replies from now on exceed maxBytes bytes or maxNames names.
// One path is armed at most once at a time.
func (m *listMeter) arm(path string, maxBytes, maxNames int64, cancel func()) *metered {
	l := &metered{path: path, maxBytes: maxBytes, maxNames: maxNames, cancel: cancel}
	if len(path) > maxMeterPath {
		l.over = "bytes" // never seen whole: not listed
		cancel()
		l.cancel = nil
		return l
	}
	m.mu.Lock()
	m.byPath[path] = l
	m.mu.Unlock()
	return l
}

// disarm ends the metering of l and says which budget was exceeded, if
// any.
func (m *listMeter) disarm(l *metered) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byPath[l.path] == l {
		delete(m.byPath, l.path)
	}
	for _, id := range l.ids {
		if m.opens[id] == l {
			delete(m.opens, id)
		}
		if m.reads[id] == l {
			delete(m.reads, id)
		}
	}
	if l.handle != "" && m.handles[l.handle] == l {
		delete(m.handles, l.handle)
	}
	l.cancel = nil
	return l.over
}

// framer splits a stream of SFTP packets (uint32 length, byte type,
// uint32 id, ...) and hands got each packet's type, id, length and, for
// the types want names, the first string after the id (at most
// want(type) bytes of it; 0: the raw uint32 after the id instead, for
// NAME's count). It keeps no more than that of any packet.
type framer struct {
	want func(typ byte) int // < 0: only the type
	got  func(typ byte, id uint32, length int64, str []byte)

	hdr  []byte
	left int64 // body bytes of the current packet still to pass
}

// need is how many bytes of the current packet to collect, given hdr.
func (f *framer) need() int {
	n := 5
	if len(f.hdr) >= 5 {
		switch w := f.want(f.hdr[4]); {
		case w < 0:
		case len(f.hdr) < 13 || w == 0:
			n = 13 // id and the string's length (or NAME's count)
		default:
			n = 13 + int(min(int64(binary.BigEndian.Uint32(f.hdr[9:13])), int64(w)))
		}
	}
	if len(f.hdr) >= 4 {
		n = int(min(int64(n), 4+int64(binary.BigEndian.Uint32(f.hdr[:4]))))
	}
	return n
}

func (f *framer) scan(p []byte) {
	for len(p) > 0 {
		if f.left > 0 {
			k := min(int64(len(p)), f.left)
			f.left -= k
			p = p[k:]
			continue
		}
		for len(p) > 0 && len(f.hdr) < f.need() {
			k := min(len(p), f.need()-len(f.hdr))
			f.hdr = append(f.hdr, p[:k]...)
			p = p[k:]
		}
		if len(f.hdr) < f.need() {
			return
		}
		length := int64(binary.BigEndian.Uint32(f.hdr[:4]))
		if len(f.hdr) >= 9 {
			var str []byte
			if len(f.hdr) >= 13 {
				str = f.hdr[9:]
				if w := f.want(f.hdr[4]); w > 0 {
					str = f.hdr[13:]
				}
			}
			f.got(f.hdr[4], binary.BigEndian.Uint32(f.hdr[5:9]), length, str)
		}
		f.left = 4 + length - int64(len(f.hdr))
		f.hdr = f.hdr[:0]
	}
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
	in := newListMeter(rd, wr)
	c, err := sftp.NewClientPipe(in, in,
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
