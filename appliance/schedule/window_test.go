package schedule

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWindowContains(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	// 2026-11-23 is a Monday.
	cases := []struct {
		window string
		loc    *time.Location
		at     string
		want   bool
	}{
		{"Mon-Fri 08:00-18:00", time.UTC, "2026-11-23T08:00:00Z", true},
		{"Mon-Fri 08:00-18:00", time.UTC, "2026-11-23T07:59:59Z", false},
		{"Mon-Fri 08:00-18:00", time.UTC, "2026-11-23T17:59:59Z", true},
		{"Mon-Fri 08:00-18:00", time.UTC, "2026-11-23T18:00:00Z", false},
		{"Mon-Fri 08:00-18:00", time.UTC, "2026-11-27T12:00:00Z", true},  // Friday
		{"Mon-Fri 08:00-18:00", time.UTC, "2026-11-28T12:00:00Z", false}, // Saturday
		{"mon-FRI 08:00-18:00", time.UTC, "2026-11-24T12:00:00Z", true},
		{"Fri 22:00-06:00", time.UTC, "2026-11-27T21:59:00Z", false},
		{"Fri 22:00-06:00", time.UTC, "2026-11-27T22:00:00Z", true},
		{"Fri 22:00-06:00", time.UTC, "2026-11-28T03:00:00Z", true}, // Saturday morning
		{"Fri 22:00-06:00", time.UTC, "2026-11-28T06:00:00Z", false},
		{"Fri 22:00-06:00", time.UTC, "2026-11-28T22:30:00Z", false}, // Saturday night
		{"Fri 22:00-06:00", time.UTC, "2026-11-27T03:00:00Z", false}, // Friday morning (Thursday did not start one)
		{"22:00-06:00", time.UTC, "2026-11-23T23:00:00Z", true},
		{"22:00-06:00", time.UTC, "2026-11-24T05:59:00Z", true},
		{"22:00-06:00", time.UTC, "2026-11-24T12:00:00Z", false},
		{"Sat,Sun 00:00-24:00", time.UTC, "2026-11-28T00:00:00Z", true},
		{"Sat,Sun 00:00-24:00", time.UTC, "2026-11-29T23:59:59Z", true},
		{"Sat,Sun 00:00-24:00", time.UTC, "2026-11-30T00:00:00Z", false},
		{"Fri-Mon 12:00-13:00", time.UTC, "2026-11-29T12:30:00Z", true},  // Sunday
		{"Fri-Mon 12:00-13:00", time.UTC, "2026-11-23T12:30:00Z", true},  // Monday
		{"Fri-Mon 12:00-13:00", time.UTC, "2026-11-24T12:30:00Z", false}, // Tuesday
		{"Sunday 00:00-00:00", time.UTC, "2026-11-29T10:00:00Z", true},
		{"Sunday 00:00-00:00", time.UTC, "2026-11-30T00:00:00Z", false},
		{"Sunday 00:00-00:00", time.UTC, "2026-11-28T23:59:00Z", false},
		// Wall-clock time in the window's zone: 07:30Z is 08:30 in Berlin.
		{"Mon-Fri 08:00-18:00", berlin, "2026-11-23T07:30:00Z", true},
		{"Mon-Fri 08:00-18:00", berlin, "2026-11-23T17:30:00Z", false},
	}
	for _, c := range cases {
		t.Run(c.window+"@"+c.at, func(t *testing.T) {
			w, err := ParseWindow(c.window, c.loc)
			if err != nil {
				t.Fatal(err)
			}
			if got := w.Contains(mustTime(t, c.at)); got != c.want {
				t.Fatalf("Contains(%s) = %v, want %v", c.at, got, c.want)
			}
			if w.String() != c.window {
				t.Fatalf("String() = %q", w.String())
			}
		})
	}
}

func TestWindowsNextOpen(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	cases := []struct {
		windows []string
		loc     *time.Location
		at      string
		want    string // "" = never open
	}{
		{[]string{"Mon-Fri 08:00-18:00"}, time.UTC, "2026-11-23T09:00:00Z", "2026-11-23T18:00:00Z"},
		{[]string{"Mon-Fri 08:00-18:00"}, time.UTC, "2026-11-23T19:00:00Z", "2026-11-23T19:00:00Z"},
		{[]string{"Mon 08:00-12:00", "Mon 11:00-14:00"}, time.UTC, "2026-11-23T09:00:00Z", "2026-11-23T14:00:00Z"},
		{[]string{"Fri 22:00-06:00", "Sat 06:00-08:00"}, time.UTC, "2026-11-27T23:00:00Z", "2026-11-28T08:00:00Z"},
		{[]string{"Sat,Sun 00:00-24:00"}, time.UTC, "2026-11-28T10:00:00Z", "2026-11-30T00:00:00Z"},
		{[]string{"00:00-24:00"}, time.UTC, "2026-11-28T10:00:00Z", ""},
		{[]string{"Mon-Sun 18:00-18:00"}, time.UTC, "2026-11-28T10:00:00Z", ""},
		{nil, time.UTC, "2026-11-28T10:00:00Z", "2026-11-28T10:00:00Z"},
		// Fall-back night in New York: 01:00-03:00 wall clock lasts three hours.
		{[]string{"01:00-03:00"}, ny, "2026-11-01T01:30:00-04:00", "2026-11-01T03:00:00-05:00"},
	}
	for _, c := range cases {
		t.Run(c.at, func(t *testing.T) {
			ws, err := ParseWindows(c.windows, c.loc)
			if err != nil {
				t.Fatal(err)
			}
			at := mustTime(t, c.at)
			got, ok := ws.NextOpen(at)
			if c.want == "" {
				if ok {
					t.Fatalf("NextOpen = %s, want never", got)
				}
				return
			}
			if want := mustTime(t, c.want); !ok || !got.Equal(want) {
				t.Fatalf("NextOpen = %s %v, want %s", got, ok, want)
			}
			if ws.Contains(got) {
				t.Fatalf("NextOpen %s is inside a window", got)
			}
		})
	}
}

func TestWindowErrors(t *testing.T) {
	cases := []struct{ expr, want string }{
		{"Mon-Fri 08:00-25:00", `blackout "Mon-Fri 08:00-25:00": end time "25:00": want HH:MM from 00:00 to 24:00`},
		{"Funday 08:00-09:00", `blackout "Funday 08:00-09:00": day "Funday": want Mon, Tue, Wed, Thu, Fri, Sat or Sun`},
		{"08:00", `blackout "08:00": time range "08:00": want HH:MM-HH:MM`},
		{"24:00-06:00", `blackout "24:00-06:00": start time "24:00": want HH:MM from 00:00 to 23:59`},
		{"8:0-9:00", `blackout "8:0-9:00": start time "8:0": want HH:MM from 00:00 to 23:59`},
		{"08:60-09:00", `blackout "08:60-09:00": start time "08:60": want HH:MM from 00:00 to 23:59`},
		{"", `blackout "": want "[DAYS ]HH:MM-HH:MM", e.g. "Mon-Fri 08:00-18:00"`},
		{"Mon Tue 08:00-09:00", `blackout "Mon Tue 08:00-09:00": want "[DAYS ]HH:MM-HH:MM", e.g. "Mon-Fri 08:00-18:00"`},
	}
	for _, c := range cases {
		_, err := ParseWindow(c.expr, time.UTC)
		if err == nil || err.Error() != c.want {
			t.Errorf("%q:\n got %v\nwant %s", c.expr, err, c.want)
		}
		var se *SyntaxError
		if !errors.As(err, &se) || se.Kind != "blackout" {
			t.Errorf("%q: not a blackout *SyntaxError", c.expr)
		}
	}
	if _, err := ParseWindows([]string{"Mon 08:00-09:00", "bad"}, time.UTC); err == nil {
		t.Error("ParseWindows accepted a bad window")
	}
}

func TestFakeClock(t *testing.T) {
	t0 := mustTime(t, "2026-11-20T10:00:00Z")
	c := NewFakeClock(t0)
	a := c.NewTimer(2 * time.Minute)
	b := c.NewTimer(time.Minute)
	z := c.NewTimer(0)
	stopped := c.NewTimer(time.Minute)
	select {
	case got := <-z.C():
		if !got.Equal(t0) {
			t.Fatalf("zero timer sent %s", got)
		}
	default:
		t.Fatal("zero-duration timer did not fire at once")
	}
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop must report true once, then false")
	}
	if n := c.Timers(); n != 2 {
		t.Fatalf("%d timers pending, want 2", n)
	}
	c.Advance(59 * time.Second)
	select {
	case <-b.C():
		t.Fatal("fired early")
	default:
	}
	c.Advance(time.Second)
	if got := <-b.C(); !got.Equal(t0.Add(time.Minute)) {
		t.Fatalf("b fired with %s", got)
	}
	if b.Stop() {
		t.Fatal("Stop after firing reported true")
	}
	c.Set(t0.Add(time.Hour))
	if got := <-a.C(); !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("a fired with %s", got)
	}
	if !c.Now().Equal(t0.Add(time.Hour)) || c.Timers() != 0 {
		t.Fatalf("now %s, %d timers", c.Now(), c.Timers())
	}

	// WaitForTimers returns once a goroutine has parked on the clock.
	done := make(chan time.Time)
	go func() { done <- <-c.NewTimer(time.Second).C() }()
	if err := c.WaitForTimers(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	if got := <-done; !got.Equal(t0.Add(time.Hour + time.Second)) {
		t.Fatalf("goroutine timer fired with %s", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.WaitForTimers(ctx, 5); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitForTimers on a canceled context: %v", err)
	}
}

func TestRealClock(t *testing.T) {
	c := RealClock()
	before := time.Now()
	if now := c.Now(); now.Before(before) {
		t.Fatal("real clock went backwards")
	}
	tm := c.NewTimer(0)
	<-tm.C() // fires at once; a hang here fails by the test timeout
	if tm.Stop() {
		t.Fatal("Stop after firing reported true")
	}
	if !c.NewTimer(time.Hour).Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
}
