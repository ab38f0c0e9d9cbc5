package appliance

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/schedule"
)

// TestScheduledBackups: on a fake clock, hosts whose cron slot comes are
// backed up by the scheduler (not manual), a failing one is retried with
// backoff, a disabled host is not run, and a restart does not run a slot
// twice.
func TestScheduledBackups(t *testing.T) {
	resetFake(t)
	releaseFake()
	clock := schedule.NewFakeClock(time.Date(2030, 1, 1, 1, 59, 0, 0, time.Local))
	dir := t.TempDir()
	e := newEnv(t, Config{DataDir: dir, Clock: clock, RetryBackoff: time.Minute, GCSchedule: "0 2 * * *", CheckSchedule: "-"})
	nightly := func(in *HostInput) { in.Schedules = &[]ScheduleBody{{Cron: "0 2 * * *"}} }
	e.addHost("ok", nil, nightly)
	e.addHost("flaky", map[string]string{"fail": "connection reset"}, nightly)
	e.addHost("off", nil, nightly, func(in *HostInput) { f := false; in.Enabled = &f })
	e.addHost("denied", map[string]string{"permfail": "auth failed"}, nightly)

	jobsOf := func(host string) []JobBody {
		var js []JobBody
		e.must("socket", "GET", "/api/v1/jobs?host="+host, nil, &js)
		return js
	}
	// Step the fake clock until the 02:00 slot has run.
	waitFor(t, "the scheduled backup of ok", func() bool {
		// Stop at 02:00: the failing host's retry (1m later) must wait.
		if clock.Now().Before(time.Date(2030, 1, 1, 2, 0, 0, 0, time.Local)) {
			clock.Advance(5 * time.Second)
		}
		js := jobsOf("ok")
		return len(js) == 1 && js[0].State == "done"
	})
	if js := jobsOf("ok"); js[0].Manual {
		t.Fatalf("scheduled job marked manual: %+v", js[0])
	}
	// Pool GC ran on its own schedule; the disabled check did not.
	waitFor(t, "the scheduled GC", func() bool {
		var gcs []JobBody
		e.must("socket", "GET", "/api/v1/jobs?kind=gc", nil, &gcs)
		return len(gcs) == 1 && gcs[0].State == "done"
	})
	var checks []JobBody
	e.must("socket", "GET", "/api/v1/jobs?kind=check", nil, &checks)
	if len(checks) != 0 {
		t.Fatalf("disabled check ran: %+v", checks)
	}
	waitFor(t, "the first failure of flaky", func() bool {
		js := jobsOf("flaky")
		return len(js) == 1 && strings.Contains(js[0].Error, "attempt 1 failed")
	})
	if js := jobsOf("flaky"); js[0].State != "queued" {
		t.Fatalf("flaky after one failure: %+v", js[0])
	}
	// The retry comes after the backoff (1m), on the fake clock.
	retried := regexp.MustCompile(`attempt [234] failed`)
	waitFor(t, "the retry of flaky", func() bool {
		clock.Advance(5 * time.Second)
		js := jobsOf("flaky")
		return len(js) == 1 && (retried.MatchString(js[0].Error) || js[0].State == "failed")
	})
	// A permanent failure (bad credentials) is not retried.
	if js := jobsOf("denied"); len(js) != 1 || js[0].State != "failed" || strings.Contains(js[0].Error, "attempt") ||
		!strings.Contains(js[0].Error, "auth failed") {
		t.Fatalf("denied: %+v", js)
	}
	if js := jobsOf("off"); len(js) != 0 {
		t.Fatalf("disabled host ran: %+v", js)
	}
	var snaps []SnapshotBody
	e.must("socket", "GET", "/api/v1/snapshots?host=ok", nil, &snaps)
	if len(snaps) != 1 || snaps[0].Status != "complete" {
		t.Fatalf("snapshots of ok: %+v", snaps)
	}
	// After a restart within the same day the slot does not run again.
	e.s.Close()
	e2 := newEnv(t, Config{DataDir: dir, Clock: clock, RetryBackoff: time.Minute})
	for _, st := range e2.s.jobs.sched.Status() {
		if st.Key == "ok|" && !st.Due.Equal(time.Date(2030, 1, 2, 2, 0, 0, 0, time.Local)) {
			t.Fatalf("after a restart ok is due at %v, want tomorrow 02:00", st.Due)
		}
	}
	clock.Advance(10 * time.Minute)
	var js []JobBody
	e2.must("socket", "GET", "/api/v1/jobs?host=ok", nil, &js)
	if len(js) != 1 {
		t.Fatalf("ok ran again after a restart: %+v", js)
	}
}
