package appliance

import (
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/schedule"
)

// TestInheritance: global defaults, then groups, then the host; the
// effective view says where each value comes from, and the scheduler and
// retention use it.
func TestInheritance(t *testing.T) {
	resetFake(t)
	releaseFake()
	clock := schedule.NewFakeClock(time.Date(2030, 1, 1, 0, 30, 0, 0, time.Local))
	e := newEnv(t, Config{Clock: clock, GCSchedule: "-", CheckSchedule: "-"})
	e.must("socket", "PUT", "/api/v1/defaults", SettingsBody{Settings: map[string]string{"schedule": "0 3 * * *", "keep_last": "5"}}, nil)
	e.must("socket", "POST", "/api/v1/groups", GroupBody{Name: "web", Settings: map[string]string{"schedule": "0 1 * * *", "keep_daily": "7"}}, nil)
	if w := e.do("socket", "PUT", "/api/v1/groups/web", SettingsBody{Settings: map[string]string{"schedule": "0 99 * * *"}}); w.Code != 400 {
		t.Fatalf("bad group schedule: %d %s", w.Code, w.Body)
	}
	if w := e.do("socket", "PUT", "/api/v1/defaults", SettingsBody{Settings: map[string]string{"colour": "red"}}); w.Code != 400 {
		t.Fatalf("unknown key: %d %s", w.Code, w.Body)
	}
	e.addHost("www", nil, func(in *HostInput) { in.Groups = &[]string{"web"} })
	e.addHost("lone", nil)
	e.addHost("own", nil, func(in *HostInput) {
		in.Groups = &[]string{"web"}
		in.Schedules = &[]ScheduleBody{{Cron: "0 5 * * *"}}
		in.Retention = &RetentionBody{Last: 2}
	})
	eff := func(host string) map[string]EffectiveValue {
		var vs []EffectiveValue
		e.must("socket", "GET", "/api/v1/hosts/"+host+"/effective", nil, &vs)
		m := map[string]EffectiveValue{}
		for _, v := range vs {
			m[v.Key] = v
		}
		return m
	}
	for _, c := range []struct{ host, key, value, from string }{
		{"www", "schedule", "0 1 * * *", "group:web"},
		{"www", "keep_daily", "7", "group:web"},
		{"www", "keep_last", "5", "global"},
		{"www", "keep_weekly", "", ""},
		{"lone", "schedule", "0 3 * * *", "global"},
		{"own", "schedule", "0 5 * * *", "host"},
		{"own", "keep_last", "2", "host"},
		{"own", "keep_daily", "0", "host"},
	} {
		if got := eff(c.host)[c.key]; got.Value != c.value || got.From != c.from {
			t.Errorf("%s %s = %+v, want %q from %q", c.host, c.key, got, c.value, c.from)
		}
	}
	// The inherited schedule runs: www at 01:00 (its group's), lone not yet.
	jobsOf := func(host string) []JobBody {
		var js []JobBody
		e.must("socket", "GET", "/api/v1/jobs?host="+host, nil, &js)
		return js
	}
	waitFor(t, "www's inherited 01:00 schedule", func() bool {
		if clock.Now().Before(time.Date(2030, 1, 1, 1, 0, 0, 0, time.Local)) {
			clock.Advance(30 * time.Second)
		}
		js := jobsOf("www")
		return len(js) == 1 && js[0].State == "done"
	})
	if js := jobsOf("lone"); len(js) != 0 {
		t.Fatalf("lone ran before 03:00: %+v", js)
	}
	// Retention comes from the group and the defaults too.
	var plan RetentionPlan
	e.must("socket", "GET", "/api/v1/hosts/www/retention", nil, &plan)
	if plan.Policy != "keep 5 last, 7 daily" {
		t.Fatalf("www's policy %q", plan.Policy)
	}
}
