package web

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"golang.org/x/crypto/bcrypt"
)

// formCookie carries the double-submit token of forms shown before a
// session exists (login, setup): it stops login CSRF.
const formCookie = "cairn_form"

// issueFormToken sets a fresh form token cookie and returns it for the
// hidden field.
func issueFormToken(w http.ResponseWriter, r *http.Request) string {
	t := randomToken()
	http.SetCookie(w, &http.Cookie{Name: formCookie, Value: t, Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	return t
}

// checkFormToken checks a pre-session form post: same origin, and the
// form_token field equal to the cookie.
func checkFormToken(r *http.Request) bool {
	if !checkSameOrigin(r) {
		return false
	}
	c, err := r.Cookie(formCookie)
	if err != nil || c.Value == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue("form_token"))) == 1
}

// safeNext returns next if it is a local path, else "/".
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}

func (u *UI) handleLogin(w http.ResponseWriter, r *http.Request) {
	need, err := u.NeedsSetup(r.Context())
	if err != nil {
		http.Error(w, "catalog unavailable", http.StatusServiceUnavailable)
		return
	}
	if need {
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return
	}
	if u.current(r) != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	d := u.baseData(r, nil, "Log in")
	d.Form["next"] = safeNext(r.URL.Query().Get("next"))
	d.Form["form_token"] = issueFormToken(w, r)
	u.render(w, http.StatusOK, "login.html", d)
}

// dummyHash is compared against when the user does not exist, so a login
// takes as long for unknown names as for wrong passwords.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("cairn-no-such-user"), bcrypt.MinCost)

var errLogin = errors.New("wrong user name or password")

// CheckLogin verifies a user name and password against the users table
// (bcrypt hashes, as written by the API's user creation).
func (u *UI) CheckLogin(r *http.Request, name, password string) (*catalog.User, error) {
	usr, err := u.cfg.Store.User(r.Context(), name)
	if err != nil {
		bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		if errors.Is(err, catalog.ErrNotFound) {
			return nil, errLogin
		}
		return nil, err
	}
	if bcrypt.CompareHashAndPassword([]byte(usr.PasswordHash), []byte(password)) != nil {
		return nil, errLogin
	}
	return usr, nil
}

func (u *UI) handleLoginPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	name := strings.TrimSpace(r.PostFormValue("username"))
	next := safeNext(r.PostFormValue("next"))
	d := u.baseData(r, nil, "Log in")
	d.Form["username"], d.Form["next"] = name, next
	fail := func(code int, field, msg string) {
		d.Errors[field] = msg
		d.Form["form_token"] = issueFormToken(w, r)
		u.render(w, code, "login.html", d)
	}
	if !checkFormToken(r) {
		fail(http.StatusForbidden, "form", "This form expired or came from another site. Please try again (cookies must be enabled).")
		return
	}
	if d := u.limiter.wait(r, name); d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(d.Round(time.Second)/time.Second)+1))
		u.log.Warn("web: login refused while locked out", "user", name, "remote", r.RemoteAddr, "wait", d.Round(time.Second))
		fail(http.StatusTooManyRequests, "form", fmt.Sprintf("Too many failed attempts. Wait %s and try again.", d.Round(time.Second)))
		return
	}
	usr, err := u.CheckLogin(r, name, r.PostFormValue("password"))
	if errors.Is(err, errLogin) {
		u.limiter.fail(r, name)
		u.log.Warn("web: failed login", "user", name, "remote", r.RemoteAddr)
		fail(http.StatusUnauthorized, "password", "Wrong user name or password.")
		return
	}
	if err != nil {
		u.log.Error("web: login", "err", err)
		fail(http.StatusInternalServerError, "form", "The catalog could not be read; see the appliance log.")
		return
	}
	u.limiter.reset(name)
	u.Sessions.Create(w, r, usr.ID)
	u.log.Info("web: login", "user", usr.Name, "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (u *UI) handleLogout(w http.ResponseWriter, r *http.Request) {
	if u.Sessions.CheckCSRF(r) != nil {
		// Without a valid token this is either no session or a forged
		// post; either way nothing to end.
		if _, ok := u.Sessions.Authenticate(r); ok {
			http.Error(w, ErrCSRF.Error(), http.StatusForbidden)
			return
		}
	}
	u.Sessions.Destroy(w, r)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// loginLimiter locks a user name out after maxFails failures within
// failWindow, and a client address after maxAddrFails (a spray of names
// from one place). Each lockout of the same key lasts twice as long as the
// one before (failWindow, 2×, 4×, … up to maxLockout); a success resets a
// name, and a key that stays quiet for a day starts over.
type loginLimiter struct {
	now  func() time.Time
	mu   sync.Mutex
	keys map[string]*loginKey
}

type loginKey struct {
	fails    []time.Time // within failWindow
	until    time.Time   // locked out before this
	lockouts int         // consecutive lockouts, for the backoff
	last     time.Time
}

const (
	maxFails     = 10
	maxAddrFails = 50
	failWindow   = time.Minute
	maxLockout   = time.Hour
	lockoutReset = 24 * time.Hour
	maxLoginKeys = 10000
)

func newLoginLimiter(now func() time.Time) *loginLimiter {
	return &loginLimiter{now: now, keys: map[string]*loginKey{}}
}

// addrKey is the limiter key of a request's client address.
func addrKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "addr " + host
}

func (l *loginLimiter) key(k string, now time.Time) *loginKey {
	lk := l.keys[k]
	if lk != nil && now.Sub(lk.last) >= lockoutReset && !now.Before(lk.until) {
		lk = nil
	}
	if lk == nil {
		if len(l.keys) >= maxLoginKeys { // bound memory under a spray of names
			for kk, v := range l.keys {
				if !now.Before(v.until) {
					delete(l.keys, kk)
				}
			}
		}
		lk = &loginKey{}
		l.keys[k] = lk
	}
	return lk
}

// wait reports how long name (and the client address of r) are still
// locked out; 0 means a login may be tried.
func (l *loginLimiter) wait(r *http.Request, name string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var d time.Duration
	for _, k := range []string{"user " + name, addrKey(r)} {
		if lk := l.keys[k]; lk != nil && now.Before(lk.until) {
			d = max(d, lk.until.Sub(now))
		}
	}
	return d
}

func (l *loginLimiter) fail(r *http.Request, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range []struct {
		key string
		max int
	}{{"user " + name, maxFails}, {addrKey(r), maxAddrFails}} {
		lk := l.key(k.key, now)
		lk.last = now
		i := 0
		for i < len(lk.fails) && now.Sub(lk.fails[i]) >= failWindow {
			i++
		}
		lk.fails = append(lk.fails[i:], now)
		if len(lk.fails) >= k.max {
			d := failWindow << min(lk.lockouts, 10)
			lk.until, lk.fails = now.Add(min(d, maxLockout)), nil
			lk.lockouts++
		}
	}
}

// reset forgets a name's failures after a successful login.
func (l *loginLimiter) reset(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.keys, "user "+name)
}
