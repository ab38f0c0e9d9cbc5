package appliance

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/dbdump"
	"github.com/cairn-backup/cairn/pullers/ftp"
	"github.com/cairn-backup/cairn/pullers/rsync"
	"github.com/cairn-backup/cairn/pullers/sftp"
	"github.com/cairn-backup/cairn/pullers/smb"
	"github.com/cairn-backup/cairn/pullers/tar"
)

// ProxyJump: a source with Options["jump"] = "[user@]host[:port]" reaches
// its server through an SSH jump host: the pull's TCP connections (and
// the pre/post/snapshot commands' SSH connection) are direct-tcpip
// channels of one SSH connection to the jump host, opened on first use
// and closed after the pull.
//
//	jump           [user@]host[:port] (user root, port 22 by default)
//	jump_host_key  the jump host's public key, authorized_keys format
//	               (required: never through an unverified host)
//
// Credentials (source secret): jump_private_key or jump_password.
//
// Methods that can go through a jump host: the ones whose puller takes a
// dialer (jumpMethods); the others are refused with a clear error.

var jumpRE = regexp.MustCompile(`^(?:([A-Za-z0-9_][A-Za-z0-9_.-]{0,63})@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?$`)

// jumpMethods are the methods whose pullers take a dialer.
// A database dump goes through the jump host only in mode (b) (via=ssh:
// the dump runs on the host); mode (a) is refused.
// FTP needs the server as an IP address: its data connections go only
// to the control connection's address, which a tunnel reports from addr.
var jumpMethods = []string{"ftp (backup)", "mariadb (via=ssh)", "postgres (via=ssh)", "rsync", sftp.Method, smb.Method, "tar"}

// dialFunc opens a TCP connection.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// jumpHost is a lazily connected SSH client to a jump host.
type jumpHost struct {
	addr string
	cfg  *ssh.ClientConfig

	mu     sync.Mutex
	client *ssh.Client
}

// newJump returns the jump host of a source, or nil when it has none.
func newJump(opts, secret map[string]string) (*jumpHost, error) {
	spec := opts["jump"]
	if spec == "" {
		return nil, nil
	}
	m := jumpRE.FindStringSubmatch(spec)
	if m == nil {
		return nil, fmt.Errorf("jump %q: want [user@]host[:port]", spec)
	}
	user, host, port := m[1], m[2], 22
	if user == "" {
		user = "root"
	}
	if m[3] != "" {
		p, err := strconv.Atoi(m[3])
		if err != nil || p <= 0 || p > 65535 {
			return nil, fmt.Errorf("jump %q: bad port", spec)
		}
		port = p
	}
	if len(host) > 1 && host[0] == '[' {
		host = host[1 : len(host)-1]
	}
	if opts["jump_host_key"] == "" {
		return nil, fmt.Errorf("jump needs the option jump_host_key (the jump host's public key): never through an unverified host")
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(opts["jump_host_key"]))
	if err != nil {
		return nil, fmt.Errorf("jump_host_key: %w", err)
	}
	var auth []ssh.AuthMethod
	if k := secret["jump_private_key"]; k != "" {
		signer, err := ssh.ParsePrivateKey([]byte(k))
		if err != nil {
			return nil, fmt.Errorf("jump_private_key credential: cannot parse the private key")
		}
		auth = append(auth, ssh.PublicKeys(signer))
	}
	if p := secret["jump_password"]; p != "" {
		auth = append(auth, ssh.Password(p))
	}
	if len(auth) == 0 {
		return nil, fmt.Errorf("jump needs the credential jump_private_key or jump_password")
	}
	return &jumpHost{addr: net.JoinHostPort(host, strconv.Itoa(port)),
		cfg: &ssh.ClientConfig{User: user, Auth: auth, HostKeyCallback: ssh.FixedHostKey(hostKey),
			HostKeyAlgorithms: []string{hostKey.Type()}, Timeout: 30 * time.Second, ClientVersion: "SSH-2.0-cairn"}}, nil
}

// connect returns the client, connecting on first use.
func (j *jumpHost) connect(ctx context.Context) (*ssh.Client, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.client != nil {
		return j.client, nil
	}
	d := net.Dialer{Timeout: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", j.addr)
	if err != nil {
		return nil, fmt.Errorf("jump host %s: %w", j.addr, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, j.addr, j.cfg)
	stop()
	if err != nil {
		conn.Close()
		// A wrong host key or refused credentials will not heal by retrying.
		return nil, permanent{fmt.Errorf("jump host %s: %w", j.addr, err)}
	}
	j.client = ssh.NewClient(c, chans, reqs)
	return j.client, nil
}

// Dial opens a TCP connection to addr from the jump host.
func (j *jumpHost) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := j.connect(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := c.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("through jump host %s to %s: %w", j.addr, addr, err)
	}
	tc := &tunnelConn{Conn: conn, raddr: conn.RemoteAddr()}
	// A tunnelled connection reports 0.0.0.0 as its remote address; give
	// it the target's, when it is an IP address (FTP's data connections
	// are checked against it).
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		tc.raddr = net.TCPAddrFromAddrPort(ap)
	}
	return tc, nil
}

// tunnelConn is a connection through the jump host with its target's
// address as RemoteAddr. An SSH channel has no deadlines: setting one
// succeeds and does nothing (the pullers' own ones are for handshakes
// and idle reads; a stall through the tunnel ends with the job's
// context or the jump connection).
type tunnelConn struct {
	net.Conn
	raddr net.Addr
}

func (c *tunnelConn) RemoteAddr() net.Addr               { return c.raddr }
func (c *tunnelConn) SetDeadline(t time.Time) error      { return nil }
func (c *tunnelConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *tunnelConn) SetWriteDeadline(t time.Time) error { return nil }

// Close closes the connection to the jump host, if any.
func (j *jumpHost) Close() {
	if j == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.client != nil {
		j.client.Close()
		j.client = nil
	}
}

// useJump gives pl the jump host's dialer, or fails for a method whose
// puller cannot take one.
func useJump(pl pullers.Puller, method, via string, j *jumpHost) error {
	if j == nil {
		return nil
	}
	switch p := pl.(type) {
	case *sftp.Puller:
		p.Dial = j.Dial
	case *rsync.Puller:
		p.Dial = j.Dial
	case *smb.Puller:
		p.Dial = j.Dial
	case *tar.Puller:
		p.Dial = j.Dial
	case *ftp.Puller:
		p.Dial = j.Dial
	case *dbdump.Puller:
		if via != "ssh" {
			return permanent{fmt.Errorf("method %s goes through a jump host only with via=ssh (the dump runs on the host)", method)}
		}
		p.Dial = j.Dial
	default:
		return permanent{fmt.Errorf("method %s cannot go through a jump host yet (supported: %v)", method, jumpMethods)}
	}
	return nil
}

// jumpFor gives pl the jump host of the source ps, if it has one, for a
// connection test or a restore to the host (backups wire it in
// backupSource). The caller closes the returned jump host (nil-safe).
func jumpFor(pl pullers.Puller, ps pullers.Source) (*jumpHost, error) {
	j, err := newJump(ps.Options, ps.Secret)
	if err != nil {
		return nil, permanent{err}
	}
	if err := useJump(pl, ps.Method, ps.Options["via"], j); err != nil {
		return nil, err
	}
	return j, nil
}
