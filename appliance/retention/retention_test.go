package retention

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the tests must not depend on the host's zoneinfo
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// snap builds a complete snapshot whose ID is its time: either with an
// explicit offset ("2026-11-01T01:30-04:00", "…Z") or as wall time in loc.
func snap(t *testing.T, loc *time.Location, id string) Snapshot {
	t.Helper()
	var tm time.Time
	var err error
	if strings.HasSuffix(id, "Z") || strings.Count(id, "-") > 2 || strings.Contains(id, "+") {
		tm, err = time.Parse("2006-01-02T15:04Z07:00", id)
	} else {
		tm, err = time.ParseInLocation("2006-01-02T15:04", id, loc)
	}
	if err != nil {
		t.Fatalf("bad test snapshot %q: %v", id, err)
	}
	return Snapshot{ID: id, Time: tm, Complete: true}
}

func ids(ss []Snapshot) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

func TestApply(t *testing.T) {
	utc := time.UTC
	berlin := mustLoc(t, "Europe/Berlin")
	ny := mustLoc(t, "America/New_York")

	type tc struct {
		name    string
		loc     *time.Location
		policy  Policy
		snaps   []string // complete snapshots, any order
		partial []string // partial snapshots
		keep    []string // newest first
		reasons map[string][]string
	}
	cases := []tc{
		{
			name:   "no snapshots",
			loc:    utc,
			policy: Policy{KeepLast: 3},
		},
		{
			name:    "empty policy keeps everything, partials too",
			loc:     utc,
			policy:  Policy{},
			snaps:   []string{"2026-11-20T10:00", "2026-11-19T10:00", "2025-01-01T00:00"},
			partial: []string{"2026-11-18T10:00"},
			keep:    []string{"2026-11-20T10:00", "2026-11-19T10:00", "2026-11-18T10:00", "2025-01-01T00:00"},
			reasons: map[string][]string{
				"2026-11-20T10:00": {ReasonEmptyPolicy}, "2026-11-19T10:00": {ReasonEmptyPolicy},
				"2026-11-18T10:00": {ReasonEmptyPolicy}, "2025-01-01T00:00": {ReasonEmptyPolicy},
			},
		},
		{
			name:   "keep-last 3 of 5, input unsorted",
			loc:    utc,
			policy: Policy{KeepLast: 3},
			snaps:  []string{"2026-11-18T10:00", "2026-11-20T10:00", "2026-11-16T10:00", "2026-11-19T10:00", "2026-11-17T10:00"},
			keep:   []string{"2026-11-20T10:00", "2026-11-19T10:00", "2026-11-18T10:00"},
		},
		{
			name:   "keep-daily counts only days that have snapshots",
			loc:    utc,
			policy: Policy{KeepDaily: 3},
			snaps: []string{"2026-11-20T10:00", "2026-11-20T08:00", "2026-11-19T23:00",
				"2026-11-17T12:00", "2026-11-16T09:00", "2026-11-15T09:00"},
			keep: []string{"2026-11-20T10:00", "2026-11-19T23:00", "2026-11-17T12:00"},
			reasons: map[string][]string{
				"2026-11-20T10:00": {"daily 2026-11-20"},
				"2026-11-19T23:00": {"daily 2026-11-19"},
				"2026-11-17T12:00": {"daily 2026-11-17"},
			},
		},
		{
			name:   "counts left at the end keep the oldest snapshot too",
			loc:    utc,
			policy: Policy{KeepDaily: 5},
			snaps:  []string{"2026-11-20T10:00", "2026-11-20T08:00", "2026-11-19T09:00", "2026-11-19T07:00"},
			keep:   []string{"2026-11-20T10:00", "2026-11-19T09:00", "2026-11-19T07:00"},
			reasons: map[string][]string{
				"2026-11-20T10:00": {"daily 2026-11-20"},
				"2026-11-19T09:00": {"daily 2026-11-19"},
				"2026-11-19T07:00": {"daily 2026-11-19 (oldest)"},
			},
		},
		{
			name:   "ISO weeks across the year boundary",
			loc:    utc,
			policy: Policy{KeepWeekly: 2},
			// 2024-12-30 (Mon) .. 2025-01-05 (Sun) is ISO week 2025-W01.
			snaps: []string{"2025-01-05T12:00", "2025-01-02T12:00", "2024-12-30T12:00",
				"2024-12-29T12:00", "2024-12-23T12:00", "2024-12-22T12:00"},
			keep: []string{"2025-01-05T12:00", "2024-12-29T12:00"},
			reasons: map[string][]string{
				"2025-01-05T12:00": {"weekly 2025-W01"},
				"2024-12-29T12:00": {"weekly 2024-W52"},
			},
		},
		{
			name:   "yearly in Berlin: 23:30Z on New Year's Eve is already next year",
			loc:    berlin,
			policy: Policy{KeepYearly: 2},
			snaps:  []string{"2025-12-31T23:30Z", "2025-12-31T22:30Z", "2025-06-01T12:00Z", "2024-12-31T12:00Z"},
			keep:   []string{"2025-12-31T23:30Z", "2025-12-31T22:30Z"},
			reasons: map[string][]string{
				"2025-12-31T23:30Z": {"yearly 2026"},
				"2025-12-31T22:30Z": {"yearly 2025"},
			},
		},
		{
			name:   "same snapshots yearly in UTC",
			loc:    utc,
			policy: Policy{KeepYearly: 2},
			snaps:  []string{"2025-12-31T23:30Z", "2025-12-31T22:30Z", "2025-06-01T12:00Z", "2024-12-31T12:00Z"},
			keep:   []string{"2025-12-31T23:30Z", "2024-12-31T12:00Z"},
		},
		{
			name:   "hourly across DST fall-back: the repeated 01:00 hour is one period",
			loc:    ny,
			policy: Policy{KeepHourly: 10},
			// 2026-11-01 in New York: 01:30 EDT, then 01:30 EST an hour later.
			snaps: []string{"2026-11-01T02:10-05:00", "2026-11-01T01:30-05:00", "2026-11-01T01:30-04:00", "2026-11-01T00:40-04:00"},
			keep:  []string{"2026-11-01T02:10-05:00", "2026-11-01T01:30-05:00", "2026-11-01T00:40-04:00"},
			reasons: map[string][]string{
				"2026-11-01T02:10-05:00": {"hourly 2026-11-01 02:00"},
				"2026-11-01T01:30-05:00": {"hourly 2026-11-01 01:00"},
				"2026-11-01T00:40-04:00": {"hourly 2026-11-01 00:00"},
			},
		},
		{
			name:   "daily across DST spring-forward uses New York days, not UTC days",
			loc:    ny,
			policy: Policy{KeepDaily: 2},
			// 2026-03-08 is 23 hours long in New York.
			snaps: []string{"2026-03-08T23:30-04:00", "2026-03-08T00:30-05:00", "2026-03-07T23:30-05:00"},
			keep:  []string{"2026-03-08T23:30-04:00", "2026-03-07T23:30-05:00"},
			reasons: map[string][]string{
				"2026-03-08T23:30-04:00": {"daily 2026-03-08"},
				"2026-03-07T23:30-05:00": {"daily 2026-03-07"},
			},
		},
		{
			name:   "keep-within is relative to the newest snapshot and strict",
			loc:    utc,
			policy: Policy{KeepWithin: 48 * time.Hour},
			snaps:  []string{"2020-05-10T12:00", "2020-05-09T12:00", "2020-05-08T12:01", "2020-05-08T12:00", "2020-05-01T12:00"},
			keep:   []string{"2020-05-10T12:00", "2020-05-09T12:00", "2020-05-08T12:01"},
			reasons: map[string][]string{
				"2020-05-10T12:00": {"within 48h0m0s"},
				"2020-05-09T12:00": {"within 48h0m0s"},
				"2020-05-08T12:01": {"within 48h0m0s"},
			},
		},
		{
			name:   "combined last, daily and monthly",
			loc:    utc,
			policy: Policy{KeepLast: 2, KeepDaily: 3, KeepMonthly: 2},
			snaps: []string{"2026-11-20T18:00", "2026-11-20T09:00", "2026-11-19T18:00", "2026-11-18T18:00",
				"2026-11-17T18:00", "2026-10-31T18:00", "2026-10-01T09:00", "2026-09-15T09:00"},
			keep: []string{"2026-11-20T18:00", "2026-11-20T09:00", "2026-11-19T18:00", "2026-11-18T18:00", "2026-10-31T18:00"},
			reasons: map[string][]string{
				"2026-11-20T18:00": {"last", "daily 2026-11-20", "monthly 2026-11"},
				"2026-11-20T09:00": {"last"},
				"2026-11-19T18:00": {"daily 2026-11-19"},
				"2026-11-18T18:00": {"daily 2026-11-18"},
				"2026-10-31T18:00": {"monthly 2026-10"},
			},
		},
		{
			name:   "monthly skips months without snapshots",
			loc:    utc,
			policy: Policy{KeepMonthly: 3},
			snaps:  []string{"2026-11-02T00:00", "2026-11-01T00:00", "2026-09-30T23:59", "2026-08-01T00:00", "2026-07-31T00:00"},
			keep:   []string{"2026-11-02T00:00", "2026-09-30T23:59", "2026-08-01T00:00"},
		},
		{
			name:   "unlimited daily keeps the newest of every day",
			loc:    utc,
			policy: Policy{KeepDaily: -1},
			snaps:  []string{"2026-11-20T10:00", "2026-11-20T08:00", "2026-11-10T09:00", "2020-01-01T09:00", "2020-01-01T08:00"},
			keep:   []string{"2026-11-20T10:00", "2026-11-10T09:00", "2020-01-01T09:00", "2020-01-01T08:00"},
			reasons: map[string][]string{
				"2026-11-20T10:00": {"daily 2026-11-20"},
				"2026-11-10T09:00": {"daily 2026-11-10"},
				"2020-01-01T09:00": {"daily 2020-01-01"},
				"2020-01-01T08:00": {"daily 2020-01-01 (oldest)"},
			},
		},
		{
			name:    "partials use no count; newer partial kept, older partial removed",
			loc:     utc,
			policy:  Policy{KeepLast: 2},
			snaps:   []string{"2026-11-20T11:00", "2026-11-20T09:00", "2026-11-20T08:00"},
			partial: []string{"2026-11-20T12:00", "2026-11-20T10:00"},
			keep:    []string{"2026-11-20T12:00", "2026-11-20T11:00", "2026-11-20T09:00"},
			reasons: map[string][]string{
				"2026-11-20T12:00": {ReasonPartialNewer},
				"2026-11-20T11:00": {"last"},
				"2026-11-20T09:00": {"last"},
			},
		},
		{
			name:    "only partial snapshots: all kept",
			loc:     utc,
			policy:  Policy{KeepLast: 1},
			partial: []string{"2026-11-20T12:00", "2026-11-19T12:00"},
			keep:    []string{"2026-11-20T12:00", "2026-11-19T12:00"},
		},
		{
			name:   "equal times are ordered by ID",
			loc:    utc,
			policy: Policy{KeepLast: 1},
			snaps:  []string{"2026-11-20T12:00Z", "2026-11-20T12:00+00:00"},
			keep:   []string{"2026-11-20T12:00+00:00"},
		},
		{
			name:   "nil location means UTC",
			loc:    nil,
			policy: Policy{KeepDaily: 1, KeepYearly: 2},
			snaps:  []string{"2025-12-31T23:30Z", "2025-06-01T00:00Z", "2024-06-01T00:00Z"},
			keep:   []string{"2025-12-31T23:30Z", "2024-06-01T00:00Z"},
			reasons: map[string][]string{
				"2025-12-31T23:30Z": {"daily 2025-12-31", "yearly 2025"},
				"2024-06-01T00:00Z": {"yearly 2024"},
			},
		},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parseLoc := c.loc
			if parseLoc == nil {
				parseLoc = time.UTC
			}
			var in []Snapshot
			for _, id := range c.snaps {
				in = append(in, snap(t, parseLoc, id))
			}
			for _, id := range c.partial {
				s := snap(t, parseLoc, id)
				s.Complete = false
				in = append(in, s)
			}
			orig := slices.Clone(in)
			keep, remove, reasons := Apply(c.policy, in, c.loc)
			if !slices.Equal(in, orig) {
				t.Fatal("Apply modified its input")
			}
			if got := ids(keep); !slices.Equal(got, c.keep) && !(len(got) == 0 && len(c.keep) == 0) {
				t.Fatalf("keep = %q\nwant   %q", got, c.keep)
			}
			checkInvariants(t, in, keep, remove, reasons)
			if c.reasons != nil {
				for id, want := range c.reasons {
					if got := reasons[id]; !slices.Equal(got, want) {
						t.Errorf("reasons[%s] = %q, want %q", id, got, want)
					}
				}
			}
		})
	}
}

// checkInvariants asserts what the package documentation promises for every
// input: keep and remove partition the input, both newest first, reasons for
// exactly the kept IDs, and the newest complete snapshot always kept.
func checkInvariants(t *testing.T, in, keep, remove []Snapshot, reasons map[string][]string) {
	t.Helper()
	if len(keep)+len(remove) != len(in) {
		t.Fatalf("keep %d + remove %d != input %d", len(keep), len(remove), len(in))
	}
	all := append(ids(slices.Clone(keep)), ids(remove)...)
	slices.Sort(all)
	want := ids(in)
	slices.Sort(want)
	if !slices.Equal(all, want) {
		t.Fatalf("keep+remove %q is not the input %q", all, want)
	}
	for _, list := range [][]Snapshot{keep, remove} {
		for i := 1; i < len(list); i++ {
			if list[i].Time.After(list[i-1].Time) {
				t.Fatalf("not sorted newest first: %q", ids(list))
			}
		}
	}
	if len(reasons) != len(keep) {
		t.Fatalf("%d reasons for %d kept snapshots", len(reasons), len(keep))
	}
	for _, s := range keep {
		if len(reasons[s.ID]) == 0 {
			t.Fatalf("kept %s without a reason", s.ID)
		}
	}
	var newest *Snapshot
	for i := range in {
		if in[i].Complete && (newest == nil || in[i].Time.After(newest.Time)) {
			newest = &in[i]
		}
	}
	if newest != nil && !slices.ContainsFunc(keep, func(s Snapshot) bool { return s.Time.Equal(newest.Time) && s.Complete }) {
		t.Fatalf("newest complete snapshot %s removed", newest.ID)
	}
}

// TestApplyRandom checks the invariants and restic's core rule (each kept
// period's newest snapshot) on many seeded random histories.
func TestApplyRandom(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	r := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 500 {
		n := r.IntN(40)
		var in []Snapshot
		for j := range n {
			in = append(in, Snapshot{
				ID:       fmt.Sprintf("s%03d", j),
				Time:     base.Add(time.Duration(r.Int64N(int64(3 * 365 * 24 * time.Hour)))),
				Complete: r.IntN(5) != 0,
			})
		}
		pick := func() int { return r.IntN(6) - 1 } // -1 (unlimited) .. 4
		p := Policy{KeepLast: pick(), KeepHourly: pick(), KeepDaily: pick(), KeepWeekly: pick(),
			KeepMonthly: pick(), KeepYearly: pick()}
		if r.IntN(3) == 0 {
			p.KeepWithin = time.Duration(r.IntN(1000)) * time.Hour
		}
		keep, remove, reasons := Apply(p, in, berlin)
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			checkInvariants(t, in, keep, remove, reasons)
			if p.Empty() && len(remove) != 0 {
				t.Fatalf("empty policy removed %d", len(remove))
			}
			// With unlimited daily, every day that has a complete snapshot
			// keeps its newest one.
			if p.KeepDaily == -1 {
				newestOfDay := map[string]Snapshot{}
				for _, s := range in {
					d := s.Time.In(berlin).Format(time.DateOnly)
					if o, ok := newestOfDay[d]; s.Complete && (!ok || s.Time.After(o.Time)) {
						newestOfDay[d] = s
					}
				}
				for d, s := range newestOfDay {
					if _, ok := reasons[s.ID]; !ok {
						t.Fatalf("day %s: newest snapshot %s removed under unlimited daily", d, s.ID)
					}
				}
			}
		})
	}
}

func TestPolicyString(t *testing.T) {
	for _, c := range []struct {
		p    Policy
		want string
	}{
		{Policy{}, "keep everything"},
		{Policy{KeepDaily: 7, KeepWeekly: 4, KeepYearly: -1, KeepWithin: 48 * time.Hour}, "keep 7 daily, 4 weekly, all yearly, all within 48h0m0s"},
		{Policy{KeepLast: 1}, "keep 1 last"},
	} {
		if got := c.p.String(); got != c.want {
			t.Errorf("%+v: got %q, want %q", c.p, got, c.want)
		}
	}
}
