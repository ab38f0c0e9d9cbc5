package appliance

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/appliance/webdav"
)

// DAVPrefix is where `cairn serve` shares the restore tree over WebDAV.
const DAVPrefix = "/dav"

// basicCacheTTL is how long a checked Basic password is remembered, so a
// WebDAV client's many requests do not each pay for bcrypt.
const basicCacheTTL = time.Minute

// basicCache remembers recent successful Basic logins by a hash of
// user and password (never the password itself).
type basicCache struct {
	mu    sync.Mutex
	m     map[[32]byte]basicHit
	fails map[string][]time.Time // failed logins by user name, recent first-in
}

// Basic logins of a user name are refused without checking after
// basicMaxFails failures within basicFailWindow.
const (
	basicMaxFails   = 10
	basicFailWindow = time.Minute
)

// recentFails drops failures older than the window and returns the count.
// The caller holds mu.
func (c *basicCache) recentFails(name string, now time.Time) int {
	fs := c.fails[name]
	for len(fs) > 0 && now.Sub(fs[0]) > basicFailWindow {
		fs = fs[1:]
	}
	if len(fs) == 0 {
		delete(c.fails, name)
	} else {
		c.fails[name] = fs
	}
	return len(fs)
}

func (c *basicCache) fail(name string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fails == nil || len(c.fails) > 10000 {
		c.fails = map[string][]time.Time{}
	}
	c.fails[name] = append(c.fails[name], now)
}

type basicHit struct {
	userID  int64
	expires time.Time
}

// handleDAV serves the per-user restore tree read-only over WebDAV. Every
// request needs credentials: HTTP Basic (a user's password, or an API
// token as the password with any user name), a bearer token, the web UI's
// session cookie or the unix socket as root.
func (s *Server) handleDAV(w http.ResponseWriter, r *http.Request) {
	p, err := s.davPrincipal(r)
	if err != nil {
		if statusOf(err) == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="cairn", charset="UTF-8"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		s.writeErr(w, r, err)
		return
	}
	ctx := context.WithValue(r.Context(), principalKey, p)
	webdav.NewHandlerOptions(s.userTree(ctx, p), DAVPrefix, s.davOptions()).ServeHTTP(w, r.WithContext(ctx))
}

// davPrincipal authenticates a WebDAV request.
func (s *Server) davPrincipal(r *http.Request) (*principal, error) {
	name, pw, ok := r.BasicAuth()
	if !ok {
		if strings.HasPrefix(r.Header.Get("Authorization"), "Basic ") {
			return nil, errUnauthenticated // malformed
		}
		return s.authenticate(r)
	}
	ctx := r.Context()
	if strings.HasPrefix(pw, "cairn_") {
		t, err := s.cat.TokenByHash(ctx, hashToken(pw), s.now())
		if errors.Is(err, catalog.ErrNotFound) {
			return nil, errBadToken
		}
		if err != nil {
			return nil, err
		}
		u, err := s.cat.UserByID(ctx, t.UserID)
		if err != nil {
			return nil, errBadToken
		}
		return &principal{Name: u.Name, Role: u.Role, UserID: u.ID, Via: "token"}, nil
	}
	key := sha256.Sum256([]byte(name + "\x00" + pw))
	now := time.Now()
	s.basic.mu.Lock()
	hit, cached := s.basic.m[key]
	s.basic.mu.Unlock()
	var u *catalog.User
	var err error
	if cached && now.Before(hit.expires) {
		if u, err = s.cat.UserByID(ctx, hit.userID); err != nil || u.Name != name {
			return nil, errUnauthenticated
		}
	} else {
		if s.ui == nil {
			return nil, errUnauthenticated
		}
		s.basic.mu.Lock()
		n := s.basic.recentFails(name, now)
		s.basic.mu.Unlock()
		if n >= basicMaxFails {
			s.log.Warn("dav: login refused: too many failures", "user", name, "remote", r.RemoteAddr)
			return nil, errUnauthenticated
		}
		if u, err = s.ui.CheckLogin(r, name, pw); err != nil {
			s.basic.fail(name, now)
			s.log.Warn("dav: failed login", "user", name, "remote", r.RemoteAddr)
			return nil, errUnauthenticated
		}
		s.basic.mu.Lock()
		delete(s.basic.fails, name)
		if s.basic.m == nil || len(s.basic.m) > 1000 {
			s.basic.m = map[[32]byte]basicHit{}
		}
		s.basic.m[key] = basicHit{userID: u.ID, expires: now.Add(basicCacheTTL)}
		s.basic.mu.Unlock()
	}
	return &principal{Name: u.Name, Role: u.Role, UserID: u.ID, Via: "basic"}, nil
}
