package web

import (
	"crypto/subtle"
	"errors"
	"net/http"
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
	if !u.limiter.allow(name) {
		fail(http.StatusTooManyRequests, "form", "Too many failed attempts for this user. Wait a minute and try again.")
		return
	}
	usr, err := u.CheckLogin(r, name, r.PostFormValue("password"))
	if errors.Is(err, errLogin) {
		u.limiter.fail(name)
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

// loginLimiter refuses a user name after maxFails failures within
// failWindow, until the window has passed.
type loginLimiter struct {
	now   func() time.Time
	mu    sync.Mutex
	fails map[string][]time.Time
}

const (
	maxFails   = 10
	failWindow = time.Minute
)

func newLoginLimiter(now func() time.Time) *loginLimiter {
	return &loginLimiter{now: now, fails: map[string][]time.Time{}}
}

func (l *loginLimiter) recent(name string) []time.Time {
	now := l.now()
	ts := l.fails[name]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= failWindow {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.fails, name)
	} else {
		l.fails[name] = ts
	}
	return ts
}

func (l *loginLimiter) allow(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recent(name)) < maxFails
}

func (l *loginLimiter) fail(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fails) > 10000 { // bound memory under a spray of names
		l.fails = map[string][]time.Time{}
	}
	l.fails[name] = append(l.recent(name), l.now())
}

func (l *loginLimiter) reset(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, name)
}
