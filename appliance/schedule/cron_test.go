package schedule

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the tests must not depend on the host's zoneinfo
)

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestCronNext(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	berlin := mustLoc(t, "Europe/Berlin")
	const fri = "2026-11-20T10:17:30Z" // a Friday
	cases := []struct {
		expr  string
		loc   *time.Location
		after string
		want  string
	}{
		{"* * * * *", time.UTC, fri, "2026-11-20T10:18:00Z"},
		{"*/15 * * * *", time.UTC, fri, "2026-11-20T10:30:00Z"},
		{"10/20 * * * *", time.UTC, fri, "2026-11-20T10:30:00Z"},
		{"0 * * * *", time.UTC, fri, "2026-11-20T11:00:00Z"},
		{"0 * * * *", time.UTC, "2026-11-20T11:00:00Z", "2026-11-20T12:00:00Z"}, // strictly after
		{"@hourly", time.UTC, fri, "2026-11-20T11:00:00Z"},
		{"@daily", time.UTC, fri, "2026-11-21T00:00:00Z"},
		{"@midnight", time.UTC, fri, "2026-11-21T00:00:00Z"},
		{"@weekly", time.UTC, fri, "2026-11-22T00:00:00Z"},
		{"@monthly", time.UTC, fri, "2026-12-01T00:00:00Z"},
		{"@yearly", time.UTC, fri, "2027-01-01T00:00:00Z"},
		{"@ANNUALLY", time.UTC, fri, "2027-01-01T00:00:00Z"},
		{"30 2 * * mon-fri", time.UTC, fri, "2026-11-23T02:30:00Z"},
		{"0 9 1,15 * *", time.UTC, fri, "2026-12-01T09:00:00Z"},
		{"0 0 31 * *", time.UTC, fri, "2026-12-31T00:00:00Z"},
		{"5-10/2 3 * JAN,jul *", time.UTC, fri, "2027-01-01T03:05:00Z"},
		{"0 12 * * 7", time.UTC, fri, "2026-11-22T12:00:00Z"},   // 7 is Sunday
		{"0 12 * * 5-7", time.UTC, fri, "2026-11-20T12:00:00Z"}, // Fri..Sun
		{"0 0 * * 5", time.UTC, fri, "2026-11-27T00:00:00Z"},
		{"0 0 13 * *", time.UTC, fri, "2026-12-13T00:00:00Z"},
		// Both day fields restricted: either matches (the Friday comes first).
		{"0 0 13 * fri", time.UTC, fri, "2026-11-27T00:00:00Z"},
		// A day field starting with * counts as unrestricted: both must match
		// (odd day AND Monday), so Saturday the 21st does not fire.
		{"0 0 */2 * 1", time.UTC, fri, "2026-11-23T00:00:00Z"},
		{"0 0 29 2 *", time.UTC, fri, "2028-02-29T00:00:00Z"},
		{"0 0 29 2 mon", time.UTC, fri, "2027-02-01T00:00:00Z"},
		{"0 0 29 2 *", time.UTC, "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z"}, // 2100 is no leap year
		// AND rule (day-of-month starts with *): February 1st on a Monday.
		{"0 0 */31 2 1", time.UTC, "2021-02-02T00:00:00Z", "2027-02-01T00:00:00Z"},
		{"0 0 */31 2 1", time.UTC, "2027-02-02T00:00:00Z", "2038-02-01T00:00:00Z"},
		{"0 2 * * *", berlin, "2026-11-20T10:17:30+01:00", "2026-11-21T02:00:00+01:00"},
		// DST spring-forward in New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT.
		{"30 2 * * *", ny, "2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00"},
		{"30 2 * * *", ny, "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"},
		{"*/15 2 * * *", ny, "2026-03-08T01:59:00-05:00", "2026-03-08T03:00:00-04:00"},
		{"*/15 2 * * *", ny, "2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"},
		{"0 3 * * *", ny, "2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00"},
		// DST fall-back in New York, 2026-11-01: 01:00-02:00 happens twice.
		{"30 1 * * *", ny, "2026-11-01T00:00:00-04:00", "2026-11-01T01:30:00-04:00"},
		{"30 1 * * *", ny, "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"},
		{"30 1 * * *", ny, "2026-11-01T01:00:00-05:00", "2026-11-02T01:30:00-05:00"},
		{"30 * * * *", ny, "2026-11-01T01:30:00-04:00", "2026-11-01T02:30:00-05:00"},
		{"0 0 * * *", berlin, "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"},
		{"0 0 * * *", berlin, "2026-10-24T12:00:00+02:00", "2026-10-25T00:00:00+02:00"},
	}
	for _, c := range cases {
		t.Run(c.expr+"@"+c.after, func(t *testing.T) {
			cr, err := ParseCron(c.expr, c.loc)
			if err != nil {
				t.Fatal(err)
			}
			got := cr.Next(mustTime(t, c.after))
			if want := mustTime(t, c.want); !got.Equal(want) {
				t.Fatalf("Next(%s) = %s, want %s", c.after, got.Format(time.RFC3339), want.Format(time.RFC3339))
			}
			if got.Location() != c.loc {
				t.Fatalf("result in %v, want %v", got.Location(), c.loc)
			}
		})
	}
}

func TestCronErrors(t *testing.T) {
	cases := []struct{ expr, want string }{
		{"61 * * * *", `cron "61 * * * *": minute 61 out of range 0-59`},
		{"* 24 * * *", `cron "* 24 * * *": hour 24 out of range 0-23`},
		{"* * 0 * *", `cron "* * 0 * *": day-of-month 0 out of range 1-31`},
		{"* * * 13 *", `cron "* * * 13 *": month 13 out of range 1-12`},
		{"* * * * 8", `cron "* * * * 8": day-of-week 8 out of range 0-7`},
		{"* * *", `cron "* * *": want 5 fields (minute hour day-of-month month day-of-week), got 3`},
		{"", `cron "": want 5 fields (minute hour day-of-month month day-of-week), got 0`},
		{"* * * * * *", `cron "* * * * * *": want 5 fields (minute hour day-of-month month day-of-week), got 6`},
		{"* * * foo *", `cron "* * * foo *": month "foo" is neither a number nor a name (jan-dec)`},
		{"* * * * funday", `cron "* * * * funday": day-of-week "funday" is neither a number nor a name (sun-sat)`},
		{"a * * * *", `cron "a * * * *": minute "a" is not a number`},
		{"*/0 * * * *", `cron "*/0 * * * *": minute step "0" must be a whole number of at least 1`},
		{"*/x * * * *", `cron "*/x * * * *": minute step "x" must be a whole number of at least 1`},
		{"*/90 * * * *", `cron "*/90 * * * *": minute step 90 is larger than the field's range 0-59`},
		{"10-5 * * * *", `cron "10-5 * * * *": minute range 10-5 is backwards`},
		{"* * * * fri-mon", `cron "* * * * fri-mon": day-of-week range fri-mon is backwards`},
		{"1,,2 * * * *", `cron "1,,2 * * * *": minute: empty list item in "1,,2"`},
		{"-5 * * * *", `cron "-5 * * * *": minute: missing value`},
		{"@fortnightly", `cron "@fortnightly": unknown descriptor @fortnightly (want @yearly, @monthly, @weekly, @daily or @hourly)`},
		{"0 0 * * 7/2", `cron "0 0 * * 7/2": day-of-week "7/2" selects no value`},
		{"0 0 31 2 *", `cron "0 0 31 2 *": never matches: no selected month has any of the selected days of the month`},
		{"0 0 31 4,6,9,11 *", `cron "0 0 31 4,6,9,11 *": never matches: no selected month has any of the selected days of the month`},
	}
	for _, c := range cases {
		t.Run(c.expr, func(t *testing.T) {
			_, err := ParseCron(c.expr, time.UTC)
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != c.want {
				t.Fatalf("error\n got %s\nwant %s", err, c.want)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || se.Kind != "cron" || se.Expr != c.expr {
				t.Fatalf("not a *SyntaxError for %q: %#v", c.expr, err)
			}
		})
	}
	// 31 in a month that has it, or a weekday alternative, is fine.
	for _, ok := range []string{"0 0 31 1-2 *", "0 0 31 2 mon", "0 0 30 * *"} {
		if _, err := ParseCron(ok, time.UTC); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

// matches is the definition of a cron match, written independently of
// Next's search, for the brute-force comparison below.
func (c *Cron) matches(t time.Time) bool {
	if c.minute&(1<<t.Minute()) == 0 || c.hour&(1<<t.Hour()) == 0 || c.month&(1<<int(t.Month())) == 0 {
		return false
	}
	return c.dayMatches(t)
}

// TestCronNextBruteForce compares Next with a minute-by-minute scan for
// random expressions in UTC.
func TestCronNextBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	item := func(min, max int) string {
		switch r.IntN(5) {
		case 0:
			return "*"
		case 1:
			return fmt.Sprintf("*/%d", 1+r.IntN(max-min+1))
		case 2:
			a := min + r.IntN(max-min+1)
			b := a + r.IntN(max-a+1)
			return fmt.Sprintf("%d-%d/%d", a, b, 1+r.IntN(3))
		default:
			var l []string
			for range 1 + r.IntN(3) {
				l = append(l, fmt.Sprint(min+r.IntN(max-min+1)))
			}
			return strings.Join(l, ",")
		}
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	checked := 0
	for range 150 {
		expr := strings.Join([]string{item(0, 59), item(0, 23), item(1, 31), item(1, 12), item(0, 7)}, " ")
		c, err := ParseCron(expr, time.UTC)
		if err != nil {
			continue // e.g. only impossible days
		}
		after := base.Add(time.Duration(r.Int64N(int64(365 * 24 * time.Hour))))
		got := c.Next(after)
		want := time.Time{}
		for m := after.Truncate(time.Minute).Add(time.Minute); m.Before(after.Add(40 * 24 * time.Hour)); m = m.Add(time.Minute) {
			if c.matches(m) {
				want = m
				break
			}
		}
		if want.IsZero() {
			if !got.After(after.Add(40*24*time.Hour)) || !c.matches(got) {
				t.Fatalf("%q after %s: got %s, but nothing matches within 40 days", expr, after, got)
			}
			continue
		}
		checked++
		if !got.Equal(want) {
			t.Fatalf("%q after %s: got %s, want %s", expr, after, got, want)
		}
	}
	if checked < 50 {
		t.Fatalf("only %d expressions compared", checked)
	}
}

// TestCronNextDSTEveryMinuteOnce walks a whole fall-back and spring-forward
// day with "* * * * *": every wall-clock minute fires exactly once and the
// results strictly increase.
func TestCronNextDSTEveryMinuteOnce(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	c, err := ParseCron("* * * * *", ny)
	if err != nil {
		t.Fatal(err)
	}
	for _, day := range []string{"2026-11-01", "2026-03-08"} {
		start := mustTime(t, day+"T00:00:00Z").Add(-12 * time.Hour)
		seen := map[string]int{}
		prev := start
		for t0 := start; t0.Before(start.Add(48 * time.Hour)); {
			n := c.Next(t0)
			if !n.After(prev) {
				t.Fatalf("%s: Next(%s) = %s does not move forward", day, t0, n)
			}
			seen[n.In(ny).Format("2006-01-02 15:04")]++
			prev, t0 = n, n
		}
		for k, v := range seen {
			if v != 1 {
				t.Fatalf("%s: wall minute %s fired %d times", day, k, v)
			}
		}
		if day == "2026-11-01" && len(seen) != 48*60-60 {
			t.Fatalf("fall-back: %d distinct minutes over 48h, want %d", len(seen), 48*60-60)
		}
	}
}

func FuzzParseCron(f *testing.F) {
	for _, s := range []string{"* * * * *", "*/5 1-3 1,15 jan-mar mon-fri", "@daily", "61 * * * *", "0 0 29 2 *", "5/7 * * * 0-7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		c, err := ParseCron(expr, time.UTC)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || !strings.HasPrefix(err.Error(), "cron ") {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		after := time.Date(2026, 5, 5, 5, 5, 5, 0, time.UTC)
		if n := c.Next(after); !n.IsZero() && (!n.After(after) || !c.matches(n)) {
			t.Fatalf("%q: Next = %s", expr, n)
		}
	})
}

func TestJitter(t *testing.T) {
	const max = time.Hour
	seen := map[time.Duration]bool{}
	for i := range 50 {
		host := fmt.Sprintf("web%d", i)
		d := Jitter(host, max)
		if d < 0 || d >= max || d%time.Second != 0 {
			t.Fatalf("Jitter(%s) = %v, want whole seconds in [0, 1h)", host, d)
		}
		if again := Jitter(host, max); again != d {
			t.Fatalf("Jitter(%s) not stable: %v then %v", host, d, again)
		}
		seen[d.Truncate(time.Minute)] = true
	}
	// 50 hosts over 60 minutes: a hash that spreads lands in many minutes.
	if len(seen) < 25 {
		t.Fatalf("50 hosts fell in only %d distinct minutes", len(seen))
	}
	if Jitter("web1", 0) != 0 || Jitter("web1", -time.Second) != 0 {
		t.Fatal("no jitter expected for max <= 0")
	}
	if d := Jitter("web1", 10*time.Millisecond); d < 0 || d >= 10*time.Millisecond {
		t.Fatalf("sub-second max: %v", d)
	}
	// Pin one value so a change of the hash (which would move every host's
	// runs) is a conscious decision.
	if got, want := Jitter("web1", time.Hour), 42*time.Minute+29*time.Second; got != want {
		t.Fatalf("Jitter(web1, 1h) = %v, want %v", got, want)
	}
}
