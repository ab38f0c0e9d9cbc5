package retention

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Policy says how many snapshots of each kind to keep. Zero disables a rule;
// a negative count means unlimited. See the package documentation.
type Policy struct {
	KeepLast    int
	KeepHourly  int
	KeepDaily   int
	KeepWeekly  int
	KeepMonthly int
	KeepYearly  int
	KeepWithin  time.Duration // relative to the newest complete snapshot
}

// Empty reports whether p has no rule at all; an empty policy keeps everything.
func (p Policy) Empty() bool {
	return p.KeepLast == 0 && p.KeepHourly == 0 && p.KeepDaily == 0 &&
		p.KeepWeekly == 0 && p.KeepMonthly == 0 && p.KeepYearly == 0 && p.KeepWithin <= 0
}

// String describes p for people, e.g. "keep 7 daily, 4 weekly, all within 48h0m0s".
func (p Policy) String() string {
	if p.Empty() {
		return "keep everything"
	}
	var parts []string
	for _, r := range []struct {
		n    int
		name string
	}{
		{p.KeepLast, "last"}, {p.KeepHourly, "hourly"}, {p.KeepDaily, "daily"},
		{p.KeepWeekly, "weekly"}, {p.KeepMonthly, "monthly"}, {p.KeepYearly, "yearly"},
	} {
		switch {
		case r.n > 0:
			parts = append(parts, fmt.Sprintf("%d %s", r.n, r.name))
		case r.n < 0:
			parts = append(parts, "all "+r.name)
		}
	}
	if p.KeepWithin > 0 {
		parts = append(parts, "all within "+p.KeepWithin.String())
	}
	return "keep " + strings.Join(parts, ", ")
}

// Snapshot is what Apply needs to know of a snapshot.
type Snapshot struct {
	ID       string
	Time     time.Time
	Complete bool // false for the partial snapshot of an interrupted job
}

// Reasons given for snapshots kept outside the bucket rules.
const (
	ReasonEmptyPolicy    = "policy empty (keep everything)"
	ReasonNewestComplete = "newest complete"
	ReasonPartialNewer   = "partial, newer than newest complete"
	ReasonLast           = "last"
)

// rule is one counted retention rule: snapshots are put in periods by key
// and the newest of each of the first count periods is kept.
type rule struct {
	count int
	name  string
	key   func(t time.Time, nr int) string
	last  string
	seen  bool
}

// Apply splits snaps into the ones p keeps and the ones it removes, with the
// reasons each kept snapshot was kept, keyed by ID. Periods are computed in
// loc (nil means UTC). snaps is not modified.
func Apply(p Policy, snaps []Snapshot, loc *time.Location) (keep, remove []Snapshot, reasons map[string][]string) {
	if loc == nil {
		loc = time.UTC
	}
	list := slices.Clone(snaps)
	slices.SortStableFunc(list, func(a, b Snapshot) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	reasons = make(map[string][]string)
	if len(list) == 0 {
		return nil, nil, reasons
	}
	if p.Empty() {
		for _, s := range list {
			reasons[s.ID] = []string{ReasonEmptyPolicy}
		}
		return list, nil, reasons
	}

	var complete []Snapshot
	for _, s := range list {
		if s.Complete {
			complete = append(complete, s)
		}
	}
	var newest time.Time // zero when there is no complete snapshot
	if len(complete) > 0 {
		newest = complete[0].Time
	}

	rules := []*rule{
		{count: p.KeepLast, name: ReasonLast, key: func(_ time.Time, nr int) string { return fmt.Sprint(nr) }},
		{count: p.KeepHourly, name: "hourly", key: func(t time.Time, _ int) string { return t.In(loc).Format("2006-01-02 15:00") }},
		{count: p.KeepDaily, name: "daily", key: func(t time.Time, _ int) string { return t.In(loc).Format("2006-01-02") }},
		{count: p.KeepWeekly, name: "weekly", key: func(t time.Time, _ int) string {
			y, w := t.In(loc).ISOWeek()
			return fmt.Sprintf("%04d-W%02d", y, w)
		}},
		{count: p.KeepMonthly, name: "monthly", key: func(t time.Time, _ int) string { return t.In(loc).Format("2006-01") }},
		{count: p.KeepYearly, name: "yearly", key: func(t time.Time, _ int) string { return t.In(loc).Format("2006") }},
	}

	for nr, s := range complete {
		var why []string
		if p.KeepWithin > 0 && s.Time.After(newest.Add(-p.KeepWithin)) {
			why = append(why, "within "+p.KeepWithin.String())
		}
		oldest := nr == len(complete)-1
		for _, r := range rules {
			if r.count == 0 {
				continue
			}
			k := r.key(s.Time, nr)
			if r.seen && k == r.last && !oldest {
				continue
			}
			reason := r.name
			if r.name != ReasonLast {
				reason += " " + k
			}
			if r.seen && k == r.last {
				reason += " (oldest)"
			}
			why = append(why, reason)
			r.last, r.seen = k, true
			if r.count > 0 {
				r.count--
			}
		}
		if nr == 0 && len(why) == 0 {
			why = append(why, ReasonNewestComplete)
		}
		if len(why) > 0 {
			reasons[s.ID] = why
		}
	}

	for _, s := range list {
		if !s.Complete && (len(complete) == 0 || s.Time.After(newest)) {
			reasons[s.ID] = []string{ReasonPartialNewer}
		}
		if _, ok := reasons[s.ID]; ok {
			keep = append(keep, s)
		} else {
			remove = append(remove, s)
		}
	}
	return keep, remove, reasons
}
