package web

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"golang.org/x/crypto/bcrypt"
)

// clock is an injectable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t     *testing.T
	ui    *UI
	cat   *catalog.DB
	srv   *httptest.Server
	clock *clock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cat, err := catalog.Open(context.Background(), filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	c := &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	ui, err := New(Config{Store: cat, Now: c.now, Version: "test", PoolLocation: t.TempDir(),
		BcryptCost: bcrypt.MinCost, Methods: func() []string { return []string{"local", "sftp"} }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ui.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, ui: ui, cat: cat, srv: srv, clock: c}
}

// client is a browser-like client: a cookie jar, redirects not followed.
type client struct {
	e   *env
	hc  *http.Client
	jar *cookiejar.Jar
}

func (e *env) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{e: e, jar: jar, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

func (c *client) do(method, path string, form url.Values, hdr map[string]string) (int, http.Header, string) {
	c.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.e.srv.URL+path, body)
	if err != nil {
		c.e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		c.e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

func (c *client) get(path string) (int, http.Header, string) { return c.do("GET", path, nil, nil) }

func (c *client) cookie(name string) string {
	u, _ := url.Parse(c.e.srv.URL)
	for _, ck := range c.jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

var hiddenRe = regexp.MustCompile(`name="(form_token|csrf_token)" value="([^"]*)"`)

// hidden returns the value of the hidden form_token/csrf_token field.
func hidden(t *testing.T, page, name string) string {
	t.Helper()
	for _, m := range hiddenRe.FindAllStringSubmatch(page, -1) {
		if m[1] == name {
			return m[2]
		}
	}
	t.Fatalf("no hidden %s in page:\n%s", name, page)
	return ""
}

const goodPassword = "calm-River-42x"

// setup creates the admin through the wizard and returns the logged-in
// client.
func (e *env) setup(name string) *client {
	e.t.Helper()
	c := e.client()
	code, _, page := c.get("/setup")
	if code != 200 {
		e.t.Fatalf("GET /setup: %d", code)
	}
	code, h, page := c.do("POST", "/setup", url.Values{"form_token": {hidden(e.t, page, "form_token")}, "token": {e.ui.SetupToken()},
		"username": {name}, "password": {goodPassword}, "password2": {goodPassword}}, nil)
	if code != http.StatusSeeOther || h.Get("Location") != "/setup/storage" {
		e.t.Fatalf("POST /setup: %d %s\n%s", code, h.Get("Location"), page)
	}
	return c
}

func TestRedirectsToSetupUntilAdminExists(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	for _, p := range []string{"/", "/hosts", "/users", "/login", "/jobs/3", "/nope"} {
		code, h, _ := c.get(p)
		if code != http.StatusSeeOther || h.Get("Location") != "/setup" {
			t.Errorf("GET %s: %d to %q, want 303 to /setup", p, code, h.Get("Location"))
		}
	}
	code, _, page := c.get("/setup?token=abc")
	if code != 200 || !strings.Contains(page, "Welcome to Cairn") || !strings.Contains(page, `value="abc"`) {
		t.Fatalf("GET /setup: %d\n%s", code, page)
	}
	// Static assets are public (the setup page needs them).
	code, h, css := c.get("/static/style.css")
	if code != 200 || !strings.Contains(css, "system-ui") || !strings.HasPrefix(h.Get("Content-Type"), "text/css") {
		t.Fatalf("style.css: %d %s", code, h.Get("Content-Type"))
	}
	e.setup("admin")
	code, h, _ = e.client().get("/")
	if code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
		t.Fatalf("after setup, GET / without session: %d %s", code, h.Get("Location"))
	}
}

func TestSetupNeedsToken(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	_, _, page := c.get("/setup")
	ft := hidden(t, page, "form_token")
	for _, tok := range []string{"", "wrong", e.ui.SetupToken() + "x"} {
		code, _, page := c.do("POST", "/setup", url.Values{"form_token": {ft}, "token": {tok}, "username": {"admin"},
			"password": {goodPassword}, "password2": {goodPassword}}, nil)
		if code != http.StatusForbidden || !strings.Contains(page, "Wrong setup token") {
			t.Fatalf("token %q: %d\n%s", tok, code, page)
		}
		ft = hidden(t, page, "form_token")
	}
	if ok, _ := e.cat.AdminExists(context.Background()); ok {
		t.Fatal("an admin was created without the token")
	}
	// Without the form cookie (a cross-site post) even the right token fails.
	code, _, page := e.client().do("POST", "/setup", url.Values{"form_token": {ft}, "token": {e.ui.SetupToken()},
		"username": {"admin"}, "password": {goodPassword}, "password2": {goodPassword}}, nil)
	if code != http.StatusForbidden || !strings.Contains(page, "expired or came from another site") {
		t.Fatalf("post without form cookie: %d\n%s", code, page)
	}
	old := e.ui.SetupToken()
	admin := e.setup("admin")
	if e.ui.SetupToken() == old {
		t.Fatal("setup token not rotated after use")
	}
	// The admin is logged in and walks through the remaining steps.
	code, _, page = admin.get("/setup/storage")
	if code != 200 || !strings.Contains(page, `id="storage-form"`) || !strings.Contains(page, `<script src="/static/setup_storage.js" defer>`) {
		t.Fatalf("storage step: %d\n%s", code, page)
	}
	_, _, page = admin.get("/setup/timezone")
	csrf := hidden(t, page, "csrf_token")
	code, _, page = admin.do("POST", "/setup/timezone", url.Values{"csrf_token": {csrf}, "timezone": {"Mars/Olympus"}}, nil)
	if code != http.StatusBadRequest || !strings.Contains(page, "Unknown timezone") {
		t.Fatalf("bad timezone: %d\n%s", code, page)
	}
	code, _, _ = admin.do("POST", "/setup/timezone", url.Values{"timezone": {"Europe/Berlin"}}, nil)
	if code != http.StatusForbidden {
		t.Fatalf("timezone without CSRF token: %d, want 403", code)
	}
	code, h, _ := admin.do("POST", "/setup/timezone", url.Values{"csrf_token": {csrf}, "timezone": {"Europe/Berlin"}}, nil)
	if code != http.StatusSeeOther || h.Get("Location") != "/setup/tls" {
		t.Fatalf("timezone: %d %s", code, h.Get("Location"))
	}
	// The HTTPS step comes after the timezone and leads on to the schedule.
	code, _, page = admin.get("/setup/tls")
	if code != 200 || !strings.Contains(page, `<li class="current">HTTPS</li>`) ||
		!strings.Contains(page, `<a class="button primary" id="tls-next" href="/setup/defaults">`) ||
		!strings.Contains(page, `<script src="/static/setup_tls.js" defer>`) {
		t.Fatalf("HTTPS step: %d\n%s", code, page)
	}
	// Every step lists the same steps, HTTPS between timezone and schedule.
	for _, step := range []string{"/setup/storage", "/setup/timezone", "/setup/defaults", "/setup/host"} {
		_, _, page = admin.get(step)
		if !strings.Contains(page, `Timezone</li><li>HTTPS</li><li`) && !strings.Contains(page, `Timezone</li><li class="current">HTTPS</li>`) {
			t.Errorf("%s: step list without HTTPS after Timezone\n%s", step, page)
		}
	}
	if tz, _, _ := e.cat.Setting(context.Background(), SettingTimezone); tz != "Europe/Berlin" {
		t.Fatalf("timezone setting %q", tz)
	}
	code, h, _ = admin.do("POST", "/setup/done", url.Values{"csrf_token": {csrf}}, nil)
	if code != http.StatusSeeOther || h.Get("Location") != "/" {
		t.Fatalf("setup done: %d %s", code, h.Get("Location"))
	}
	code, _, page = admin.get("/")
	if code != 200 || !strings.Contains(page, "<h1>Dashboard</h1>") || !strings.Contains(page, `content="Europe/Berlin"`) {
		t.Fatalf("dashboard: %d\n%s", code, page)
	}
	// Setup is closed now, token or not.
	code, h, _ = e.client().get("/setup?token=" + e.ui.SetupToken())
	if code != http.StatusSeeOther || h.Get("Location") != "/login" {
		t.Fatalf("GET /setup after setup: %d %s", code, h.Get("Location"))
	}
	us, _ := e.cat.Users(context.Background())
	if len(us) != 1 || us[0].Role != catalog.RoleAdmin || us[0].Name != "admin" {
		t.Fatalf("users: %+v", us)
	}
}

func TestSetupPasswordPolicy(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	_, _, page := c.get("/setup")
	for _, tc := range []struct{ user, pw, pw2, want string }{
		{"admin", "Short1x", "Short1x", "at least 12 characters"},
		{"admin", "alllowercaseletters", "alllowercaseletters", "two kinds"},
		{"admin", "123456789012345", "123456789012345", "two kinds"},
		{"backupadmin", "my-BackupAdmin-pw", "my-BackupAdmin-pw", "user name"},
		{"admin", goodPassword, goodPassword + "!", "passwords differ"},
		{"-bad name", goodPassword, goodPassword, "letters, digits"},
	} {
		code, _, p := c.do("POST", "/setup", url.Values{"form_token": {hidden(t, page, "form_token")}, "token": {e.ui.SetupToken()},
			"username": {tc.user}, "password": {tc.pw}, "password2": {tc.pw2}}, nil)
		if code != http.StatusBadRequest || !strings.Contains(p, tc.want) || !strings.Contains(p, `class="field-error"`) {
			t.Errorf("%s/%s: %d, want 400 with %q next to the field\n%s", tc.user, tc.pw, code, tc.want, p)
		}
		page = p
	}
	if ok, _ := e.cat.AdminExists(context.Background()); ok {
		t.Fatal("admin created with a weak password")
	}
}

func TestCheckPassword(t *testing.T) {
	for _, tc := range []struct {
		user, pw string
		ok       bool
	}{
		{"admin", goodPassword, true},
		{"admin", "correct horse battery", true}, // letters and spaces
		{"admin", "ÄÖÜäöüßéèêëç", true},          // 12 runes, two classes
		{"admin", "elevenchar1", false},
		{"admin", "ABCDEFGHIJKLMN", false},
		{"admin", "my-ADMIN-password", false},
		{"bob", strings.Repeat("aB", 40), false}, // > 72 bytes
	} {
		if err := CheckPassword(tc.user, tc.pw); (err == nil) != tc.ok {
			t.Errorf("CheckPassword(%q, %q) = %v, want ok=%v", tc.user, tc.pw, err, tc.ok)
		}
	}
}

func TestLoginLogout(t *testing.T) {
	e := newEnv(t)
	e.setup("admin")
	c := e.client()
	code, h, _ := c.get("/hosts")
	if code != http.StatusSeeOther || h.Get("Location") != "/login?next=%2Fhosts" {
		t.Fatalf("GET /hosts: %d %s", code, h.Get("Location"))
	}
	_, _, page := c.get("/login?next=/hosts")
	code, _, page = c.do("POST", "/login", url.Values{"form_token": {hidden(t, page, "form_token")}, "next": {"/hosts"},
		"username": {"admin"}, "password": {"wrong-Password-1"}}, nil)
	if code != http.StatusUnauthorized || !strings.Contains(page, "Wrong user name or password") {
		t.Fatalf("wrong password: %d\n%s", code, page)
	}
	code, _, page2 := c.do("POST", "/login", url.Values{"form_token": {hidden(t, page, "form_token")},
		"username": {"nobody"}, "password": {goodPassword}}, nil)
	if code != http.StatusUnauthorized || !strings.Contains(page2, "Wrong user name or password") {
		t.Fatalf("unknown user: %d", code)
	}
	if c.cookie(SessionCookie) != "" {
		t.Fatal("session cookie after failed logins")
	}
	code, h, _ = c.do("POST", "/login", url.Values{"form_token": {hidden(t, page2, "form_token")}, "next": {"/hosts"},
		"username": {"admin"}, "password": {goodPassword}}, nil)
	if code != http.StatusSeeOther || h.Get("Location") != "/hosts" {
		t.Fatalf("login: %d %s", code, h.Get("Location"))
	}
	var sc *http.Cookie
	for _, ck := range (&http.Response{Header: h}).Cookies() {
		if ck.Name == SessionCookie {
			sc = ck
		}
	}
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/" || sc.Secure {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP", sc)
	}
	code, h, page = c.get("/hosts")
	if code != 200 || !strings.Contains(page, "<h1>Hosts</h1>") || !strings.Contains(page, "admin (admin)") {
		t.Fatalf("hosts page: %d\n%s", code, page)
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Fatalf("CSP %q", csp)
	}
	csrf := hidden(t, page, "csrf_token")
	if csrf != c.cookie(CSRFCookie) || !strings.Contains(page, `<meta name="csrf-token" content="`+csrf+`">`) {
		t.Fatal("CSRF token differs between form, meta tag and cookie")
	}
	// Logout is a POST with the CSRF token; a forged one does nothing.
	code, _, _ = c.do("POST", "/logout", url.Values{}, nil)
	if code != http.StatusForbidden {
		t.Fatalf("logout without token: %d", code)
	}
	code, h, _ = c.do("POST", "/logout", url.Values{"csrf_token": {csrf}}, nil)
	if code != http.StatusSeeOther || h.Get("Location") != "/login" {
		t.Fatalf("logout: %d %s", code, h.Get("Location"))
	}
	if e.ui.Sessions.Len() != 1 { // the setup client's session remains
		t.Fatalf("%d sessions after logout, want 1", e.ui.Sessions.Len())
	}
	code, _, _ = c.get("/hosts")
	if code != http.StatusSeeOther {
		t.Fatalf("after logout: %d", code)
	}
}

func TestLoginOpenRedirect(t *testing.T) {
	for in, want := range map[string]string{"/hosts": "/hosts", "//evil.example/": "/", "https://evil.example": "/",
		"/\\evil": "/", "": "/", "/jobs?x=1": "/jobs?x=1"} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoginCrossSiteRefused(t *testing.T) {
	e := newEnv(t)
	e.setup("admin")
	c := e.client()
	_, _, page := c.get("/login")
	code, _, _ := c.do("POST", "/login", url.Values{"form_token": {hidden(t, page, "form_token")}, "username": {"admin"},
		"password": {goodPassword}}, map[string]string{"Origin": "http://evil.example"})
	if code != http.StatusForbidden {
		t.Fatalf("cross-origin login: %d, want 403", code)
	}
	code, _, _ = c.do("POST", "/login", url.Values{"form_token": {"forged"}, "username": {"admin"}, "password": {goodPassword}}, nil)
	if code != http.StatusForbidden {
		t.Fatalf("login with a forged form token: %d, want 403", code)
	}
}

func TestLoginRateLimit(t *testing.T) {
	e := newEnv(t)
	e.setup("admin")
	c := e.client()
	_, _, page := c.get("/login")
	try := func(pw string) int {
		code, _, p := c.do("POST", "/login", url.Values{"form_token": {hidden(t, page, "form_token")}, "username": {"admin"},
			"password": {pw}}, nil)
		page = p
		return code
	}
	for i := 0; i < maxFails; i++ {
		if code := try("nope-Nope-nope"); code != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, code)
		}
	}
	if code := try(goodPassword); code != http.StatusTooManyRequests {
		t.Fatalf("after %d failures: %d, want 429", maxFails, code)
	}
	e.clock.add(failWindow)
	if code := try(goodPassword); code != http.StatusSeeOther {
		t.Fatalf("after the window: %d, want 303", code)
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newEnv(t)
	c := e.setup("admin")
	req := func() *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: c.cookie(SessionCookie)})
		return r
	}
	if _, ok := e.ui.Sessions.Authenticate(req()); !ok {
		t.Fatal("fresh session not accepted")
	}
	// Use keeps it alive past the idle timeout…
	for i := 0; i < 3; i++ {
		e.clock.add(DefaultIdleTimeout - time.Minute)
		if code, _, _ := c.get("/"); code != 200 {
			t.Fatalf("active session refused after %v: %d", time.Duration(i+1)*(DefaultIdleTimeout-time.Minute), code)
		}
	}
	// …but not idle.
	e.clock.add(DefaultIdleTimeout)
	if _, ok := e.ui.Sessions.Authenticate(req()); ok {
		t.Fatal("idle session still accepted")
	}
	if code, h, _ := c.get("/"); code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
		t.Fatalf("expired session: %d %s", code, h.Get("Location"))
	}
	// MaxAge ends even a busy session.
	s := NewSessions(e.clock.now)
	w := httptest.NewRecorder()
	s.Create(w, httptest.NewRequest("POST", "/login", nil), 7)
	r := httptest.NewRequest("GET", "/", nil)
	for _, ck := range w.Result().Cookies() {
		r.AddCookie(ck)
	}
	for elapsed := time.Duration(0); elapsed < DefaultMaxAge; elapsed += time.Hour {
		if id, ok := s.Authenticate(r); !ok || id != 7 {
			t.Fatalf("busy session refused at %v", elapsed)
		}
		e.clock.add(time.Hour)
	}
	if _, ok := s.Authenticate(r); ok {
		t.Fatal("session older than MaxAge accepted")
	}
}

func TestCheckCSRF(t *testing.T) {
	s := NewSessions(nil)
	w := httptest.NewRecorder()
	s.Create(w, httptest.NewRequest("POST", "/login", nil), 1)
	var sess, tok string
	for _, ck := range w.Result().Cookies() {
		switch ck.Name {
		case SessionCookie:
			sess = ck.Value
		case CSRFCookie:
			tok = ck.Value
			if ck.HttpOnly {
				t.Fatal("CSRF cookie must be readable by scripts")
			}
		}
	}
	mk := func(method, header, form string) *http.Request {
		var r *http.Request
		if form != "" {
			r = httptest.NewRequest(method, "/api/v1/hosts", strings.NewReader(url.Values{CSRFField: {form}}.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			r = httptest.NewRequest(method, "/api/v1/hosts", strings.NewReader(`{"name":"x"}`))
			r.Header.Set("Content-Type", "application/json")
		}
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: sess})
		if header != "" {
			r.Header.Set(CSRFHeader, header)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		r    *http.Request
		ok   bool
	}{
		{"GET without token", mk("GET", "", ""), true},
		{"HEAD without token", mk("HEAD", "", ""), true},
		{"POST without token", mk("POST", "", ""), false},
		{"DELETE without token", mk("DELETE", "", ""), false},
		{"PATCH with wrong token", mk("PATCH", tok[:len(tok)-1]+"x", ""), false},
		{"POST with the cookie value of another session", mk("POST", "x"+tok, ""), false},
		{"POST with header", mk("POST", tok, ""), true},
		{"DELETE with header", mk("DELETE", tok, ""), true},
		{"form POST with field", mk("POST", "", tok), true},
		{"form POST with wrong field", mk("POST", "", "nope"), false},
	} {
		err := s.CheckCSRF(tc.r)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrCSRF)) {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	// A valid token but no (or an unknown) session fails too.
	r := httptest.NewRequest("POST", "/api/v1/hosts", nil)
	r.Header.Set(CSRFHeader, tok)
	if s.CheckCSRF(r) == nil {
		t.Fatal("CSRF check passed without a session")
	}
}

func TestSessionFixationAndEndUser(t *testing.T) {
	s := NewSessions(nil)
	w := httptest.NewRecorder()
	s.Create(w, httptest.NewRequest("POST", "/login", nil), 1)
	old := w.Result().Cookies()
	r := httptest.NewRequest("POST", "/login", nil)
	for _, ck := range old {
		r.AddCookie(ck)
	}
	s.Create(httptest.NewRecorder(), r, 2) // logging in again ends the old session
	if _, ok := s.Authenticate(r); ok {
		t.Fatal("the session carried into a new login survived")
	}
	w = httptest.NewRecorder()
	s.Create(w, httptest.NewRequest("POST", "/login", nil), 5)
	r = httptest.NewRequest("GET", "/", nil)
	for _, ck := range w.Result().Cookies() {
		r.AddCookie(ck)
	}
	s.EndUser(5)
	if _, ok := s.Authenticate(r); ok {
		t.Fatal("EndUser left a session")
	}
	// Secure cookies over TLS.
	tr := httptest.NewRequest("POST", "https://cairn.example/login", nil)
	w = httptest.NewRecorder()
	s.Create(w, tr, 9)
	for _, ck := range w.Result().Cookies() {
		if !ck.Secure {
			t.Fatalf("cookie %s not Secure over TLS", ck.Name)
		}
	}
}

func TestRolePages(t *testing.T) {
	e := newEnv(t)
	admin := e.setup("admin")
	// alice sees web1 (group A) and its snapshot abc.
	ctx := context.Background()
	if _, err := e.cat.CreateGroup(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	if err := e.cat.CreateHost(ctx, &catalog.Host{Name: "web1", Enabled: true, Groups: []string{"A"}}); err != nil {
		t.Fatal(err)
	}
	if err := e.cat.PutSnapshot(ctx, &catalog.Snapshot{ID: "abc", Host: "web1", Source: "/", Started: e.clock.now(), Finished: e.clock.now(),
		Root: strings.Repeat("a", 64), Status: "ok"}); err != nil {
		t.Fatal(err)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte(goodPassword), bcrypt.MinCost)
	if err := e.cat.CreateUser(ctx, &catalog.User{Name: "alice", PasswordHash: string(hash), Role: catalog.RoleUser, Groups: []string{"A"}}); err != nil {
		t.Fatal(err)
	}
	c := e.client()
	_, _, page := c.get("/login")
	if code, _, _ := c.do("POST", "/login", url.Values{"form_token": {hidden(t, page, "form_token")}, "username": {"alice"},
		"password": {goodPassword}}, nil); code != http.StatusSeeOther {
		t.Fatalf("alice login: %d", code)
	}
	for path, want := range map[string]int{"/": 200, "/hosts": 200, "/tokens": 200, "/users": 404, "/hosts/new": 404, "/setup/storage": 404,
		"/verify": 404, "/replication": 404, "/audit": 404, "/instances": 404, "/system": 404, "/setup/disk": 404, "/setup/defaults": 404,
		"/setup/tls": 404} {
		if code, _, _ := c.get(path); code != want {
			t.Errorf("alice GET %s: %d, want %d", path, code, want)
		}
	}
	_, _, page = c.get("/")
	if strings.Contains(page, `href="/users"`) {
		t.Error("a user sees the Users link")
	}
	for path, want := range map[string]string{"/users": "Users and groups", "/hosts/new": `data-methods="local,sftp"`,
		"/hosts/web1": `data-host="web1"`, "/snapshots/abc/etc/passwd": `data-path="etc/passwd"`, "/jobs/12": `data-id="12"`} {
		code, _, page := admin.get(path)
		if code != 200 || !strings.Contains(page, want) {
			t.Errorf("admin GET %s: %d, want %q in\n%s", path, code, want, page)
		}
	}
	if code, _, page := admin.get("/no/such/page"); code != 404 || !strings.Contains(page, "Not found") {
		t.Errorf("unknown page: %d", code)
	}

	// Role-dependent controls: the connection test and restores for
	// operators, accepting a new key and in-place restores for admins
	// only (the API refuses them to others too); downloads and the WebDAV
	// address for everyone.
	if err := e.cat.CreateUser(context.Background(), &catalog.User{Name: "otto", PasswordHash: string(hash), Role: catalog.RoleOperator}); err != nil {
		t.Fatal(err)
	}
	oper := e.client()
	_, _, page = oper.get("/login")
	if code, _, _ := oper.do("POST", "/login", url.Values{"form_token": {hidden(t, page, "form_token")}, "username": {"otto"},
		"password": {goodPassword}}, nil); code != http.StatusSeeOther {
		t.Fatalf("otto login: %d", code)
	}
	for path, want := range map[string]int{"/verify": 200, "/replication": 200, "/audit": 200, "/instances": 200, "/system": 404, "/setup/disk": 404} {
		if code, _, _ := oper.get(path); code != want {
			t.Errorf("otto GET %s: %d, want %d", path, code, want)
		}
	}
	type want struct{ in, out []string }
	checks := map[string]map[*client]want{
		"/replication": {
			oper:  {in: []string{`id="targets"`, `href="/verify"`}, out: []string{`id="target-form"`, `id="rtoken-form"`, `href="/system"`}},
			admin: {in: []string{`id="target-form"`, `id="rtoken-form"`, `href="/system"`}},
		},
		"/verify": {
			oper:  {in: []string{`id="rt-run"`}, out: []string{`id="rt-schedule"`}},
			admin: {in: []string{`id="rt-run"`, `id="rt-schedule"`}},
		},
		"/hosts/web1": {
			c:     {out: []string{`id="test-conn"`}},
			oper:  {in: []string{`id="test-conn"`, `data-admin=""`}},
			admin: {in: []string{`id="test-conn"`, `data-admin="1"`}},
		},
		"/snapshots/abc/etc": {
			c:     {in: []string{`id="dl-zip"`, `id="dl-tzst"`, `id="dav-url"`}, out: []string{`id="restore-form"`, `id="r-where-host"`}},
			oper:  {in: []string{`id="dav-url"`, `id="restore-form"`, `id="r-where-host"`, `id="r-dest"`}, out: []string{`id="r-in-place"`}},
			admin: {in: []string{`id="r-where-host"`, `id="r-in-place"`, `id="r-in-place-warn"`}},
		},
	}
	names := map[*client]string{c: "user", oper: "operator", admin: "admin"}
	for path, byRole := range checks {
		for cl, w := range byRole {
			code, _, page := cl.get(path)
			if code != 200 {
				t.Errorf("%s GET %s: %d", names[cl], path, code)
			}
			for _, s := range w.in {
				if !strings.Contains(page, s) {
					t.Errorf("%s GET %s lacks %s", names[cl], path, s)
				}
			}
			for _, s := range w.out {
				if strings.Contains(page, s) {
					t.Errorf("%s GET %s shows %s", names[cl], path, s)
				}
			}
		}
	}
}

// TestHiddenHostPages checks that the pages of a host a user may not see
// (its page, its snapshot list, a snapshot of it, a job of it) are the
// not-found page with 404, byte for byte the page of a host, snapshot or
// job that does not exist, while the user's own host's pages are served;
// operators see every host.
func TestHiddenHostPages(t *testing.T) {
	e := newEnv(t)
	admin := e.setup("admin")
	ctx := context.Background()
	if _, err := e.cat.CreateGroup(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cat.CreateGroup(ctx, "B"); err != nil {
		t.Fatal(err)
	}
	jobs := map[string]int64{}
	for host, group := range map[string]string{"web1": "A", "web2": "B"} {
		if err := e.cat.CreateHost(ctx, &catalog.Host{Name: host, Enabled: true, Groups: []string{group}}); err != nil {
			t.Fatal(err)
		}
		now := e.clock.now()
		if err := e.cat.PutSnapshot(ctx, &catalog.Snapshot{ID: "snap-" + host, Host: host, Source: "/", Started: now, Finished: now,
			Root: strings.Repeat("a", 64), Status: "ok"}); err != nil {
			t.Fatal(err)
		}
		j := &catalog.Job{Kind: "backup", Host: host, State: "done"}
		if err := e.cat.CreateJob(ctx, j); err != nil {
			t.Fatal(err)
		}
		jobs[host] = j.ID
	}
	hostless := &catalog.Job{Kind: "gc", State: "done"}
	if err := e.cat.CreateJob(ctx, hostless); err != nil {
		t.Fatal(err)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte(goodPassword), bcrypt.MinCost)
	for _, u := range []*catalog.User{{Name: "alice", Role: catalog.RoleUser, Groups: []string{"A"}}, {Name: "otto", Role: catalog.RoleOperator}} {
		u.PasswordHash = string(hash)
		if err := e.cat.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	login := func(name string) *client {
		c := e.client()
		_, _, page := c.get("/login")
		if code, _, _ := c.do("POST", "/login", url.Values{"form_token": {hidden(t, page, "form_token")}, "username": {name},
			"password": {goodPassword}}, nil); code != http.StatusSeeOther {
			t.Fatalf("%s login: %d", name, code)
		}
		return c
	}
	alice, otto := login("alice"), login("otto")
	job := func(id int64) string { return "/jobs/" + strconv.FormatInt(id, 10) }

	// Each row: alice's own host's page, the hidden one's, and one that
	// does not exist.
	for _, row := range []struct{ own, hidden, missing, want string }{
		{"/hosts/web1", "/hosts/web2", "/hosts/nohost", `data-host="web1"`},
		{"/browse/web1", "/browse/web2", "/browse/nohost", `data-host="web1"`},
		{"/snapshots/snap-web1/", "/snapshots/snap-web2/", "/snapshots/snap-nohost/", `data-id="snap-web1"`},
		{"/snapshots/snap-web1/etc/passwd", "/snapshots/snap-web2/etc/passwd", "/snapshots/snap-nohost/etc/passwd", `data-path="etc/passwd"`},
		{job(jobs["web1"]), job(jobs["web2"]), job(jobs["web2"] + 1000), `data-id="` + strconv.FormatInt(jobs["web1"], 10) + `"`},
	} {
		if code, _, page := alice.get(row.own); code != 200 || !strings.Contains(page, row.want) {
			t.Errorf("alice GET %s: %d, want 200 with %q\n%s", row.own, code, row.want, page)
		}
		code, _, hiddenPage := alice.get(row.hidden)
		if code != http.StatusNotFound || !strings.Contains(hiddenPage, "<h1>Not found</h1>") {
			t.Errorf("alice GET %s: %d, want 404 and the not-found page\n%s", row.hidden, code, hiddenPage)
		}
		if strings.Contains(hiddenPage, "web2") {
			t.Errorf("alice GET %s: the page names the hidden host\n%s", row.hidden, hiddenPage)
		}
		code, _, missingPage := alice.get(row.missing)
		if code != http.StatusNotFound {
			t.Errorf("alice GET %s: %d, want 404", row.missing, code)
		}
		if hiddenPage != missingPage {
			t.Errorf("alice: %s and %s differ:\n%s\n----\n%s", row.hidden, row.missing, hiddenPage, missingPage)
		}
		// Operators (and admins) see every host.
		for who, c := range map[string]*client{"otto": otto, "admin": admin} {
			if code, _, page := c.get(row.hidden); code != 200 || strings.Contains(page, "<h1>Not found</h1>") {
				t.Errorf("%s GET %s: %d, want the page", who, row.hidden, code)
			}
		}
	}
	// A job without a host (gc) is for operators; a bad job id is 404.
	for path, want := range map[string]int{job(hostless.ID): 404, "/jobs/x": 404} {
		if code, _, _ := alice.get(path); code != want {
			t.Errorf("alice GET %s: %d, want %d", path, code, want)
		}
	}
	if code, _, _ := otto.get(job(hostless.ID)); code != 200 {
		t.Errorf("otto GET %s: %d, want 200", job(hostless.ID), code)
	}
}
