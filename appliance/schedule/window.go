package schedule

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is a weekly blackout window such as "Mon-Fri 08:00-18:00", during
// which scheduled jobs do not start. It is immutable.
type Window struct {
	expr       string
	loc        *time.Location
	days       uint8 // bit d set: the window starts on weekday d (0 = Sunday)
	start, end int   // minutes after midnight, start inclusive, end exclusive
}

var dayNames = []string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}

// ParseWindow parses "[DAYS ]HH:MM-HH:MM" in loc (nil: time.Local).
//
// DAYS is a comma list of days or day ranges, by three-letter or full English
// name, any case ("Mon-Fri", "Sat,Sun", "Fri-Mon" wraps over the weekend);
// without it the window is daily. End may be 24:00. An end at or before the
// start crosses midnight ("Fri 22:00-06:00" runs Friday night into Saturday
// morning); equal start and end mean 24 hours. Days name the day on which the
// window starts. Times are wall-clock times.
func ParseWindow(expr string, loc *time.Location) (*Window, error) {
	if loc == nil {
		loc = time.Local
	}
	w := &Window{expr: expr, loc: loc, days: 0x7f}
	bad := func(format string, args ...any) error {
		return &SyntaxError{Kind: "blackout", Expr: expr, Msg: fmt.Sprintf(format, args...)}
	}
	f := strings.Fields(expr)
	var span string
	switch len(f) {
	case 1:
		span = f[0]
	case 2:
		days, err := parseDays(f[0])
		if err != nil {
			return nil, bad("%v", err)
		}
		w.days, span = days, f[1]
	default:
		return nil, bad(`want "[DAYS ]HH:MM-HH:MM", e.g. "Mon-Fri 08:00-18:00"`)
	}
	a, b, ok := strings.Cut(span, "-")
	if !ok {
		return nil, bad("time range %q: want HH:MM-HH:MM", span)
	}
	var err error
	if w.start, err = parseClock(a, false); err != nil {
		return nil, bad("start %v", err)
	}
	if w.end, err = parseClock(b, true); err != nil {
		return nil, bad("end %v", err)
	}
	return w, nil
}

func parseDays(s string) (uint8, error) {
	var set uint8
	for item := range strings.SplitSeq(s, ",") {
		a, b, isRange := strings.Cut(item, "-")
		lo, err := parseDay(a)
		if err != nil {
			return 0, err
		}
		hi := lo
		if isRange {
			if hi, err = parseDay(b); err != nil {
				return 0, err
			}
		}
		for d := lo; ; d = (d + 1) % 7 {
			set |= 1 << d
			if d == hi {
				break
			}
		}
	}
	return set, nil
}

func parseDay(s string) (int, error) {
	l := strings.ToLower(s)
	for i, n := range dayNames {
		if l == n || l == n[:3] {
			return i, nil
		}
	}
	return 0, fmt.Errorf("day %q: want Mon, Tue, Wed, Thu, Fri, Sat or Sun", s)
}

func parseClock(s string, isEnd bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	limit := "23:59"
	if isEnd {
		limit = "24:00"
	}
	if !ok || len(m) != 2 || len(h) == 0 || len(h) > 2 || err1 != nil || err2 != nil ||
		hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && (!isEnd || mm != 0)) {
		return 0, fmt.Errorf("time %q: want HH:MM from 00:00 to %s", s, limit)
	}
	return hh*60 + mm, nil
}

// String returns the expression as it was given.
func (w *Window) String() string { return w.expr }

// Contains reports whether t falls inside the window.
func (w *Window) Contains(t time.Time) bool {
	_, ok := w.endOf(t)
	return ok
}

// endOf returns the instant at which the occurrence of the window holding t
// ends, and whether t is inside one.
func (w *Window) endOf(t time.Time) (time.Time, bool) {
	l := t.In(w.loc)
	m := l.Hour()*60 + l.Minute()
	wd := int(l.Weekday())
	y, mo, d := l.Date()
	startsOn := func(day int) bool { return w.days&(1<<((day+7)%7)) != 0 }
	switch {
	case w.start < w.end: // within one day
		if startsOn(wd) && m >= w.start && m < w.end {
			return time.Date(y, mo, d, 0, w.end, 0, 0, w.loc), true
		}
	default: // crosses midnight (or lasts 24h when start == end)
		if startsOn(wd) && m >= w.start {
			return time.Date(y, mo, d+1, 0, w.end, 0, 0, w.loc), true
		}
		if startsOn(wd-1) && m < w.end {
			return time.Date(y, mo, d, 0, w.end, 0, 0, w.loc), true
		}
	}
	return time.Time{}, false
}

// Windows is a set of blackout windows; a time is blacked out if any
// window contains it.
type Windows []*Window

// ParseWindows parses each expression with ParseWindow.
func ParseWindows(exprs []string, loc *time.Location) (Windows, error) {
	ws := make(Windows, 0, len(exprs))
	for _, e := range exprs {
		w, err := ParseWindow(e, loc)
		if err != nil {
			return nil, err
		}
		ws = append(ws, w)
	}
	return ws, nil
}

// Contains reports whether any window contains t.
func (ws Windows) Contains(t time.Time) bool {
	for _, w := range ws {
		if w.Contains(t) {
			return true
		}
	}
	return false
}

// NextOpen returns the first instant at or after t that no window contains,
// and false if the windows black out a whole week (there is none).
func (ws Windows) NextOpen(t time.Time) (time.Time, bool) {
	limit := t.AddDate(0, 0, 8)
	for t.Before(limit) {
		inside := false
		for _, w := range ws {
			if e, ok := w.endOf(t); ok {
				inside = true
				if !e.After(t) { // DST oddities must not stall the walk
					e = t.Truncate(time.Minute).Add(time.Minute)
				}
				t = e
			}
		}
		if !inside {
			return t, true
		}
	}
	return time.Time{}, false
}

// Jitter returns a stable offset in [0, max) derived from key (the host
// name), whole seconds when max is at least a second. Hosts whose schedules
// name the same instant thus start spread out, each at the same offset every
// time, across restarts and appliances alike.
func Jitter(key string, max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	sum := sha256.Sum256([]byte(key))
	d := time.Duration(binary.BigEndian.Uint64(sum[:8]) % uint64(max))
	if max >= time.Second {
		d = d.Truncate(time.Second)
	}
	return d
}
