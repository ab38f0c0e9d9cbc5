package rsync

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	//lint:ignore SA1019 rsync protocol 27 mandates MD4 block and file checksums
	"golang.org/x/crypto/md4"
	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/pullers"
)

// ErrAuth is returned when the daemon or sshd refuses the credentials. It
// wraps pullers.ErrPermanent.
var ErrAuth = fmt.Errorf("login refused: %w", pullers.ErrPermanent)

// ErrHostKeyChanged: the SSH host key differs from Options["host_key"].
var ErrHostKeyChanged = fmt.Errorf("host key changed: %w", pullers.ErrPermanent)

// Protocol versions: the newest this receiver speaks, and the one it
// falls back to with a sender older than protocol 30 (rsync before 3.0).
const (
	protocol    = 31
	protocolOld = 27
)

// errNeed30: xattrs or ACLs asked for, but the pull speaks an older
// protocol (the peer's, or the cap Puller.Protocol).
func errNeed30(proto, remote int) error {
	return fmt.Errorf("xattrs and ACLs need protocol 30 or newer (rsync 3.0+); this pull speaks %d (the peer offers %d): %w", proto, remote, pullers.ErrPermanent)
}

// pickProtocol is the protocol to use with a peer that speaks remote (at
// most max): 30 or 31 when the peer has them, else 27.
func pickProtocol(remote, max int) int {
	if max <= 0 || max > protocol {
		max = protocol
	}
	v := min(remote, max)
	if v < 30 {
		return protocolOld
	}
	return v
}

// target is a parsed Source.
type target struct {
	ssh      bool
	host     string
	addr     string
	module   string
	path     string // daemon: path inside the module; ssh: remote path
	user     string
	password string
	sshAuth  []ssh.AuthMethod
	pinned   ssh.PublicKey
	rsyncBin string
	oneFS    bool
	numeric  bool
	xattrs   bool // -X
	acls     bool // -A
	full     bool
	timeout  time.Duration
	idle     time.Duration
}

func (t *target) String() string {
	if t.ssh {
		return fmt.Sprintf("rsync %s@%s:%s", t.user, t.addr, t.path)
	}
	return fmt.Sprintf("rsync://%s/%s/%s", t.addr, t.module, strings.TrimPrefix(t.path, "/"))
}

func boolOpt(o map[string]string, k string) (bool, error) {
	v := o[k]
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("rsync: option %s=%q: want true or false", k, v)
	}
	return b, nil
}

func parseTarget(s pullers.Source) (*target, error) {
	o := s.Options
	t := &target{host: o["host"], user: o["user"], timeout: 30 * time.Second, idle: 15 * time.Minute, rsyncBin: "rsync"}
	if t.host == "" {
		return nil, errors.New("rsync: no host (Options[\"host\"])")
	}
	switch tr := o["transport"]; tr {
	case "", "daemon":
	case "ssh":
		t.ssh = true
	default:
		return nil, fmt.Errorf("rsync %s: transport %q: want daemon or ssh", t.host, tr)
	}
	port := o["port"]
	if port == "" {
		port = "873"
		if t.ssh {
			port = "22"
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return nil, fmt.Errorf("rsync %s: bad port %q", t.host, port)
	}
	t.addr = net.JoinHostPort(t.host, port)
	if v := o["timeout"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("rsync %s: bad timeout %q", t.addr, v)
		}
		t.timeout = d
	}
	if v := o["io_timeout"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("rsync %s: bad io_timeout %q", t.addr, v)
		}
		t.idle = d
	}
	var err error
	if t.oneFS, err = boolOpt(o, "one_file_system"); err != nil {
		return nil, err
	}
	if t.numeric, err = boolOpt(o, "numeric_ids"); err != nil {
		return nil, err
	}
	if t.full, err = boolOpt(o, "full"); err != nil {
		return nil, err
	}
	if t.xattrs, err = boolOpt(o, "xattrs"); err != nil {
		return nil, err
	}
	if t.acls, err = boolOpt(o, "acls"); err != nil {
		return nil, err
	}
	if strings.ContainsAny(s.Path, "\x00\n") {
		return nil, fmt.Errorf("rsync %s: bad path %q", t.addr, s.Path)
	}
	t.password = s.Secret["password"]
	if !t.ssh {
		t.module = o["module"]
		if t.module == "" || strings.ContainsAny(t.module, "/\n\x00 ") {
			return nil, fmt.Errorf("rsync %s: bad or no module %q (Options[\"module\"])", t.addr, t.module)
		}
		t.path = path.Clean("/" + s.Path)
		return t, nil
	}
	if s.Path == "" {
		return nil, fmt.Errorf("rsync %s: no path", t.addr)
	}
	t.path = path.Clean(s.Path)
	if v := o["rsync_path"]; v != "" {
		t.rsyncBin = v
	}
	if t.user == "" {
		return nil, fmt.Errorf("rsync %s: no user (Options[\"user\"])", t.addr)
	}
	if k := strings.TrimSpace(o["host_key"]); k != "" {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
		if err != nil {
			return nil, fmt.Errorf("rsync %s: pinned host_key: %w", t.addr, err)
		}
		t.pinned = pub
	}
	if pk := s.Secret["private_key"]; pk != "" {
		var signer ssh.Signer
		if pp := s.Secret["passphrase"]; pp != "" {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(pk), []byte(pp))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(pk))
		}
		if err != nil {
			return nil, fmt.Errorf("rsync %s: private_key: %w: %w", t.addr, err, pullers.ErrPermanent)
		}
		t.sshAuth = append(t.sshAuth, ssh.PublicKeys(signer))
	}
	if t.password != "" {
		t.sshAuth = append(t.sshAuth, ssh.Password(t.password))
	}
	if len(t.sshAuth) == 0 {
		return nil, fmt.Errorf("rsync %s: no credentials (Secret \"password\" or \"private_key\"): %w", t.addr, pullers.ErrPermanent)
	}
	return t, nil
}

// session is one rsync conversation with a sender.
type session struct {
	in     *bufio.Reader // raw bytes from the server
	out    *bufio.Writer
	closer func() error
	stderr *capBuf // ssh: the remote rsync's stderr
	proto  int     // the protocol agreed on
}

// countConn counts the bytes read from the server.
type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// capBuf keeps the first 4 KiB written to it.
type capBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (c *capBuf) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := 4096 - c.b.Len(); room > 0 {
		c.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (c *capBuf) String() string {
	if c == nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.TrimSpace(c.b.String())
}

func (p *Puller) dialTCP(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if p.Dial != nil {
		return p.Dial(dctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(dctx, "tcp", addr)
}

// idleConn fails a read that waits longer than idle: a server that stalls
// mid-stream ends the pull instead of hanging it.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c idleConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(p)
}

// args is the sender's command line (after "rsync") for a protocol.
// From protocol 30 on it carries the -e capability string: symlink times
// (L), safe file-list end (f), no xattr hard-link optimization (x), the
// checksum seed order fix (C), inplace partial dir (I), varint flags and
// checksum negotiation (v), names of id 0 (u); not incremental recursion
// (i), so the whole list comes first.
func (t *target) args(proto int) []string {
	flags := "-lptgoDrH"
	if t.oneFS {
		flags += "x"
	}
	if proto >= 30 {
		if t.xattrs {
			flags += "X"
		}
		if t.acls {
			flags += "A"
		}
		flags += "e.LfxCIvu"
	}
	if t.numeric {
		return []string{"--server", "--sender", flags, "--numeric-ids", "."}
	}
	return []string{"--server", "--sender", flags, "."}
}

// openDaemon connects to an rsync daemon, selects the module and
// authenticates; it returns with the protocol agreed on and the sender
// started.
func (p *Puller) openDaemon(ctx context.Context, t *target) (*session, error) {
	c, err := p.dialTCP(ctx, t.addr, t.timeout)
	if err != nil {
		return nil, fmt.Errorf("%s: connect: %w", t, err)
	}
	c.SetDeadline(time.Now().Add(t.timeout))
	c = idleConn{c, t.idle}
	s := &session{in: bufio.NewReaderSize(countReader{c, &p.received}, 256<<10), out: bufio.NewWriterSize(c, 64<<10), closer: c.Close}
	fail := func(err error) (*session, error) {
		c.Close()
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	line, err := readLine(s.in)
	if err != nil {
		return fail(fmt.Errorf("greeting: %w", err))
	}
	ver, ok := strings.CutPrefix(line, "@RSYNCD: ")
	if !ok {
		return fail(protoErr("not an rsync daemon (greeting %q)", short(line)))
	}
	major, _, _ := strings.Cut(strings.Fields(ver + " x")[0], ".")
	v, err := strconv.Atoi(major)
	if err != nil || v < protocolOld {
		return fail(protoErr("daemon protocol %q is older than %d", short(ver), protocolOld))
	}
	s.proto = pickProtocol(v, p.Protocol)
	if s.proto >= 30 {
		// The digest list names what we can answer the challenge with.
		fmt.Fprintf(s.out, "@RSYNCD: %d.0 md5\n%s\n", s.proto, t.module)
	} else {
		fmt.Fprintf(s.out, "@RSYNCD: %d.0\n%s\n", s.proto, t.module)
	}
	if (t.xattrs || t.acls) && s.proto < 30 {
		return fail(errNeed30(s.proto, v))
	}
	if err := s.out.Flush(); err != nil {
		return fail(err)
	}
	authed := false
	for n := 0; ; n++ {
		if n > 1000 {
			return fail(protoErr("endless greeting"))
		}
		line, err := readLine(s.in)
		if err != nil {
			if authed {
				return fail(fmt.Errorf("after authentication: %w", err))
			}
			return fail(err)
		}
		switch {
		case line == "@RSYNCD: OK":
		case strings.HasPrefix(line, "@RSYNCD: AUTHREQD "):
			if t.user == "" || t.password == "" {
				return fail(fmt.Errorf("module %q needs a user and password: %w", t.module, ErrAuth))
			}
			challenge := strings.TrimPrefix(line, "@RSYNCD: AUTHREQD ")
			fmt.Fprintf(s.out, "%s %s\n", t.user, authHash(t.password, challenge, s.proto))
			if err := s.out.Flush(); err != nil {
				return fail(err)
			}
			authed = true
			continue
		case strings.HasPrefix(line, "@ERROR"):
			msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(line, "@ERROR"), ":"))
			switch {
			case authed || strings.Contains(msg, "auth"):
				return fail(fmt.Errorf("%s: %w", msg, ErrAuth))
			case strings.Contains(strings.ToLower(msg), "unknown module"):
				return fail(fmt.Errorf("daemon: %s: %w", msg, pullers.ErrPermanent))
			}
			return fail(fmt.Errorf("daemon: %s", msg)) // e.g. max connections: a retry may work
		case line == "@RSYNCD: EXIT":
			return fail(errors.New("daemon closed the session"))
		default:
			continue // message of the day
		}
		break
	}
	// Arguments end in NUL from protocol 30 on, in newline before; an
	// empty one ends the list.
	end := "\n"
	if s.proto >= 30 {
		end = "\x00"
	}
	for _, a := range t.args(s.proto) {
		s.out.WriteString(a + end)
	}
	s.out.WriteString(t.module + t.path + "/" + end + end)
	if err := s.out.Flush(); err != nil {
		return fail(err)
	}
	c.SetDeadline(time.Time{})
	return s, nil
}

// authHash answers the daemon's challenge: base64 (unpadded) of the
// digest of password+challenge; MD4 before protocol 30, MD5 from 30.
func authHash(password, challenge string, proto int) string {
	var sum []byte
	if proto >= 30 {
		h := md5.Sum([]byte(password + challenge))
		sum = h[:]
	} else {
		h := md4.New()
		h.Write([]byte{0, 0, 0, 0}) // the (zero) checksum seed, as old MD4 sums start
		h.Write([]byte(password + challenge))
		sum = h.Sum(nil)
	}
	return base64.RawStdEncoding.EncodeToString(sum)
}

func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		c, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "", fmt.Errorf("%w: connection closed during the greeting", ErrProtocol)
			}
			return "", err
		}
		if c == '\n' {
			return strings.TrimSuffix(string(b), "\r"), nil
		}
		if len(b) >= 4096 {
			return "", protoErr("greeting line longer than 4096 bytes")
		}
		b = append(b, c)
	}
}

func short(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

// openSSH runs the sender over SSH and exchanges protocol versions.
func (p *Puller) openSSH(ctx context.Context, t *target) (*session, error) {
	return p.openSSHCmd(ctx, t, t.args, t.path+"/", p.Protocol)
}

// openSSHCmd runs "rsync ARGS PATH" over SSH, ARGS for the protocol the
// remote rsync speaks (at most max).
func (p *Puller) openSSHCmd(ctx context.Context, t *target, args func(proto int) []string, pathArg string, max int) (*session, error) {
	c, err := p.dialTCP(ctx, t.addr, t.timeout)
	if err != nil {
		return nil, fmt.Errorf("%s: connect: %w", t, err)
	}
	c = idleConn{c, t.idle}
	var seen ssh.PublicKey
	cfg := &ssh.ClientConfig{User: t.user, Auth: t.sshAuth, Timeout: t.timeout,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			seen = key
			if t.pinned != nil && !bytes.Equal(key.Marshal(), t.pinned.Marshal()) {
				return fmt.Errorf("%w: got %s, pinned %s", ErrHostKeyChanged, ssh.FingerprintSHA256(key), ssh.FingerprintSHA256(t.pinned))
			}
			return nil
		}}
	c.SetDeadline(time.Now().Add(t.timeout))
	sc, chans, reqs, err := ssh.NewClientConn(c, t.addr, cfg)
	if err != nil {
		c.Close()
		if errors.Is(err, ErrHostKeyChanged) {
			return nil, fmt.Errorf("%s: %w", t, err)
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("%s: %w (%v)", t, ErrAuth, err)
		}
		return nil, fmt.Errorf("%s: ssh handshake: %w", t, err)
	}
	c.SetDeadline(time.Time{})
	p.mu.Lock()
	p.seen = seen
	p.mu.Unlock()
	cl := ssh.NewClient(sc, chans, reqs)
	sess, err := cl.NewSession()
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("%s: ssh session: %w", t, err)
	}
	stdin, err1 := sess.StdinPipe()
	stdout, err2 := sess.StdoutPipe()
	if err := errors.Join(err1, err2); err != nil {
		cl.Close()
		return nil, fmt.Errorf("%s: ssh session: %w", t, err)
	}
	s := &session{stderr: &capBuf{}}
	sess.Stderr = s.stderr
	// The remote rsync writes its version first; ours is the lower of
	// the two (27 for a peer older than 30). The -e capabilities on the
	// command line are ignored by a peer that ends up below 30.
	want := pickProtocol(protocol, max)
	cmd := []string{shellQuote(t.rsyncBin)}
	for _, a := range args(want) {
		cmd = append(cmd, shellQuote(a))
	}
	cmd = append(cmd, shellQuote(pathArg))
	if err := sess.Start(strings.Join(cmd, " ")); err != nil {
		cl.Close()
		return nil, fmt.Errorf("%s: start the remote rsync: %w", t, err)
	}
	s.in = bufio.NewReaderSize(countReader{stdout, &p.received}, 256<<10)
	s.out = bufio.NewWriterSize(stdin, 64<<10)
	s.closer = func() error { sess.Close(); return cl.Close() }
	rr := &rawReader{r: s.in}
	v, err := rr.int32("protocol version")
	if err != nil {
		s.closer()
		if m := s.stderr.String(); m != "" {
			return nil, fmt.Errorf("%s: %w (remote: %s)", t, err, short(m))
		}
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	if v < protocolOld || v > 1000 {
		s.closer()
		return nil, fmt.Errorf("%s: %w", t, protoErr("remote protocol %d", v))
	}
	s.proto = pickProtocol(int(v), want)
	if (t.xattrs || t.acls) && s.proto < 30 {
		s.closer()
		return nil, fmt.Errorf("%s: %w", t, errNeed30(s.proto, int(v)))
	}
	putInt(s.out, int32(s.proto))
	if err := s.out.Flush(); err != nil {
		s.closer()
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	return s, nil
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
