package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// mergePeers takes the peer part of other (a run with -only, -runs 0) into
// r: other's pairs, every result of other (replacing r's result of the
// same scenario and tool, so a re-measured group comes from one run), its
// dump dedup rows (replacing r's row of the same database and change), its
// verification notes for the keys it has, its skipped notes and its load
// test figures. A new pair goes after r's last pair of the same scenario,
// else of the same scenario but its last word (rsync daemon: first,
// nochange, mutated), else of the same first word (fuse, postgres…), else
// of the same issue, else at the end.
func (r *record) mergePeers(other record) error {
	if len(other.Pairs) == 0 && len(other.Dumps) == 0 {
		return errors.New("no peer figures in it")
	}
	var scs []string
	for _, p := range other.Pairs {
		if i := slices.IndexFunc(r.Pairs, func(q pairSpec) bool { return q.Scenario == p.Scenario && q.Peer == p.Peer }); i >= 0 {
			r.Pairs[i] = p
			continue
		}
		at := len(r.Pairs)
		for _, same := range []func(q pairSpec) bool{
			func(q pairSpec) bool { return q.Scenario == p.Scenario },
			func(q pairSpec) bool { return allButLastWord(q.Scenario) == allButLastWord(p.Scenario) },
			func(q pairSpec) bool { return firstWord(q.Scenario) == firstWord(p.Scenario) },
			func(q pairSpec) bool { return q.Issue == p.Issue },
		} {
			if i := lastIndexFunc(r.Pairs, same); i >= 0 {
				at = i + 1
				break
			}
		}
		r.Pairs = slices.Insert(r.Pairs, at, p)
	}
	for _, o := range other.Results {
		if !slices.Contains(scs, o.Scenario) {
			scs = append(scs, o.Scenario)
		}
		if i := slices.IndexFunc(r.Results, func(x *result) bool { return x.Scenario == o.Scenario && x.Tool == o.Tool }); i >= 0 {
			r.Results[i] = o
		} else {
			r.Results = append(r.Results, o)
		}
	}
	for _, d := range other.Dumps {
		if i := slices.IndexFunc(r.Dumps, func(x dumpResult) bool { return x.DB == d.DB && x.Change == d.Change }); i >= 0 {
			r.Dumps[i] = d
		} else {
			r.Dumps = append(r.Dumps, d)
		}
	}
	for k, notes := range other.Verify {
		if r.Verify == nil {
			r.Verify = map[string][]string{}
		}
		r.Verify[k] = notes
	}
	r.Skipped = append(r.Skipped, other.Skipped...)
	if other.Load != nil {
		r.Load = other.Load
	}
	r.MergedFrom = append(r.MergedFrom, fmt.Sprintf("a separate run started %s UTC (cairn `%s`, load average %s at its start and %s at its end, %s): %s",
		other.Start.UTC().Format("2006-01-02 15:04"), other.Versions["cairn"], other.Load0, other.Load1, other.Took.Round(1e9), strings.Join(scs, ", ")))
	return nil
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	return w
}

func allButLastWord(s string) string {
	if i := strings.LastIndexByte(s, ' '); i >= 0 {
		return s[:i]
	}
	return s
}

func lastIndexFunc[T any](s []T, f func(T) bool) int {
	for i := len(s) - 1; i >= 0; i-- {
		if f(s[i]) {
			return i
		}
	}
	return -1
}
