package catalog

import (
	"errors"
	"testing"
	"time"
)

// testTokenExpiry: a token past its expiry is refused as ErrTokenExpired
// (an ErrNotFound) and its use is not noted; one before it works; a zero
// expiry never expires; the expiry survives the round trip.
func testTokenExpiry(t *testing.T, db *DB) {
	u := &User{Name: "exp", PasswordHash: "x", Role: RoleUser}
	must(t, db.CreateUser(ctx, u))
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	forever := &Token{UserID: u.ID, Name: "forever", Hash: "h-forever", Created: now}
	short := &Token{UserID: u.ID, Name: "short", Hash: "h-short", Created: now, Expires: now.Add(time.Hour)}
	must(t, db.CreateToken(ctx, forever))
	must(t, db.CreateToken(ctx, short))

	got, err := db.TokenByHash(ctx, "h-short", now.Add(59*time.Minute))
	must(t, err)
	if got.ID != short.ID || !got.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("unexpired token = %+v", got)
	}
	for _, at := range []time.Time{now.Add(time.Hour), now.Add(time.Hour + time.Nanosecond), now.Add(1000 * time.Hour)} {
		_, err := db.TokenByHash(ctx, "h-short", at)
		if !errors.Is(err, ErrTokenExpired) || !errors.Is(err, ErrNotFound) || !contains(err.Error(), "token expired") {
			t.Fatalf("token at %s, expiry %s: %v", at, short.Expires, err)
		}
	}
	got, err = db.TokenByHash(ctx, "h-forever", now.Add(100*365*24*time.Hour))
	must(t, err)
	if got.ID != forever.ID || !got.Expires.IsZero() {
		t.Fatalf("never-expiring token = %+v", got)
	}
	if _, err := db.TokenByHash(ctx, "nope", now); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrTokenExpired) {
		t.Fatalf("unknown token: %v", err)
	}

	ts, err := db.Tokens(ctx, u.ID)
	must(t, err)
	if len(ts) != 2 || ts[0].Name != "forever" || !ts[0].Expires.IsZero() ||
		ts[1].Name != "short" || !ts[1].Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("tokens = %+v", ts)
	}
	// The refused use was not noted: last use is the one at +59m.
	if !ts[1].LastUsed.Equal(now.Add(59 * time.Minute)) {
		t.Fatalf("last use of the expired token = %s", ts[1].LastUsed)
	}
	one, err := db.Token(ctx, short.ID)
	must(t, err)
	if !one.Expires.Equal(short.Expires) {
		t.Fatalf("Token(%d).Expires = %s", short.ID, one.Expires)
	}
}
