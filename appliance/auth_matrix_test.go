package appliance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/schedule"
	"github.com/cairn-backup/cairn/appliance/web"
)

// docRoute is one operation of openapi.json.
type docRoute struct {
	method, path string
	minRole      int
}

// documentedRoutes reads every operation of openapi.json, so routes added
// later are in the matrix without touching this test.
func documentedRoutes(t *testing.T) []docRoute {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	ranks := map[string]int{"public": rolePublic, "user": roleUser, "operator": roleOperator, "admin": roleAdmin}
	var out []docRoute
	for p, ops := range doc.Paths {
		for m, raw := range ops {
			if m == "parameters" {
				continue
			}
			var op struct {
				Role string `json:"x-cairn-min-role"`
			}
			json.Unmarshal(raw, &op)
			r, ok := ranks[op.Role]
			if !ok {
				t.Fatalf("%s %s: x-cairn-min-role %q", strings.ToUpper(m), p, op.Role)
			}
			out = append(out, docRoute{strings.ToUpper(m), p, r})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path+out[i].method < out[j].path+out[j].method })
	if len(out) < 40 {
		t.Fatalf("only %d operations in openapi.json", len(out))
	}
	return out
}

// caller is one way of presenting (or failing to present) credentials.
type caller struct {
	name  string
	rank  int  // -1: not authenticated
	other bool // a user of another group: h1 is hidden from it
	apply func(r *http.Request)
}

// matrixEnv is an appliance with host h1 in group g1, one snapshot, and
// callers of every kind.
type matrixEnv struct {
	*testEnv
	clock   *schedule.FakeClock
	snap    string
	jobID   int64
	callers []caller
	csrfOf  map[string]string // session caller → its CSRF token
}

func newMatrixEnv(t *testing.T) *matrixEnv {
	resetFake(t)
	releaseFake()
	clock := schedule.NewFakeClock(time.Now())
	e := newEnv(t, Config{Clock: clock, GCSchedule: "-", CheckSchedule: "-"})
	ctx := context.Background()
	for _, g := range []string{"g1", "g2"} {
		if _, err := e.s.cat.CreateGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	m := &matrixEnv{testEnv: e, clock: clock, csrfOf: map[string]string{}}
	e.addHost("h1", nil, func(in *HostInput) { in.Groups = &[]string{"g1"} })
	job := e.waitJob(e.backup("h1").ID)
	var snaps []SnapshotBody
	e.must("socket", "GET", "/api/v1/snapshots", nil, &snaps)
	if job.State != "done" || len(snaps) != 1 {
		t.Fatalf("fixture backup: %+v, %d snapshots", job, len(snaps))
	}
	m.snap, m.jobID = snaps[0].ID, job.ID

	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	// A session cookie of user name, made expired when expired is set.
	session := func(name string) (func(*http.Request), string) {
		u, err := e.s.cat.User(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		e.s.ui.Sessions.Create(w, httptest.NewRequest("POST", "/login", nil), u.ID)
		var sid, csrf string
		for _, c := range w.Result().Cookies() {
			switch c.Name {
			case web.SessionCookie:
				sid = c.Value
			case web.CSRFCookie:
				csrf = c.Value
			}
		}
		return func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: sid})
			r.AddCookie(&http.Cookie{Name: web.CSRFCookie, Value: csrf})
			r.Header.Set(web.CSRFHeader, csrf)
		}, csrf
	}
	u1 := e.user("u1", "user", "g1")
	u2 := e.user("u2", "user", "g2")
	op := e.user("op1", "operator")
	ad := e.user("ad1", "admin")
	// A token that was revoked, a token and a session that expired.
	revoked := e.user("gone", "admin")
	var toks []TokenBody
	e.must(revoked, "GET", "/api/v1/tokens", nil, &toks)
	for _, tk := range toks {
		if tk.User == "gone" {
			e.must(revoked, "DELETE", fmt.Sprintf("/api/v1/tokens/%d", tk.ID), nil, nil)
		}
	}
	var late NewTokenBody
	e.must(e.user("late", "admin"), "POST", "/api/v1/tokens", TokenInput{Name: "short", ExpiresIn: "1h"}, &late)
	e.must(late.Token, "GET", "/api/v1/tokens", nil, nil) // an admin's, until it expires
	expired, _ := session("ad1")
	clock.Advance(web.DefaultIdleTimeout + time.Minute)
	adminSession, csrf := session("ad1")
	m.csrfOf["admin session"] = csrf
	u2Session, _ := session("u2")

	m.callers = []caller{
		{name: "nobody", rank: -1, apply: func(*http.Request) {}},
		{name: "wrong password", rank: -1, apply: func(r *http.Request) { r.SetBasicAuth("ad1", "not the password") }},
		{name: "revoked token", rank: -1, apply: bearer(revoked)},
		{name: "expired token", rank: -1, apply: bearer(late.Token)},
		{name: "expired session", rank: -1, apply: expired},
		{name: "bogus token", rank: -1, apply: bearer("cairn_" + strings.Repeat("A", 43))},
		{name: "user", rank: roleUser, apply: bearer(u1)},
		{name: "user of another group", rank: roleUser, other: true, apply: bearer(u2)},
		{name: "user of another group (session)", rank: roleUser, other: true, apply: u2Session},
		{name: "operator", rank: roleOperator, apply: bearer(op)},
		{name: "admin", rank: roleAdmin, apply: bearer(ad)},
		{name: "admin session", rank: roleAdmin, apply: adminSession},
	}
	return m
}

// send runs one request through the handler; SSE streams end at their
// first flush.
func (m *matrixEnv) send(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	m.s.Handler().ServeHTTP(&cancelOnFlush{w, cancel}, r.WithContext(ctx))
	return w
}

// fill puts fixture values into a documented path.
func (m *matrixEnv) fill(rt docRoute) string {
	p := rt.path
	switch {
	case strings.HasPrefix(p, "/api/v1/jobs/{id}"):
		p = strings.Replace(p, "{id}", fmt.Sprint(m.jobID), 1)
	case strings.HasPrefix(p, "/api/v1/snapshots/{id}"):
		p = strings.Replace(p, "{id}", m.snap, 1)
	case strings.HasPrefix(p, "/api/v1/tokens/{id}"):
		p = strings.Replace(p, "{id}", "1", 1) // u1's token: never the caller's own
	}
	p = strings.NewReplacer("{host}", "h1", "{source}", "data", "{name}", "nobody").Replace(p)
	if strings.Contains(p, "/tree/{path}") {
		return strings.Replace(p, "{path}", "", 1)
	}
	p = strings.Replace(p, "{path}", "f000.txt", 1)
	return regexp.MustCompile(`\{\w+\}`).ReplaceAllString(p, "x")
}

// hostScoped reports routes about h1 or its snapshots and jobs: hidden
// from a user of another group.
func hostScoped(path string) bool {
	return strings.Contains(path, "{host}") || strings.HasPrefix(path, "/api/v1/snapshots/{id}") ||
		strings.HasPrefix(path, "/api/v1/jobs/{id}")
}

// TestAuthMatrixDocumented: every operation of openapi.json × every kind
// of caller. No or bad credentials (none, wrong password, revoked token,
// expired token, expired session, bogus token) → 401 on every non-public route; a role
// below the route's → 403; a user of another group → 404 on anything about
// a host it may not see, and its listings never mention that host; a
// session without its CSRF token may change nothing (403). Safe (GET)
// routes at or above the role answer without 401/403/5xx; the state
// changes of allowed roles are TestAuthMatrix's (fixtures per call).
func TestAuthMatrixDocumented(t *testing.T) {
	m := newMatrixEnv(t)
	for _, rt := range documentedRoutes(t) {
		for _, c := range m.callers {
			t.Run(rt.method+" "+rt.path+" as "+c.name, func(t *testing.T) {
				safe := rt.method == "GET" || rt.method == "HEAD"
				allowed := rt.minRole == rolePublic || c.rank >= rt.minRole
				if allowed && !safe && c.rank >= 0 {
					if !(c.other && hostScoped(rt.path) && rt.minRole == roleUser) {
						return // changes state: TestAuthMatrix covers it with fixtures
					}
				}
				req := httptest.NewRequest(rt.method, m.fill(rt), strings.NewReader("{}"))
				req.Header.Set("Content-Type", "application/json")
				c.apply(req)
				w := m.send(req)
				body := w.Body.String()
				switch {
				case rt.minRole == rolePublic:
					if w.Code == 401 || w.Code == 403 {
						t.Fatalf("public route: %d %s", w.Code, body)
					}
				case c.rank < 0:
					if w.Code != 401 {
						t.Fatalf("want 401, got %d %s", w.Code, body)
					}
				case c.rank < rt.minRole:
					if w.Code != 403 {
						t.Fatalf("%s below %s: %d %s, want 403", c.name, rankName(rt.minRole), w.Code, body)
					}
				case c.other && hostScoped(rt.path):
					if w.Code != 404 {
						t.Fatalf("host h1 is hidden from %s: %d %s, want 404", c.name, w.Code, body)
					}
				default:
					if w.Code == 401 || w.Code == 403 || w.Code >= 500 {
						t.Fatalf("%s: %d %s, want success", c.name, w.Code, body)
					}
				}
				if c.other && strings.Contains(body, `"h1"`) {
					t.Fatalf("%s sees host h1 in %s", c.name, body)
				}
			})
		}
	}
}

// TestAuthCSRF: a cookie session changes nothing without its own CSRF
// token, on every documented state-changing route; the same request with
// the token gets past auth.
func TestAuthCSRF(t *testing.T) {
	m := newMatrixEnv(t)
	var sess caller
	for _, c := range m.callers {
		if c.name == "admin session" {
			sess = c
		}
	}
	for _, rt := range documentedRoutes(t) {
		if rt.method == "GET" || rt.method == "HEAD" || rt.minRole == rolePublic {
			continue
		}
		for _, tc := range []struct{ name, token string }{
			{"no token", ""}, {"another session's token", "x" + m.csrfOf["admin session"][1:]},
		} {
			t.Run(rt.method+" "+rt.path+" "+tc.name, func(t *testing.T) {
				req := httptest.NewRequest(rt.method, m.fill(rt), strings.NewReader("{}"))
				sess.apply(req)
				req.Header.Del(web.CSRFHeader)
				if tc.token != "" {
					req.Header.Set(web.CSRFHeader, tc.token)
				}
				if w := m.send(req); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "CSRF") {
					t.Fatalf("%d %s, want 403 (CSRF)", w.Code, w.Body)
				}
			})
		}
	}
	// The checks above changed nothing: h1 and its snapshot are there.
	m.must("socket", "GET", "/api/v1/snapshots/"+m.snap, nil, nil)
	m.must("socket", "GET", "/api/v1/hosts/h1", nil, nil)
}

// TestAuthHiddenHosts: to a user of another group, a host it may not see
// answers exactly like a host that does not exist, over the API, WebDAV
// and downloads.
func TestAuthHiddenHosts(t *testing.T) {
	m := newMatrixEnv(t)
	var u2 caller
	for _, c := range m.callers {
		if c.name == "user of another group" {
			u2 = c
		}
	}
	get := func(method, path string) (int, string) {
		req := httptest.NewRequest(method, path, nil)
		u2.apply(req)
		if method == "PROPFIND" {
			req.Header.Set("Depth", "1")
		}
		w := m.send(req)
		return w.Code, w.Body.String()
	}
	for _, pair := range [][2]string{
		{"/api/v1/hosts/h1", "/api/v1/hosts/nosuch"},
		{"/api/v1/hosts/h1/retention", "/api/v1/hosts/nosuch/retention"},
		{"/api/v1/snapshots?host=h1", "/api/v1/snapshots?host=nosuch"},
	} {
		c1, b1 := get("GET", pair[0])
		c2, b2 := get("GET", pair[1])
		if c1 != c2 || strings.ReplaceAll(b1, "h1", "nosuch") != b2 {
			t.Errorf("hidden %s: %d %q; missing %s: %d %q", pair[0], c1, b1, pair[1], c2, b2)
		}
	}
	for _, path := range []string{
		"/api/v1/snapshots/" + m.snap + "/file/f000.txt",
		"/api/v1/snapshots/" + m.snap + "/archive/",
		"/api/v1/snapshots/" + m.snap,
	} {
		if c, b := get("GET", path); c != 404 {
			t.Errorf("GET %s: %d %s, want 404", path, c, b)
		}
	}
	// WebDAV: h1 is not in the root listing and is 404 below it.
	if c, b := get("PROPFIND", "/dav/"); c != http.StatusMultiStatus || strings.Contains(b, "/dav/h1") {
		t.Errorf("PROPFIND /dav/: %d, lists h1: %v", c, strings.Contains(b, "/dav/h1"))
	}
	for _, p := range []string{"/dav/h1/", "/dav/h1/latest/data/f000.txt"} {
		for _, meth := range []string{"PROPFIND", "GET"} {
			if c, _ := get(meth, p); c != 404 {
				t.Errorf("%s %s: %d, want 404", meth, p, c)
			}
		}
	}
}

// TestAuthWebDAVMatrix: WebDAV with every kind of caller (Basic with a
// user's password is TestDAV's; here tokens as Basic passwords, sessions
// and bad credentials).
func TestAuthWebDAVMatrix(t *testing.T) {
	m := newMatrixEnv(t)
	for _, c := range m.callers {
		for _, meth := range []string{"PROPFIND", "GET"} {
			t.Run(meth+" as "+c.name, func(t *testing.T) {
				req := httptest.NewRequest(meth, "/dav/h1/latest/data/f000.txt", nil)
				req.Header.Set("Depth", "0")
				c.apply(req)
				w := m.send(req)
				switch {
				case c.rank < 0:
					if w.Code != 401 {
						t.Fatalf("%d, want 401", w.Code)
					}
				case c.other:
					if w.Code != 404 {
						t.Fatalf("%d, want 404", w.Code)
					}
				case meth == "GET":
					if w.Code != 200 || !strings.HasPrefix(w.Body.String(), "file 0 of h1/data") {
						t.Fatalf("%d %q", w.Code, w.Body)
					}
				default:
					if w.Code != http.StatusMultiStatus {
						t.Fatalf("%d %s", w.Code, w.Body)
					}
				}
			})
		}
	}
	// Every write method is refused, even to the admin.
	for _, meth := range []string{"PUT", "DELETE", "MKCOL", "MOVE", "COPY", "PROPPATCH", "LOCK"} {
		req := httptest.NewRequest(meth, "/dav/h1/latest/data/f000.txt", strings.NewReader("x"))
		req.Header.Set("Destination", "/dav/h1/latest/data/g.txt")
		m.callers[len(m.callers)-2].apply(req) // admin token
		if w := m.send(req); w.Code < 400 || w.Code >= 500 && w.Code != 501 {
			t.Errorf("%s as admin: %d, want a 4xx refusal", meth, w.Code)
		}
	}
}
