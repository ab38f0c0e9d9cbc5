package appliance

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/schedule"
)

// TestTokenExpiryAPI: a token made with expires_in works until then and
// answers 401 afterwards (API, word for word like an unknown token, and
// WebDAV); the expiry is listed; bad expiries are 400 naming the field.
func TestTokenExpiryAPI(t *testing.T) {
	start := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := schedule.NewFakeClock(start)
	e := newEnv(t, Config{Clock: clock, GCSchedule: "-", CheckSchedule: "-"})
	ad := e.user("ad", "admin")

	var short, dated, forever NewTokenBody
	e.must(ad, "POST", "/api/v1/tokens", TokenInput{Name: "short", ExpiresIn: "90m"}, &short)
	e.must(ad, "POST", "/api/v1/tokens", TokenInput{Name: "dated", Expires: "2030-01-31T00:00:00+01:00"}, &dated)
	e.must(ad, "POST", "/api/v1/tokens", TokenInput{Name: "forever"}, &forever)
	if short.Expires == nil || !short.Expires.Equal(start.Add(90*time.Minute)) {
		t.Fatalf("short token expires %v, want %s", short.Expires, start.Add(90*time.Minute))
	}
	if want := time.Date(2030, 1, 30, 23, 0, 0, 0, time.UTC); dated.Expires == nil || !dated.Expires.Equal(want) {
		t.Fatalf("dated token expires %v, want %s", dated.Expires, want)
	}
	if forever.Expires != nil {
		t.Fatalf("token without expiry expires %v", forever.Expires)
	}
	var days NewTokenBody
	e.must(ad, "POST", "/api/v1/tokens", TokenInput{Name: "days", ExpiresIn: "30d"}, &days)
	if days.Expires == nil || !days.Expires.Equal(start.Add(30*24*time.Hour)) {
		t.Fatalf("30d token expires %v", days.Expires)
	}

	// Before its expiry the short token works, and the listing shows
	// every expiry.
	var list []TokenBody
	e.must(short.Token, "GET", "/api/v1/tokens", nil, &list)
	exp := map[string]string{}
	for _, tk := range list {
		exp[tk.Name] = "never"
		if tk.Expires != nil {
			exp[tk.Name] = tk.Expires.UTC().Format(time.RFC3339)
		}
	}
	want := map[string]string{"t": "never", "short": "2030-01-01T13:30:00Z", "dated": "2030-01-30T23:00:00Z",
		"forever": "never", "days": "2030-01-31T12:00:00Z"}
	if len(exp) != len(want) {
		t.Fatalf("listed expiries %v, want %v", exp, want)
	}
	for k, v := range want {
		if exp[k] != v {
			t.Fatalf("listed expiries %v, want %v", exp, want)
		}
	}

	// WebDAV takes a token as the Basic password.
	dav := func(tok string) int {
		req := httptest.NewRequest("PROPFIND", DAVPrefix+"/", nil)
		req.Header.Set("Depth", "0")
		req.SetBasicAuth("ad", tok)
		w := httptest.NewRecorder()
		e.s.Handler().ServeHTTP(w, req)
		return w.Code
	}
	if code := dav(short.Token); code != 207 {
		t.Fatalf("WebDAV with the unexpired token: %d", code)
	}

	// From its expiry on it answers exactly like a token that never was.
	clock.Advance(90 * time.Minute)
	bogus := e.do("cairn_"+strings.Repeat("A", 43), "GET", "/api/v1/tokens", nil)
	w := e.do(short.Token, "GET", "/api/v1/tokens", nil)
	if w.Code != 401 || bogus.Code != 401 || w.Body.String() != bogus.Body.String() {
		t.Fatalf("expired token: %d %q; unknown token: %d %q", w.Code, w.Body, bogus.Code, bogus.Body)
	}
	if w.Header().Get("WWW-Authenticate") != bogus.Header().Get("WWW-Authenticate") {
		t.Fatalf("WWW-Authenticate differs: %q vs %q", w.Header().Get("WWW-Authenticate"), bogus.Header().Get("WWW-Authenticate"))
	}
	if code := dav(short.Token); code != 401 {
		t.Fatalf("WebDAV with the expired token: %d", code)
	}
	e.must(dated.Token, "GET", "/api/v1/tokens", nil, nil)
	clock.Advance(29*24*time.Hour + 9*time.Hour + 30*time.Minute) // 2030-01-30T23:00Z
	if w := e.do(dated.Token, "GET", "/api/v1/tokens", nil); w.Code != 401 {
		t.Fatalf("dated token after its expiry: %d %s", w.Code, w.Body)
	}
	e.must(forever.Token, "GET", "/api/v1/tokens", nil, nil)

	// Bad expiries: 400, naming the field and the cause.
	for _, c := range []struct {
		in   TokenInput
		want string
	}{
		{TokenInput{Name: "x", ExpiresIn: "soon"}, `expires_in "soon" is no duration`},
		{TokenInput{Name: "x", ExpiresIn: "-1h"}, `expires_in "-1h": want a positive duration`},
		{TokenInput{Name: "x", ExpiresIn: "0d"}, `expires_in "0d": want between 1d and`},
		{TokenInput{Name: "x", ExpiresIn: "1.5d"}, `expires_in "1.5d" is no duration`},
		{TokenInput{Name: "x", Expires: "tomorrow"}, `expires "tomorrow": want an RFC 3339 time`},
		{TokenInput{Name: "x", Expires: "2029-12-31T00:00:00Z"}, `expires 2029-12-31T00:00:00Z: that is not in the future`},
		{TokenInput{Name: "x", ExpiresIn: "1h", Expires: "2031-01-01T00:00:00Z"}, "give expires_in or expires, not both"},
	} {
		w := e.do(forever.Token, "POST", "/api/v1/tokens", c.in)
		var body struct{ Error string }
		json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != 400 || !strings.Contains(body.Error, c.want) {
			t.Errorf("%+v: %d %q, want 400 containing %q", c.in, w.Code, body.Error, c.want)
		}
	}
	var n []TokenBody
	e.must(forever.Token, "GET", "/api/v1/tokens", nil, &n)
	if len(n) != 5 {
		t.Fatalf("%d tokens after refused creations, want 5", len(n))
	}
}
