package appliance

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/pullers"
	"golang.org/x/crypto/ssh"
)

// Pre- and post-commands run on the host over SSH around a source's pull:
// a failed pre-command fails the source (nothing is pulled); the
// post-command always runs once the pre-command was started, even after a
// failure, and its failure is reported as a warning. Flushing a database
// or taking a filesystem snapshot is a plain pre-command.
//
// Source options:
//
//	pre, post         the commands (run by the remote user's shell)
//	hook_timeout      Go duration, default 5m, for each command
//	ssh_port          default 22
//	ssh_user          default root
//	ssh_host_key      the host's public key, authorized_keys format (required:
//	                  commands never run on an unverified host)
//
// Credentials (source secret): ssh_key (a PEM/OpenSSH private key) or
// ssh_password.

const defaultHookTimeout = 5 * time.Minute

// hookRunner runs commands on one host.
type hookRunner struct {
	addr    string
	cfg     *ssh.ClientConfig
	timeout time.Duration
	dial    dialFunc // nil: net.Dialer; a jump host's dialer otherwise
}

func newHookRunner(h *catalog.Host, src *catalog.Source, secret map[string]string) (*hookRunner, error) {
	o := src.Options
	if o["pre"] == "" && o["post"] == "" && o["snapshot"] == "" {
		return nil, nil
	}
	if h.Address == "" {
		return nil, fmt.Errorf("pre/post commands need the host's address")
	}
	if o["ssh_host_key"] == "" {
		return nil, fmt.Errorf("pre/post commands and snapshots need the option ssh_host_key (the host's public key): commands never run on an unverified host")
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(o["ssh_host_key"]))
	if err != nil {
		return nil, fmt.Errorf("ssh_host_key: %w", err)
	}
	var auth []ssh.AuthMethod
	if k := secret["ssh_key"]; k != "" {
		signer, err := ssh.ParsePrivateKey([]byte(k))
		if err != nil {
			return nil, fmt.Errorf("ssh_key credential: cannot parse the private key")
		}
		auth = append(auth, ssh.PublicKeys(signer))
	}
	if p := secret["ssh_password"]; p != "" {
		auth = append(auth, ssh.Password(p))
	}
	if len(auth) == 0 {
		return nil, fmt.Errorf("pre/post commands and snapshots need the credential ssh_key or ssh_password")
	}
	user := o["ssh_user"]
	if user == "" {
		user = "root"
	}
	port := 22
	if p := o["ssh_port"]; p != "" {
		if port, err = strconv.Atoi(p); err != nil || port <= 0 || port > 65535 {
			return nil, fmt.Errorf("ssh_port %q: want a port number", p)
		}
	}
	timeout := defaultHookTimeout
	if t := o["hook_timeout"]; t != "" {
		if timeout, err = time.ParseDuration(t); err != nil || timeout <= 0 {
			return nil, fmt.Errorf("hook_timeout %q: want a duration such as 5m", t)
		}
	}
	return &hookRunner{
		addr:    net.JoinHostPort(h.Address, strconv.Itoa(port)),
		timeout: timeout,
		cfg: &ssh.ClientConfig{User: user, Auth: auth, HostKeyCallback: ssh.FixedHostKey(hostKey),
			Timeout: 30 * time.Second},
	}, nil
}

// run executes cmd and returns an error naming its exit status and the
// tail of its output.
func (hr *hookRunner) run(ctx context.Context, what, cmd string) error {
	ctx, cancel := context.WithTimeout(ctx, hr.timeout)
	defer cancel()
	dial := hr.dial
	if dial == nil {
		d := net.Dialer{Timeout: 30 * time.Second}
		dial = d.DialContext
	}
	conn, err := dial(ctx, "tcp", hr.addr)
	if err != nil {
		return keepPermanent(err, fmt.Errorf("%s command: connect %s: %w", what, hr.addr, err))
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c, chans, reqs, err := ssh.NewClientConn(conn, hr.addr, hr.cfg)
	if err != nil {
		conn.Close()
		// A wrong host key or refused credentials will not heal by retrying.
		return permanent{fmt.Errorf("%s command: ssh %s: %w", what, hr.addr, err)}
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return fmt.Errorf("%s command: ssh session: %w", what, err)
	}
	defer sess.Close()
	var out bytes.Buffer
	sess.Stdout, sess.Stderr = &limitedBuffer{b: &out, max: 4096}, &limitedBuffer{b: &out, max: 4096}
	err = sess.Run(cmd)
	if ctx.Err() != nil {
		return fmt.Errorf("%s command timed out after %s", what, hr.timeout)
	}
	if err != nil {
		msg := strings.TrimSpace(out.String())
		if ee, ok := err.(*ssh.ExitError); ok {
			return fmt.Errorf("%s command exited with status %d: %s", what, ee.ExitStatus(), lastLine(msg))
		}
		return fmt.Errorf("%s command: %w", what, err)
	}
	return nil
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[len(s)-200:]
	}
	return s
}

// limitedBuffer keeps at most max bytes of output.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// permanent marks an error a retry cannot fix (pullers.ErrPermanent)
// without changing its message.
type permanent struct{ error }

func (p permanent) Unwrap() error        { return p.error }
func (p permanent) Is(target error) bool { return target == pullers.ErrPermanent }
