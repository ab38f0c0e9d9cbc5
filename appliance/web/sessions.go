package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Cookie and header names.
const (
	SessionCookie = "cairn_session"
	CSRFCookie    = "cairn_csrf"
	CSRFHeader    = "X-CSRF-Token"
	CSRFField     = "csrf_token"
)

// Session lifetimes (defaults of Sessions).
const (
	DefaultIdleTimeout = 8 * time.Hour
	DefaultMaxAge      = 7 * 24 * time.Hour
	maxSessions        = 10000
)

// ErrCSRF is returned by CheckCSRF when a cookie-authenticated request
// that changes state lacks the session's CSRF token. Callers answer 403.
var ErrCSRF = errors.New("missing or wrong CSRF token: reload the page (send the X-CSRF-Token header with cookie sessions)")

type session struct {
	userID  int64
	csrf    string
	created time.Time
	seen    time.Time
}

// Sessions is the server-side session store. It is safe for concurrent
// use. The zero value is not usable; use NewSessions.
type Sessions struct {
	IdleTimeout time.Duration // a session unused this long ends
	MaxAge      time.Duration // a session this old ends, used or not

	now func() time.Time
	mu  sync.Mutex
	m   map[[32]byte]*session // by SHA-256 of the cookie value
}

// NewSessions returns an empty store with the default lifetimes. now is
// the clock (nil = time.Now).
func NewSessions(now func() time.Time) *Sessions {
	if now == nil {
		now = time.Now
	}
	return &Sessions{IdleTimeout: DefaultIdleTimeout, MaxAge: DefaultMaxAge, now: now, m: map[[32]byte]*session{}}
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func key(id string) [32]byte { return sha256.Sum256([]byte(id)) }

// expiredLocked reports whether s has ended at now.
func (st *Sessions) expiredLocked(s *session, now time.Time) bool {
	return now.Sub(s.seen) >= st.IdleTimeout || now.Sub(s.created) >= st.MaxAge
}

// Create starts a session for userID and sets its cookies on w. Any
// session the request already carried ends (no session fixation).
func (st *Sessions) Create(w http.ResponseWriter, r *http.Request, userID int64) {
	id, csrf := randomToken(), randomToken()
	now := st.now()
	st.mu.Lock()
	if c, err := r.Cookie(SessionCookie); err == nil {
		delete(st.m, key(c.Value))
	}
	if len(st.m) >= maxSessions {
		for k, s := range st.m {
			if st.expiredLocked(s, now) {
				delete(st.m, k)
			}
		}
	}
	if len(st.m) >= maxSessions { // still full: drop the least recently used
		var oldest [32]byte
		var t time.Time
		for k, s := range st.m {
			if t.IsZero() || s.seen.Before(t) {
				oldest, t = k, s.seen
			}
		}
		delete(st.m, oldest)
	}
	st.m[key(id)] = &session{userID: userID, csrf: csrf, created: now, seen: now}
	st.mu.Unlock()
	secure := r.TLS != nil
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: "/", HttpOnly: true,
		Secure: secure, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: CSRFCookie, Value: csrf, Path: "/", HttpOnly: false,
		Secure: secure, SameSite: http.SameSiteStrictMode})
}

// lookup returns the live session of r, touching it.
func (st *Sessions) lookup(r *http.Request) (*session, bool) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return nil, false
	}
	k := key(c.Value)
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.m[k]
	if !ok {
		return nil, false
	}
	if st.expiredLocked(s, now) {
		delete(st.m, k)
		return nil, false
	}
	s.seen = now
	cp := *s
	return &cp, true
}

// HasCookie reports whether r carries a session cookie at all (valid or
// not). The appliance uses it to decide that a request is a browser
// request: such requests never fall back to other credentials silently.
func HasCookie(r *http.Request) bool {
	c, err := r.Cookie(SessionCookie)
	return err == nil && c.Value != ""
}

// Authenticate returns the user of the session r carries. ok is false when
// there is no cookie or the session is unknown or expired.
func (st *Sessions) Authenticate(r *http.Request) (userID int64, ok bool) {
	s, ok := st.lookup(r)
	if !ok {
		return 0, false
	}
	return s.userID, true
}

// CSRFToken returns the CSRF token of r's session ("" without one).
func (st *Sessions) CSRFToken(r *http.Request) string {
	s, ok := st.lookup(r)
	if !ok {
		return ""
	}
	return s.csrf
}

// safeMethod reports methods that must not change state.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// CheckCSRF checks a cookie-authenticated request: safe methods pass;
// others need the session's token in the X-CSRF-Token header or, for
// form posts, the csrf_token field. It returns ErrCSRF otherwise
// (including when the session is unknown).
func (st *Sessions) CheckCSRF(r *http.Request) error {
	if safeMethod(r.Method) {
		return nil
	}
	s, ok := st.lookup(r)
	if !ok {
		return ErrCSRF
	}
	got := r.Header.Get(CSRFHeader)
	if got == "" {
		ct := r.Header.Get("Content-Type")
		if strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			r.Body = http.MaxBytesReader(nil, r.Body, 1<<20)
			got = r.PostFormValue(CSRFField)
		}
	}
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
		return ErrCSRF
	}
	return nil
}

// Destroy ends the session r carries and clears its cookies on w.
func (st *Sessions) Destroy(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		st.mu.Lock()
		delete(st.m, key(c.Value))
		st.mu.Unlock()
	}
	secure := r.TLS != nil
	for _, n := range []string{SessionCookie, CSRFCookie} {
		http.SetCookie(w, &http.Cookie{Name: n, Value: "", Path: "/", MaxAge: -1, HttpOnly: n == SessionCookie,
			Secure: secure, SameSite: http.SameSiteStrictMode})
	}
}

// EndUser ends every session of userID (after a password change or when
// the user is removed).
func (st *Sessions) EndUser(userID int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for k, s := range st.m {
		if s.userID == userID {
			delete(st.m, k)
		}
	}
}

// Len is the number of stored sessions (live or not yet pruned).
func (st *Sessions) Len() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.m)
}
