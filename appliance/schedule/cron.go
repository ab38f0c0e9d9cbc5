package schedule

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// SyntaxError is returned for an invalid cron expression or blackout window.
// Its message names the expression and what is wrong with it, e.g.
// `cron "61 * * * *": minute 61 out of range 0-59`.
type SyntaxError struct {
	Kind string // "cron" or "blackout"
	Expr string
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s %q: %s", e.Kind, e.Expr, e.Msg) }

// Cron is a parsed five-field cron expression evaluated in a time zone.
// It is immutable and safe for concurrent use.
type Cron struct {
	expr                         string
	loc                          *time.Location
	minute, hour, dom, month     uint64 // bit i set: value i matches
	dow                          uint64 // 0 = Sunday .. 6 = Saturday
	domRestricted, dowRestricted bool
}

type field struct {
	name     string
	min, max int
	names    []string // names[i] is the name of value min+i
}

var (
	minuteField = field{name: "minute", min: 0, max: 59}
	hourField   = field{name: "hour", min: 0, max: 23}
	domField    = field{name: "day-of-month", min: 1, max: 31}
	monthField  = field{name: "month", min: 1, max: 12,
		names: []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}}
	// Day-of-week accepts 0-7; 7 is Sunday again and folded onto 0.
	dowField = field{name: "day-of-week", min: 0, max: 7,
		names: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}}
)

var descriptors = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// ParseCron parses a standard five-field cron expression
// (minute hour day-of-month month day-of-week) or one of @yearly, @annually,
// @monthly, @weekly, @daily, @midnight, @hourly. Fields take *, numbers,
// ranges a-b, steps */n, a-b/n and a/n (a to the maximum), comma lists, and
// the names jan-dec and sun-sat (any case). Day-of-week 7 is Sunday. When both
// day fields are restricted (neither starts with *), a day matches if either
// does, as in Vixie cron. Times are wall-clock times in loc (nil: time.Local).
func ParseCron(expr string, loc *time.Location) (*Cron, error) {
	if loc == nil {
		loc = time.Local
	}
	c := &Cron{expr: expr, loc: loc}
	bad := func(format string, args ...any) error {
		return &SyntaxError{Kind: "cron", Expr: expr, Msg: fmt.Sprintf(format, args...)}
	}
	spec := strings.TrimSpace(expr)
	if strings.HasPrefix(spec, "@") {
		s, ok := descriptors[strings.ToLower(spec)]
		if !ok {
			return nil, bad("unknown descriptor %s (want @yearly, @monthly, @weekly, @daily or @hourly)", spec)
		}
		spec = s
	}
	f := strings.Fields(spec)
	if len(f) != 5 {
		return nil, bad("want 5 fields (minute hour day-of-month month day-of-week), got %d", len(f))
	}
	var err error
	if c.minute, err = minuteField.parse(f[0]); err != nil {
		return nil, bad("%v", err)
	}
	if c.hour, err = hourField.parse(f[1]); err != nil {
		return nil, bad("%v", err)
	}
	if c.dom, err = domField.parse(f[2]); err != nil {
		return nil, bad("%v", err)
	}
	if c.month, err = monthField.parse(f[3]); err != nil {
		return nil, bad("%v", err)
	}
	if c.dow, err = dowField.parse(f[4]); err != nil {
		return nil, bad("%v", err)
	}
	if c.dow&(1<<7) != 0 {
		c.dow = c.dow&^(1<<7) | 1
	}
	c.domRestricted = !strings.HasPrefix(f[2], "*")
	c.dowRestricted = !strings.HasPrefix(f[4], "*")
	if c.domRestricted && !c.dowRestricted && !c.someDayExists() {
		return nil, bad("never matches: no selected month has any of the selected days of the month")
	}
	return c, nil
}

// someDayExists reports whether some selected month has a selected day of
// the month (February counted with 29 days).
func (c *Cron) someDayExists() bool {
	for m := 1; m <= 12; m++ {
		if c.month&(1<<m) == 0 {
			continue
		}
		days := time.Date(2024, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day() // 2024 is a leap year
		if c.dom&(1<<(days+1)-1) != 0 {
			return true
		}
	}
	return false
}

// parse parses one field into a bit set.
func (f field) parse(s string) (uint64, error) {
	var set uint64
	for item := range strings.SplitSeq(s, ",") {
		if item == "" {
			return 0, fmt.Errorf("%s: empty list item in %q", f.name, s)
		}
		rng, stepStr, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n < 1 {
				return 0, fmt.Errorf("%s step %q must be a whole number of at least 1", f.name, stepStr)
			}
			step = n
		}
		top := f.max
		if f.name == "day-of-week" {
			top = 6 // *, */n and a/n cover Sunday..Saturday once
		}
		lo, hi := f.min, top
		switch {
		case rng == "*":
		default:
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if lo, err = f.value(a); err != nil {
				return 0, err
			}
			switch {
			case isRange:
				if hi, err = f.value(b); err != nil {
					return 0, err
				}
				if hi < lo {
					return 0, fmt.Errorf("%s range %s is backwards", f.name, rng)
				}
			case hasStep:
				hi = top
			default:
				hi = lo
			}
		}
		if lo > hi {
			return 0, fmt.Errorf("%s %q selects no value", f.name, item)
		}
		if step > f.max-f.min+1 && hasStep {
			return 0, fmt.Errorf("%s step %d is larger than the field's range %d-%d", f.name, step, f.min, f.max)
		}
		for v := lo; v <= hi; v += step {
			set |= 1 << v
		}
	}
	return set, nil
}

func (f field) value(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("%s: missing value", f.name)
	}
	for i, n := range f.names {
		if strings.EqualFold(s, n) {
			return f.min + i, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		if f.names != nil {
			return 0, fmt.Errorf("%s %q is neither a number nor a name (%s-%s)", f.name, s, f.names[0], f.names[len(f.names)-1])
		}
		return 0, fmt.Errorf("%s %q is not a number", f.name, s)
	}
	if v < f.min || v > f.max {
		return 0, fmt.Errorf("%s %d out of range %d-%d", f.name, v, f.min, f.max)
	}
	return v, nil
}

// String returns the expression as it was given.
func (c *Cron) String() string { return c.expr }

// Location returns the time zone the expression is evaluated in.
func (c *Cron) Location() *time.Location { return c.loc }

// maxSearchYears bounds Next. Day-of-month and day-of-week together can
// select dates as rare as "February 1st when it is a Monday", which can be
// eleven years apart; the Gregorian calendar repeats every 400 years, but 29
// covers every weekday/date pairing that can occur.
const maxSearchYears = 29

// Next returns the first activation strictly after after, in c's location,
// or the zero time if there is none within the next years (cannot happen for
// an expression ParseCron accepted).
//
// Wall-clock time decides: each matching wall-clock minute fires once. A
// minute skipped by a DST spring-forward fires at the first instant after the
// gap (02:30 on a day that jumps from 02:00 to 03:00 fires at 03:00). A minute
// that occurs twice at a fall-back fires only at its first occurrence.
func (c *Cron) Next(after time.Time) time.Time {
	a := after.In(c.loc)
	// civ holds a wall-clock time in UTC fields: no DST, plain arithmetic.
	civ := time.Date(a.Year(), a.Month(), a.Day(), a.Hour(), a.Minute(), 0, 0, time.UTC).Add(time.Minute)
	limit := civ.AddDate(maxSearchYears, 0, 0)
	for civ.Before(limit) {
		switch {
		case c.month&(1<<uint(civ.Month())) == 0:
			civ = time.Date(civ.Year(), civ.Month()+1, 1, 0, 0, 0, 0, time.UTC)
		case !c.dayMatches(civ):
			civ = time.Date(civ.Year(), civ.Month(), civ.Day()+1, 0, 0, 0, 0, time.UTC)
		case c.hour&(1<<uint(civ.Hour())) == 0:
			civ = civ.Truncate(time.Hour).Add(time.Hour)
		case c.minute&(1<<uint(civ.Minute())) == 0:
			// Jump to the next selected minute of this hour, or the next hour.
			rest := c.minute >> uint(civ.Minute())
			if rest == 0 {
				civ = civ.Truncate(time.Hour).Add(time.Hour)
			} else {
				civ = civ.Add(time.Duration(bits.TrailingZeros64(rest)) * time.Minute)
			}
		default:
			if t := firstInstant(civ, c.loc); t.After(after) {
				return t
			}
			civ = civ.Add(time.Minute)
		}
	}
	return time.Time{}
}

func (c *Cron) dayMatches(civ time.Time) bool {
	dom := c.dom&(1<<uint(civ.Day())) != 0
	dow := c.dow&(1<<uint(civ.Weekday())) != 0
	if c.domRestricted && c.dowRestricted {
		return dom || dow
	}
	return dom && dow
}

// firstInstant returns the first instant whose wall clock in loc reads civ
// (whose UTC fields hold the wall-clock time), or, if DST skips civ, the
// first instant after the gap.
func firstInstant(civ time.Time, loc *time.Location) time.Time {
	// The instants reading civ lie within about ±14h of civ-as-UTC; the zone
	// offsets in force just outside that span are the candidates.
	var best time.Time
	var offBefore int
	for i, probe := range []time.Duration{-15 * time.Hour, 15 * time.Hour} {
		_, off := civ.Add(probe).In(loc).Zone()
		if i == 0 {
			offBefore = off
		}
		cand := civ.Add(-time.Duration(off) * time.Second)
		if _, o := cand.In(loc).Zone(); o == off && (best.IsZero() || cand.Before(best)) {
			best = cand
		}
	}
	if !best.IsZero() {
		return best.In(loc)
	}
	// A gap: read with the earlier offset, civ lands just after the
	// transition, which starts the zone in force there.
	after := civ.Add(-time.Duration(offBefore) * time.Second).In(loc)
	if start, _ := after.ZoneBounds(); !start.IsZero() && !start.After(after) {
		return start.In(loc)
	}
	return time.Date(civ.Year(), civ.Month(), civ.Day(), civ.Hour(), civ.Minute(), 0, 0, loc)
}
