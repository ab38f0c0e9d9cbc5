package appliance

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/appliance/web"
	"golang.org/x/sys/unix"
)

// Role ranks: a route needs a minimum role. rolePublic needs none.
const (
	rolePublic = iota
	roleUser
	roleOperator
	roleAdmin
)

func roleRank(role string) int {
	switch role {
	case catalog.RoleAdmin:
		return roleAdmin
	case catalog.RoleOperator:
		return roleOperator
	case catalog.RoleUser:
		return roleUser
	}
	return -1
}

// A principal is who is calling: a user authenticated by a token, or the
// local root on the unix socket (admin, no user row).
type principal struct {
	Name   string // user name, or "root@socket"
	Role   string
	UserID int64 // 0 for root@socket
	Via    string
	// AppendOnly: a replication token of another appliance; it may add
	// to replicas, never delete or overwrite (replicate_remote.go).
	AppendOnly bool
}

func (p *principal) rank() int { return roleRank(p.Role) }

type ctxKey int

const (
	peerKey ctxKey = iota
	principalKey
)

// peer is what ConnContext learns about a connection.
type peer struct {
	unix bool
	uid  int // -1 when unknown
}

// connContext records whether a connection came over the unix socket and,
// if so, the peer's uid (SO_PEERCRED): local root there is admin.
func connContext(ctx context.Context, c net.Conn) context.Context {
	p := peer{uid: -1}
	if uc, ok := c.(*net.UnixConn); ok {
		p.unix = true
		if raw, err := uc.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) {
				if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
					p.uid = int(cred.Uid)
				}
			})
		}
	}
	return context.WithValue(ctx, peerKey, p)
}

// socketAdmin reports whether a unix-socket peer gets admin: root, or the
// uid the appliance runs as (who owns the 0600 socket and the data dir
// anyway, so this grants nothing new).
func socketAdmin(uid int) bool { return uid == 0 || (uid >= 0 && uid == os.Getuid()) }

// hashToken is how tokens are stored: SHA-256 hex. Tokens are 256-bit
// random values, so a fast hash is enough.
func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// newToken returns a fresh API token.
func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return "cairn_" + base64.RawURLEncoding.EncodeToString(b)
}

var (
	errUnauthenticated = errors.New("authentication required: give a bearer token (cairn token create) or use the unix socket as root")
	errBadToken        = errors.New("invalid or revoked token")
	errBadSession      = errors.New("session expired or unknown: log in again")
)

// authenticate finds the principal of a request. A bearer token wins over
// the socket (so tools can act as a user over the socket).
func (s *Server) authenticate(r *http.Request) (*principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || tok == "" {
			return nil, errBadToken
		}
		t, err := s.cat.TokenByHash(r.Context(), hashToken(strings.TrimSpace(tok)), s.now())
		if errors.Is(err, catalog.ErrNotFound) {
			if ap := s.appendOnlyPrincipal(r.Context(), hashToken(strings.TrimSpace(tok)), r.URL.Path); ap != nil {
				return ap, nil // replicate_remote.go: only on the replica routes
			}
			return nil, errBadToken
		}
		if err != nil {
			return nil, err
		}
		u, err := s.cat.UserByID(r.Context(), t.UserID)
		if err != nil {
			return nil, errBadToken
		}
		return &principal{Name: u.Name, Role: u.Role, UserID: u.ID, Via: "token"}, nil
	}
	if p, ok := r.Context().Value(peerKey).(peer); ok && p.unix && socketAdmin(p.uid) {
		return &principal{Name: "root@socket", Role: catalog.RoleAdmin, Via: "socket"}, nil
	}
	if s.ui != nil && web.HasCookie(r) {
		// The web UI's session cookie; changing requests need its CSRF
		// token too.
		uid, ok := s.ui.Sessions.Authenticate(r)
		if !ok {
			return nil, errBadSession
		}
		if err := s.ui.Sessions.CheckCSRF(r); err != nil {
			return nil, err
		}
		u, err := s.cat.UserByID(r.Context(), uid)
		if err != nil {
			return nil, errBadSession
		}
		return &principal{Name: u.Name, Role: u.Role, UserID: u.ID, Via: "session"}, nil
	}
	return nil, errUnauthenticated
}

// canSeeHost reports whether p may see host (user-role principals only see
// the hosts of their groups).
func (s *Server) canSeeHost(ctx context.Context, p *principal, host string) (bool, error) {
	if p.rank() >= roleOperator {
		return true, nil
	}
	if p.UserID == 0 {
		return false, nil
	}
	return s.cat.UserSeesHost(ctx, p.UserID, host)
}
