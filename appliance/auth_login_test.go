package appliance

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/appliance/schedule"
	"github.com/cairn-backup/cairn/appliance/web"
	"golang.org/x/crypto/bcrypt"
)

const loginPassword = "a long enough password 1"

// loginEnv is an appliance with users alice (admin) and bob (user), and a
// fake clock.
func loginEnv(t *testing.T) (*testEnv, *schedule.FakeClock) {
	clock := schedule.NewFakeClock(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	e := newEnv(t, Config{Clock: clock, GCSchedule: "-", CheckSchedule: "-"})
	// Minimum bcrypt cost: the login path is what is tested, and dozens
	// of logins under the race detector stay quick.
	hash, err := bcrypt.GenerateFromPassword([]byte(loginPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []catalog.User{{Name: "alice", Role: "admin"}, {Name: "bob", Role: "user"}} {
		u.PasswordHash = string(hash)
		if err := e.s.cat.CreateUser(context.Background(), &u); err != nil {
			t.Fatal(err)
		}
	}
	return e, clock
}

var formTokenRE = regexp.MustCompile(`name="form_token" value="([^"]+)"`)

// login posts the login form as a browser from addr would (GET the form
// first for its token cookie) and returns the answer.
func login(t *testing.T, e *testEnv, addr, name, password string, tlsOn bool) *http.Response {
	t.Helper()
	get := httptest.NewRequest("GET", "/login", nil)
	get.RemoteAddr = addr
	w := httptest.NewRecorder()
	e.s.Handler().ServeHTTP(w, get)
	m := formTokenRE.FindStringSubmatch(w.Body.String())
	if m == nil {
		t.Fatalf("GET /login: %d, no form token in %s", w.Code, w.Body)
	}
	form := url.Values{"username": {name}, "password": {password}, "form_token": {m[1]}}
	post := httptest.NewRequest("POST", "/login", strings.NewReader(form.Encode()))
	post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	post.RemoteAddr = addr
	if tlsOn {
		post.TLS = &tls.ConnectionState{}
	}
	for _, c := range w.Result().Cookies() {
		post.AddCookie(c)
	}
	w = httptest.NewRecorder()
	e.s.Handler().ServeHTTP(w, post)
	return w.Result()
}

// TestLoginLockoutBackoff: ten wrong passwords lock a name out (even the
// right password is refused, 429 with Retry-After); each further lockout
// lasts twice as long; a success resets it.
func TestLoginLockoutBackoff(t *testing.T) {
	e, clock := loginEnv(t)
	const addr = "192.0.2.1:1234"
	fails := func(n int) {
		t.Helper()
		for i := range n {
			if r := login(t, e, addr, "alice", "wrong", false); r.StatusCode != http.StatusUnauthorized {
				t.Fatalf("wrong password %d: %d", i, r.StatusCode)
			}
		}
	}
	locked := func(when string) {
		t.Helper()
		r := login(t, e, addr, "alice", loginPassword, false)
		if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: %d (Retry-After %q), want 429", when, r.StatusCode, r.Header.Get("Retry-After"))
		}
	}
	fails(10)
	locked("after 10 failures")
	// Another user is not affected.
	if r := login(t, e, "192.0.2.9:1", "bob", loginPassword, false); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("bob during alice's lockout: %d", r.StatusCode)
	}
	clock.Advance(time.Minute)
	fails(10) // second lockout: 2 minutes
	clock.Advance(time.Minute + time.Second)
	locked("one minute into the second lockout")
	clock.Advance(time.Minute)
	fails(10) // third: 4 minutes
	clock.Advance(3 * time.Minute)
	locked("three minutes into the third lockout")
	clock.Advance(time.Minute + time.Second)
	if r := login(t, e, addr, "alice", loginPassword, false); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the third lockout: %d, want 303", r.StatusCode)
	}
	// The success reset the backoff: ten failures lock for one minute.
	fails(10)
	locked("after the reset")
	clock.Advance(time.Minute + time.Second)
	if r := login(t, e, addr, "alice", loginPassword, false); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("one minute after the first lockout since the reset: %d, want 303", r.StatusCode)
	}
	// The log says who was refused, never with the password.
	if logs := e.logs.String(); !strings.Contains(logs, "locked out") || strings.Contains(logs, loginPassword) {
		t.Fatalf("log: lockout missing or password leaked:\n%s", logs)
	}
}

// TestLoginAddressLockout: one client spraying many names is locked out as
// a whole, whatever name it tries next; other clients are not.
func TestLoginAddressLockout(t *testing.T) {
	e, _ := loginEnv(t)
	const addr = "198.51.100.7:555"
	for i := range 50 {
		if r := login(t, e, addr, fmt.Sprintf("guess%d", i), "x", false); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, r.StatusCode)
		}
	}
	if r := login(t, e, addr, "alice", loginPassword, false); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("sprayer's next login: %d, want 429", r.StatusCode)
	}
	if r := login(t, e, "198.51.100.8:555", "alice", loginPassword, false); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("another client: %d, want 303", r.StatusCode)
	}
}

// TestSessionCookieFlags: the session cookie is HttpOnly and SameSite
// Strict, and Secure when the login came over TLS; the CSRF cookie is
// readable by the page's script but otherwise the same. A session ends
// after its idle timeout and its maximum age.
func TestSessionCookieFlags(t *testing.T) {
	e, clock := loginEnv(t)
	for _, tlsOn := range []bool{false, true} {
		r := login(t, e, "192.0.2.1:1", "alice", loginPassword, tlsOn)
		if r.StatusCode != http.StatusSeeOther {
			t.Fatalf("login (tls %v): %d", tlsOn, r.StatusCode)
		}
		got := map[string]*http.Cookie{}
		for _, c := range r.Cookies() {
			got[c.Name] = c
		}
		s, c := got[web.SessionCookie], got[web.CSRFCookie]
		if s == nil || c == nil {
			t.Fatalf("tls %v: cookies %v", tlsOn, r.Header["Set-Cookie"])
		}
		if !s.HttpOnly || s.SameSite != http.SameSiteStrictMode || s.Secure != tlsOn || s.Path != "/" {
			t.Errorf("tls %v: session cookie %+v", tlsOn, s)
		}
		if c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure != tlsOn {
			t.Errorf("tls %v: CSRF cookie %+v", tlsOn, c)
		}
		if len(s.Value) < 40 {
			t.Errorf("session id of %d characters", len(s.Value))
		}
	}
	// Idle timeout, then maximum age even when used all along.
	whoami := func(sid string) int {
		req := httptest.NewRequest("GET", "/api/v1/whoami", nil)
		req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: sid})
		w := httptest.NewRecorder()
		e.s.Handler().ServeHTTP(w, req)
		return w.Code
	}
	sid := func() string {
		for _, c := range login(t, e, "192.0.2.1:1", "alice", loginPassword, false).Cookies() {
			if c.Name == web.SessionCookie {
				return c.Value
			}
		}
		t.Fatal("no session cookie")
		return ""
	}
	idle := sid()
	if whoami(idle) != 200 {
		t.Fatal("fresh session refused")
	}
	clock.Advance(web.DefaultIdleTimeout)
	if c := whoami(idle); c != 401 {
		t.Fatalf("session idle for %v: %d, want 401", web.DefaultIdleTimeout, c)
	}
	busy, born := sid(), clock.Now()
	for clock.Now().Sub(born) < web.DefaultMaxAge-web.DefaultIdleTimeout/2 {
		clock.Advance(web.DefaultIdleTimeout / 2)
		if c := whoami(busy); c != 200 {
			t.Fatalf("session in use, %v old: %d", clock.Now().Sub(born), c)
		}
	}
	clock.Advance(web.DefaultIdleTimeout / 2)
	if c := whoami(busy); c != 401 {
		t.Fatalf("session older than %v: %d, want 401", web.DefaultMaxAge, c)
	}
}
