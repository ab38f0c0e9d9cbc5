package appliance

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/schedule"
)

// TestWebhookNotifications: a failed backup and a stale source are POSTed
// to the webhook, with the credential scrubbed from the error.
func TestWebhookNotifications(t *testing.T) {
	resetFake(t)
	releaseFake()
	got := make(chan Notification, 100)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		got <- n
	}))
	defer hook.Close()
	clock := schedule.NewFakeClock(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	e := newEnv(t, Config{Clock: clock, WebhookURL: hook.URL, StaleAfter: time.Hour, StaleCheckEvery: 10 * time.Minute})
	e.addHost("good", nil)
	name := "bad"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{{Name: "data", Method: fakeMethod,
		Path: "/x", Options: map[string]string{"fail": "login refused for"}, Secret: map[string]string{"password": "hunter2-secret"}}}}, nil)
	e.waitJob(e.backup("good").ID)
	bad := e.waitJob(e.backup("bad").ID)
	n := <-got
	if n.Event != "backup_failed" || n.Host != "bad" || n.JobID != bad.ID || !strings.Contains(n.Error, "login refused for ***") ||
		strings.Contains(n.Text+n.Error, "hunter2") || n.Appliance != e.s.pool.ID() {
		t.Fatalf("failure notification %+v", n)
	}
	// Two hours later both sources are stale; each is reported once.
	stale := map[string]int{}
	deadline := time.Now().Add(time.Minute)
	for len(stale) < 2 {
		clock.Advance(10 * time.Minute)
		select {
		case n := <-got:
			if n.Event != "backup_stale" {
				t.Fatalf("unexpected %+v", n)
			}
			stale[n.Host]++
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("stale notifications: %v", stale)
		}
	}
	if stale["good"] != 1 || stale["bad"] != 1 {
		t.Fatalf("stale notifications %v", stale)
	}
	if strings.Contains(e.logs.String(), hook.URL) {
		t.Fatal("the webhook URL was logged")
	}
}
