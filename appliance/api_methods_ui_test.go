package appliance

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/appliance/schedule"
	"golang.org/x/crypto/bcrypt"
)

func TestSchedulePreview(t *testing.T) {
	clock := schedule.NewFakeClock(time.Date(2026, 12, 5, 10, 30, 0, 0, time.Local))
	e := newEnv(t, Config{Clock: clock})
	var b SchedulePreviewBody
	e.must("socket", "GET", "/api/v1/schedule/preview?cron=0+2+*+*+*&n=3", nil, &b)
	want := []time.Time{time.Date(2026, 12, 6, 2, 0, 0, 0, time.Local), time.Date(2026, 12, 7, 2, 0, 0, 0, time.Local), time.Date(2026, 12, 8, 2, 0, 0, 0, time.Local)}
	if len(b.Next) != 3 {
		t.Fatalf("preview %+v", b)
	}
	for i := range want {
		if !b.Next[i].Equal(want[i]) {
			t.Fatalf("run %d: %s, want %s", i, b.Next[i], want[i])
		}
	}
	if b.Zone != time.Local.String() {
		t.Fatalf("zone %q", b.Zone)
	}
	for _, q := range []string{"cron=61+2+*+*+*", "cron=", "cron=0+2+*+*+*&n=0", "cron=0+2+*+*+*&n=51"} {
		if w := e.do("socket", "GET", "/api/v1/schedule/preview?"+q, nil); w.Code != 400 {
			t.Fatalf("%s: %d %s", q, w.Code, w.Body.String())
		}
	}
	tok := e.user("u1", catalog.RoleUser)
	if w := e.do(tok, "GET", "/api/v1/schedule/preview?cron=0+2+*+*+*", nil); w.Code != 200 {
		t.Fatalf("user: %d", w.Code)
	}
}

func TestPasswordChange(t *testing.T) {
	e := newEnv(t, Config{})
	tok := e.user("alice", catalog.RoleUser)
	ctx := context.Background()
	u, _ := e.s.cat.User(ctx, "alice")
	h, _ := bcrypt.GenerateFromPassword([]byte("Old-password-123"), bcrypt.MinCost)
	u.PasswordHash = string(h)
	if err := e.s.cat.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in   PasswordInput
		code int
		msg  string
	}{
		{PasswordInput{Current: "wrong", New: "New-password-456"}, 403, "current password is wrong"},
		{PasswordInput{Current: "Old-password-123", New: "short"}, 400, "new: use at least 12 characters"},
		{PasswordInput{Current: "Old-password-123", New: "alice-Password-1"}, 400, "must not contain the user name"},
	} {
		if w := e.do(tok, "PUT", "/api/v1/users/me/password", c.in); w.Code != c.code || !strings.Contains(w.Body.String(), c.msg) {
			t.Fatalf("%+v: %d %s", c.in, w.Code, w.Body.String())
		}
	}
	if w := e.do(tok, "PUT", "/api/v1/users/me/password", PasswordInput{Current: "Old-password-123", New: "New-password-456"}); w.Code != 204 {
		t.Fatalf("change: %d %s", w.Code, w.Body.String())
	}
	u, _ = e.s.cat.User(ctx, "alice")
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte("New-password-456")) != nil || u.Role != catalog.RoleUser {
		t.Fatalf("stored user %+v", u)
	}
	if w := e.do("socket", "PUT", "/api/v1/users/me/password", PasswordInput{Current: "x", New: "New-password-456"}); w.Code != 400 {
		t.Fatalf("root on the socket: %d", w.Code)
	}
}
