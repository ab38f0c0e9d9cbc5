package ftp

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	jftp "github.com/jlaffaye/ftp"

	"github.com/cairn-backup/cairn/pullers"
)

// Limits on what a server may make us hold or wait for.
const (
	defaultTimeout    = 60 * time.Second
	maxControlReply   = 1 << 20  // bytes of one control-connection reply
	defaultMaxListing = 64 << 20 // bytes of one directory listing
	defaultMaxDepth   = 256
	// DefaultMaxEntries caps the names kept from one directory listing.
	DefaultMaxEntries = 1 << 20
)

var (
	// ErrListingTooLong marks a directory listing cut at the size cap.
	ErrListingTooLong = errors.New("directory listing exceeds the size limit")
	// ErrTooManyEntries marks a directory listing cut at the name cap
	// (Puller.MaxEntries, Options["max_dir_entries"]): the first names
	// listed are kept.
	ErrTooManyEntries = errors.New("directory has too many entries")
	// ErrCertificateMismatch: the server's certificate does not match the
	// pinned fingerprint. It wraps pullers.ErrPermanent.
	ErrCertificateMismatch = fmt.Errorf("TLS certificate does not match the pinned fingerprint: %w", pullers.ErrPermanent)
	// ErrCertificateUnknown: the certificate is not trusted by the roots,
	// no fingerprint is pinned and trust on first use is off. It wraps
	// pullers.ErrPermanent.
	ErrCertificateUnknown = fmt.Errorf("TLS certificate not trusted and no fingerprint pinned: %w", pullers.ErrPermanent)
	errControlFlood       = errors.New("server reply too long")
)

// config is a parsed Source for the FTP protocol.
type config struct {
	addr     string // host:port
	host     string
	user     string
	password string
	tls      bool
	pinned   string         // "sha256:<hex>", lower case
	roots    *x509.CertPool // nil: system roots
	tofu     bool
	timeout  time.Duration
	// maxEntries is Options["max_dir_entries"]; 0: the Puller's.
	maxEntries int
	dial       func(ctx context.Context, network, addr string) (net.Conn, error) // nil: net.Dialer
}

// Fingerprint returns the "sha256:<hex>" fingerprint of a DER certificate,
// the form Options["tls_fingerprint"] takes.
func Fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(s[:])
}

func normFingerprint(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "sha256:")
	s = strings.ReplaceAll(s, ":", "")
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("tls_fingerprint %q: want sha256:<64 hex digits>", s)
	}
	return "sha256:" + s, nil
}

func parseConfig(host string, src *pullers.Source) (*config, error) {
	o := src.Options
	c := &config{tls: true, tofu: true, timeout: defaultTimeout}
	h := o["host"]
	if h == "" {
		h = host
	}
	if h == "" {
		return nil, errors.New("no host (Options[\"host\"])")
	}
	port := o["port"]
	if port == "" {
		port = "21"
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return nil, fmt.Errorf("bad port %q", port)
	}
	c.host = strings.Trim(h, "[]")
	c.addr = net.JoinHostPort(c.host, port)
	c.user = o["user"]
	c.password = src.Secret["password"]
	if c.user == "" || strings.EqualFold(c.user, "anonymous") || strings.EqualFold(c.user, "ftp") {
		if c.user == "" {
			c.user = "anonymous"
		}
		if c.password == "" {
			c.password = "cairn@"
		}
	}
	switch v := o["tls"]; v {
	case "", "explicit":
	case "none":
		c.tls = false
	default:
		return nil, fmt.Errorf("option tls=%q: want explicit or none", v)
	}
	if v := o["tls_fingerprint"]; v != "" {
		fp, err := normFingerprint(v)
		if err != nil {
			return nil, err
		}
		c.pinned = fp
	}
	if v := o["tls_ca"]; v != "" {
		c.roots = x509.NewCertPool()
		if !c.roots.AppendCertsFromPEM([]byte(v)) {
			return nil, errors.New("option tls_ca: no PEM certificate in it")
		}
	}
	if v := o["tls_tofu"]; v == "false" {
		c.tofu = false
	} else if v != "" && v != "true" {
		return nil, fmt.Errorf("option tls_tofu=%q: want true or false", v)
	}
	if v := o["timeout"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("option timeout=%q: want a positive duration", v)
		}
		c.timeout = d
	}
	if v := o["max_dir_entries"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("option max_dir_entries=%q: want a positive number of names per directory: %w", v, pullers.ErrPermanent)
		}
		c.maxEntries = n
	}
	return c, nil
}

// session is one logged-in control connection and its data connections.
type session struct {
	cfg  *config
	c    *jftp.ServerConn
	mlsd bool // listings use MLSD

	mu       sync.Mutex
	ctx      context.Context
	conns    map[*wconn]struct{}
	dials    int
	capture  *lineSplitter // parses the running listing as it streams
	capMax   int64         // byte cap of the running listing
	capN     int64         // bytes of it so far
	capOver  bool          // cut at capMax
	capStop  bool          // cut because the consumer asked
	seenFP   string        // fingerprint of the server's certificate
	verified bool          // the certificate chained to the roots
	stop     func() bool
}

// wconn wraps every connection: a read deadline per read (the idle
// timeout), a cap on control replies, the listing capture, and ctx
// cancellation (the session sets a past deadline on all conns).
type wconn struct {
	net.Conn
	s       *session
	control bool
	nread   int64 // control: bytes read since the last command
}

func (w *wconn) Read(p []byte) (int, error) {
	s := w.s
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	if w.control && w.nread >= maxControlReply {
		return 0, errControlFlood
	}
	w.Conn.SetReadDeadline(time.Now().Add(s.cfg.timeout))
	n, err := w.Conn.Read(p)
	if w.control {
		w.nread += int64(n)
	}
	return n, err
}

// dataConn hands a listing's plaintext (above TLS) to the session's line
// splitter as it streams. jlaffaye's own parser then sees one empty line
// per read: it parses and keeps nothing, so a listing costs no memory
// beyond what our consumer keeps.
type dataConn struct {
	net.Conn
	s *session
}

// errListingCut ends a listing transfer the consumer stopped.
var errListingCut = errors.New("listing cut by the client")

func (d *dataConn) Read(p []byte) (int, error) {
	n, err := d.Conn.Read(p)
	s := d.s
	s.mu.Lock()
	ls := s.capture
	if ls != nil && n > 0 {
		s.capN += int64(n)
		if s.capN > s.capMax {
			s.capOver = true
			s.mu.Unlock()
			return 0, ErrListingTooLong
		}
	}
	s.mu.Unlock()
	if ls == nil || n == 0 {
		return n, err
	}
	if !ls.write(p[:n]) {
		s.mu.Lock()
		s.capStop = true
		s.mu.Unlock()
		return 0, errListingCut
	}
	// jlaffaye gets one empty line for the whole read.
	p[0] = '\n'
	return 1, err
}

func (w *wconn) Write(p []byte) (int, error) {
	if err := w.s.ctx.Err(); err != nil {
		return 0, err
	}
	if w.control {
		w.nread = 0
	}
	w.Conn.SetWriteDeadline(time.Now().Add(w.s.cfg.timeout))
	return w.Conn.Write(p)
}

func (w *wconn) Close() error {
	w.s.mu.Lock()
	delete(w.s.conns, w)
	w.s.mu.Unlock()
	return w.Conn.Close()
}

// dial connects the control connection (first call) or a data connection
// (later calls; wrapped in TLS with the shared session cache, so vsftpd's
// require_ssl_reuse is satisfied).
func (s *session) dial(tlsCfg *tls.Config) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		s.mu.Lock()
		first := s.dials == 0
		s.dials++
		ctx := s.ctx
		s.mu.Unlock()
		if !first {
			// Passive mode: jlaffaye already replaced the host in
			// PASV replies with the control connection's address, so a
			// server cannot point us elsewhere; EPSV gives a port only.
			host, _, err := net.SplitHostPort(addr)
			if err != nil || host != s.remoteIP() {
				return nil, fmt.Errorf("data connection to %s refused: not the control host", addr)
			}
		}
		dial := s.cfg.dial
		if dial == nil {
			d := net.Dialer{Timeout: s.cfg.timeout}
			dial = d.DialContext
		}
		nc, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		w := &wconn{Conn: nc, s: s, control: first}
		s.mu.Lock()
		s.conns[w] = struct{}{}
		s.mu.Unlock()
		if ctx.Err() != nil {
			nc.SetDeadline(time.Unix(1, 0))
		}
		if first {
			return w, nil
		}
		if tlsCfg != nil {
			return &dataConn{Conn: tls.Client(w, tlsCfg), s: s}, nil
		}
		return &dataConn{Conn: w, s: s}, nil
	}
}

func (s *session) remoteIP() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.conns {
		if w.control {
			if a, ok := w.RemoteAddr().(*net.TCPAddr); ok {
				return a.IP.String()
			}
		}
	}
	return ""
}

// verify checks the server certificate: the pinned fingerprint if there
// is one, else the roots, else trust on first use.
func (s *session) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("server sent no certificate")
	}
	leaf := cs.PeerCertificates[0]
	fp := Fingerprint(leaf.Raw)
	s.mu.Lock()
	s.seenFP = fp
	s.mu.Unlock()
	if s.cfg.pinned != "" {
		if fp != s.cfg.pinned {
			return fmt.Errorf("%w (server %s, pinned %s)", ErrCertificateMismatch, fp, s.cfg.pinned)
		}
		return nil
	}
	opts := x509.VerifyOptions{Roots: s.cfg.roots, DNSName: s.cfg.host, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err == nil {
		s.mu.Lock()
		s.verified = true
		s.mu.Unlock()
		return nil
	} else if !s.cfg.tofu {
		return fmt.Errorf("%w: %v (fingerprint %s)", ErrCertificateUnknown, err, fp)
	}
	return nil // trust on first use; the caller pins seenFP
}

// connect dials and logs in. forceList makes listings use "LIST -a"
// (hidden files) instead of MLSD.
func connect(ctx context.Context, cfg *config, forceList bool) (*session, error) {
	s := &session{cfg: cfg, ctx: ctx, conns: map[*wconn]struct{}{}}
	var tlsCfg *tls.Config
	opts := []jftp.DialOption{jftp.DialWithTimeout(cfg.timeout), jftp.DialWithShutTimeout(cfg.timeout),
		jftp.DialWithDialFunc(s.dial(nil)), jftp.DialWithForceListHidden(forceList), jftp.DialWithWritingMDTM(true)}
	if cfg.tls {
		tlsCfg = &tls.Config{
			ServerName:         cfg.host,
			MinVersion:         tls.VersionTLS12,
			ClientSessionCache: tls.NewLRUClientSessionCache(4),
			InsecureSkipVerify: true, // verified in VerifyConnection: pin, roots or TOFU
			VerifyConnection:   s.verify,
		}
		opts = append(opts, jftp.DialWithExplicitTLS(tlsCfg), jftp.DialWithDialFunc(s.dial(tlsCfg)))
	}
	s.stop = context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for w := range s.conns {
			w.SetDeadline(time.Unix(1, 0))
		}
	})
	c, err := jftp.Dial(cfg.addr, opts...)
	if err != nil {
		s.closeAll()
		return nil, fmt.Errorf("connect %s: %w", cfg.addr, ctxErr(ctx, err))
	}
	s.c = c
	if err := c.Login(cfg.user, cfg.password); err != nil {
		s.close()
		var te *textproto.Error
		if errors.As(err, &te) && (te.Code == jftp.StatusNotLoggedIn || te.Code == 332) {
			return nil, fmt.Errorf("login %s as %s: %v: %w", cfg.addr, cfg.user, err, pullers.ErrPermanent)
		}
		return nil, fmt.Errorf("login %s as %s: %w", cfg.addr, cfg.user, ctxErr(ctx, err))
	}
	s.mlsd = c.IsTimePreciseInList()
	return s, nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (s *session) close() {
	if s.c != nil {
		s.c.Quit()
	}
	s.closeAll()
}

func (s *session) closeAll() {
	if s.stop != nil {
		s.stop()
	}
	s.mu.Lock()
	conns := make([]*wconn, 0, len(s.conns))
	for w := range s.conns {
		conns = append(conns, w)
	}
	s.mu.Unlock()
	for _, w := range conns {
		w.Close()
	}
}

// list streams the listing (MLSD or LIST -a) of the current directory to
// fn, one line at a time without its line end (a line longer than
// maxLineLen+2 comes as its first bytes with long set). jlaffaye's List
// drives the transfer; the bytes are taken below it. When fn returns false
// the transfer is cut and list returns errListingCut (the control
// connection stays in step: the server's reply to the cut transfer is
// read). A listing over max bytes fails with ErrListingTooLong.
func (s *session) list(max int64, fn func(line string, long bool) bool) error {
	ls := &lineSplitter{max: maxLineLen + 2, fn: fn}
	s.mu.Lock()
	s.capture, s.capMax, s.capN, s.capOver, s.capStop = ls, max, 0, false, false
	s.mu.Unlock()
	_, err := s.c.List("")
	s.mu.Lock()
	over, stop := s.capOver, s.capStop
	s.capture = nil
	s.mu.Unlock()
	switch {
	case over:
		return ErrListingTooLong
	case stop:
		return errListingCut
	case err != nil:
		return err
	}
	ls.flush()
	return nil
}

// fingerprint returns the certificate fingerprint seen and whether it
// chained to the roots.
func (s *session) fingerprint() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seenFP, s.verified
}

// Handshake lets jlaffaye complete a TLS handshake on an empty upload.
func (d *dataConn) Handshake() error {
	if h, ok := d.Conn.(interface{ Handshake() error }); ok {
		return h.Handshake()
	}
	return nil
}
