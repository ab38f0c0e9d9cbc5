package appliance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
)

// TestOpenAPICoversRoutes: every registered route is documented with its
// minimum role, and every documented operation is a route.
func TestOpenAPICoversRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	s := &Server{}
	routes := s.allRoutes()
	seen := map[string]bool{}
	wildcard := regexp.MustCompile(`\{(\w+)\.\.\.\}`)
	for _, rt := range routes {
		p := wildcard.ReplaceAllString(rt.pattern, "{$1}")
		key := rt.method + " " + p
		seen[key] = true
		ops, ok := doc.Paths[p]
		if !ok {
			t.Errorf("route %s: path %s is not in openapi.json", key, p)
			continue
		}
		raw, ok := ops[strings.ToLower(rt.method)]
		if !ok {
			t.Errorf("route %s: method not in openapi.json", key)
			continue
		}
		var op struct {
			Role    string          `json:"x-cairn-min-role"`
			Summary string          `json:"summary"`
			Resp    json.RawMessage `json:"responses"`
		}
		if err := json.Unmarshal(raw, &op); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if op.Role != rankName(rt.minRole) {
			t.Errorf("route %s: openapi says min role %q, the code %q", key, op.Role, rankName(rt.minRole))
		}
		if op.Summary == "" || len(op.Resp) == 0 {
			t.Errorf("route %s: no summary or responses", key)
		}
	}
	for p, ops := range doc.Paths {
		for m := range ops {
			if m == "parameters" {
				continue
			}
			if key := strings.ToUpper(m) + " " + p; !seen[key] {
				t.Errorf("openapi.json documents %s, which is no route", key)
			}
		}
	}
}

// TestAuthMatrix: every route × {no credentials, user, operator, admin
// token, root on the socket}. No credentials → 401 (except public
// routes); a role below the route's minimum → 403; otherwise the request
// gets past auth (any status but 401/403).
func TestAuthMatrix(t *testing.T) {
	resetFake(t)
	releaseFake()
	e := newEnv(t, Config{})
	ctx := context.Background()
	if _, err := e.s.cat.CreateGroup(ctx, "g1"); err != nil {
		t.Fatal(err)
	}
	principals := []struct {
		name, as string
		rank     int
	}{
		{"none", "", -1},
		{"user", e.user("u1", "user", "g1"), roleUser},
		{"operator", e.user("op1", "operator"), roleOperator},
		{"admin", e.user("ad1", "admin"), roleAdmin},
		{"socket", "socket", roleAdmin},
	}
	e.addHost("h1", nil, func(in *HostInput) { in.Groups = &[]string{"g1"} })
	job := e.waitJob(e.backup("h1").ID)
	var snaps []SnapshotBody
	e.must("socket", "GET", "/api/v1/snapshots", nil, &snaps)
	if job.State != "done" || len(snaps) != 1 {
		t.Fatalf("fixture backup: %+v, %d snapshots", job, len(snaps))
	}
	snap := snaps[0].ID
	var n atomic.Int64
	for _, rt := range e.s.routes {
		for _, pr := range principals {
			t.Run(rt.method+" "+rt.pattern+" as "+pr.name, func(t *testing.T) {
				// Fresh fixtures per call so destructive routes have
				// something to act on.
				i := n.Add(1)
				host := "h1"
				var tok NewTokenBody
				if rt.method != "GET" {
					host = fmt.Sprintf("m%d", i)
					e.addHost(host, nil, func(in *HostInput) { in.Groups = &[]string{"g1"} })
					e.must("socket", "POST", "/api/v1/tokens", TokenInput{Name: "x", User: "u1"}, &tok)
				}
				path := strings.NewReplacer(
					"{host}", host, "{source}", "data", "{name}", fmt.Sprintf("nobody%d", i),
					"{path...}", "f000.txt").Replace(rt.pattern)
				switch {
				case strings.HasPrefix(rt.pattern, "/api/v1/jobs/{id}"):
					path = strings.Replace(path, "{id}", fmt.Sprint(job.ID), 1)
				case strings.HasPrefix(rt.pattern, "/api/v1/tokens/{id}"):
					path = strings.Replace(path, "{id}", fmt.Sprint(tok.ID), 1)
				case strings.Contains(rt.pattern, "/snapshots/{id}/tree"):
					path = strings.Replace(strings.Replace(path, "{id}", snap, 1), "f000.txt", "", 1)
				case strings.HasPrefix(rt.pattern, "/api/v1/snapshots/{id}"):
					id := snap
					if rt.method == "DELETE" {
						j := e.waitJob(e.backup(host).ID)
						if j.State != "done" {
							t.Fatalf("fixture backup of %s: %+v", host, j)
						}
						var ss []SnapshotBody
						e.must("socket", "GET", "/api/v1/snapshots?host="+host, nil, &ss)
						id = ss[0].ID
					}
					path = strings.Replace(path, "{id}", id, 1)
				}
				var body any
				switch rt.method + " " + rt.pattern {
				case "POST /api/v1/hosts":
					name := fmt.Sprintf("new%d", i)
					body = HostInput{Name: &name, Sources: []SourceInput{{Name: "d", Method: fakeMethod, Path: "/x"}}}
				case "PATCH /api/v1/hosts/{host}":
					body = HostInput{Address: new(string)}
				case "PUT /api/v1/hosts/{host}/sources/{source}":
					body = SourceInput{Method: fakeMethod, Path: "/y"}
				case "POST /api/v1/restores":
					body = RestoreInput{Snapshot: snap, To: filepath.Join(e.dir, "restores", fmt.Sprint(i))}
				case "POST /api/v1/users":
					body = UserInput{Name: fmt.Sprintf("nu%d", i), Password: "long enough password", Role: "user"}
				case "PUT /api/v1/maintenance":
					body = MaintenanceBody{On: false}
				case "POST /api/v1/groups":
					body = GroupBody{Name: fmt.Sprintf("ng%d", i)}
				case "POST /api/v1/tokens":
					body = TokenInput{Name: "n", User: "u1"}
					if pr.name != "admin" && pr.name != "socket" {
						body = TokenInput{Name: "n"}
					}
				}
				w := e.do(pr.as, rt.method, path, body)
				switch {
				case rt.minRole == rolePublic:
					if w.Code == 401 || w.Code == 403 {
						t.Fatalf("public route: %d %s", w.Code, w.Body)
					}
				case pr.rank < 0:
					if w.Code != 401 {
						t.Fatalf("no credentials: %d %s, want 401", w.Code, w.Body)
					}
				case pr.rank < rt.minRole:
					if w.Code != 403 {
						t.Fatalf("%s below %s: %d %s, want 403", pr.name, rankName(rt.minRole), w.Code, w.Body)
					}
				default:
					if w.Code == 401 || w.Code == 403 || w.Code >= 500 {
						t.Fatalf("%s: %d %s, want success", pr.name, w.Code, w.Body)
					}
				}
			})
		}
	}
	// A bad token is 401, and so is an unknown path without credentials.
	if w := e.do("cairn_bogus", "GET", "/api/v1/hosts", nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("bogus token: %d", w.Code)
	}
	if w := e.do("", "GET", "/api/v1/nosuch", nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("unknown path without credentials: %d", w.Code)
	}
	if w := e.do("socket", "GET", "/api/v1/nosuch", nil); w.Code != http.StatusNotFound {
		t.Fatalf("unknown path: %d", w.Code)
	}
	// A socket peer that is neither root nor the server's uid gets nothing.
	req, _ := http.NewRequest("GET", "/api/v1/hosts", nil)
	req = req.WithContext(context.WithValue(req.Context(), peerKey, peer{unix: true, uid: 12345}))
	if _, err := e.s.authenticate(req); err == nil {
		t.Fatal("uid 12345 on the socket was let in")
	}
}

// TestUserSeesOnlyItsGroups: the user role sees hosts, snapshots and
// jobs of its groups only; others are 404, not 403, so they do not leak.
func TestUserSeesOnlyItsGroups(t *testing.T) {
	resetFake(t)
	releaseFake()
	e := newEnv(t, Config{})
	ctx := context.Background()
	e.s.cat.CreateGroup(ctx, "web")
	e.s.cat.CreateGroup(ctx, "db")
	tok := e.user("u", "user", "web")
	e.addHost("www", nil, func(in *HostInput) { in.Groups = &[]string{"web"} })
	e.addHost("pg", nil, func(in *HostInput) { in.Groups = &[]string{"db"} })
	jw := e.waitJob(e.backup("www").ID)
	jp := e.waitJob(e.backup("pg").ID)
	var hosts []HostBody
	e.must(tok, "GET", "/api/v1/hosts", nil, &hosts)
	if len(hosts) != 1 || hosts[0].Name != "www" {
		t.Fatalf("user sees hosts %+v", hosts)
	}
	var snaps []SnapshotBody
	e.must(tok, "GET", "/api/v1/snapshots", nil, &snaps)
	if len(snaps) != 1 || snaps[0].Host != "www" {
		t.Fatalf("user sees snapshots %+v", snaps)
	}
	var all []SnapshotBody
	e.must("socket", "GET", "/api/v1/snapshots", nil, &all)
	var pgSnap string
	for _, s := range all {
		if s.Host == "pg" {
			pgSnap = s.ID
		}
	}
	for _, p := range []string{"/api/v1/hosts/pg", "/api/v1/snapshots/" + pgSnap, "/api/v1/snapshots/" + pgSnap + "/file/f000.txt",
		fmt.Sprintf("/api/v1/jobs/%d", jp.ID), "/api/v1/hosts/pg/retention"} {
		if w := e.do(tok, "GET", p, nil); w.Code != 404 {
			t.Errorf("user GET %s: %d, want 404", p, w.Code)
		}
	}
	if w := e.do(tok, "GET", fmt.Sprintf("/api/v1/jobs/%d", jw.ID), nil); w.Code != 200 {
		t.Errorf("user GET own job: %d", w.Code)
	}
	var jobs []JobBody
	e.must(tok, "GET", "/api/v1/jobs", nil, &jobs)
	if len(jobs) != 1 || jobs[0].Host != "www" {
		t.Fatalf("user sees jobs %+v", jobs)
	}
	// Download of its own file works and is exact.
	w := e.do(tok, "GET", "/api/v1/snapshots/"+snaps[0].ID+"/file/f001.txt", nil)
	if w.Code != 200 || w.Body.String() != "file 1 of www/data seed \n" {
		t.Fatalf("download: %d %q", w.Code, w.Body.String())
	}
}

// TestSessionAuth: the web UI's session cookie authenticates API calls;
// changing ones need the session's CSRF token.
func TestSessionAuth(t *testing.T) {
	e := newEnv(t, Config{})
	e.user("op", "operator")
	u, err := e.s.cat.User(context.Background(), "op")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	e.s.ui.Sessions.Create(rec, httptest.NewRequest("POST", "/login", nil), u.ID)
	cookies := rec.Result().Cookies()
	var csrf string
	for _, c := range cookies {
		if c.Name == "cairn_csrf" {
			csrf = c.Value
		}
	}
	if csrf == "" {
		t.Fatalf("no CSRF cookie in %v", cookies)
	}
	req := func(method, path, token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, strings.NewReader(`{}`))
		for _, c := range cookies {
			r.AddCookie(c)
		}
		if token != "" {
			r.Header.Set("X-CSRF-Token", token)
		}
		w := httptest.NewRecorder()
		e.s.Handler().ServeHTTP(w, r)
		return w
	}
	if w := req("GET", "/api/v1/whoami", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"via": "session"`) {
		t.Fatalf("GET with a session: %d %s", w.Code, w.Body)
	}
	if w := req("POST", "/api/v1/pool/check", ""); w.Code != 403 || !strings.Contains(w.Body.String(), "CSRF") {
		t.Fatalf("POST without CSRF token: %d %s", w.Code, w.Body)
	}
	if w := req("POST", "/api/v1/pool/check", "wrong"); w.Code != 403 {
		t.Fatalf("POST with a wrong CSRF token: %d %s", w.Code, w.Body)
	}
	if w := req("POST", "/api/v1/pool/check", csrf); w.Code != 201 {
		t.Fatalf("POST with the CSRF token: %d %s", w.Code, w.Body)
	}
	// The role still applies: an operator may not manage users.
	if w := req("DELETE", "/api/v1/users/op", csrf); w.Code != 403 {
		t.Fatalf("operator removing a user: %d %s", w.Code, w.Body)
	}
	// Non-API paths are the web UI.
	w := httptest.NewRecorder()
	e.s.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/login", nil))
	if w.Code != 200 && w.Code != 303 && w.Code != 302 {
		t.Fatalf("GET /login: %d", w.Code)
	}
}
