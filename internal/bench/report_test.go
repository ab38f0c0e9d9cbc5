package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/bench/corpus"
)

func TestReport(t *testing.T) {
	s := func(wall, cpu float64, rss, stored int64) sample {
		return sample{Wall: time.Duration(wall * float64(time.Second)), CPU: time.Duration(cpu * float64(time.Second)),
			MaxRSS: rss << 20, Stored: stored << 20, StoredAlloc: stored << 20, Files: 10}
	}
	b := &bench{rec: record{
		Runs: 1, Tools: []string{"cairn", "restic", "borg"}, Corpus: corpus.Quick(1),
		Versions:  map[string]string{"cairn": "cairn test"},
		FlatSizes: []int{10, 100},
		Results: []*result{
			{Scenario: scFirst, Tool: "cairn", Samples: []sample{s(4, 6, 50, 101)}},
			{Scenario: scFirst, Tool: "restic", Samples: []sample{s(10, 10, 100, 100)}},
			{Scenario: scFirst, Tool: "borg", Samples: []sample{s(12, 10, 80, 99)}},
			{Scenario: scRestore, Tool: "cairn", Samples: []sample{s(9, 9, 50, 0)}},
			{Scenario: scRestore, Tool: "restic", Samples: []sample{s(10, 10, 100, 0)}},
			{Scenario: scNoChange, Tool: "borg", Errs: []string{"borg: exit status 2"}},
		},
		Flat: []flatResult{{Tool: "cairn", Files: 10, MaxRSS: 10 << 20}, {Tool: "cairn", Files: 100, MaxRSS: 30 << 20}},
	}}
	out := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := b.writeReport(out); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	md := string(data)
	for _, want := range []string{
		"| time ≤ 0.5× restic | first | 0.40× | ✅ met |",
		"| time ≤ 0.5× restic | restore | 0.90× | ❌ not met |",
		"| time ≤ 0.75× borg | first | 0.33× | ✅ met |",
		"| stored ≤ 1.0× restic | first | 1.01× | ❌ not met |",
		"| peak RSS flat (≤ 2×) | 10 → 100 files | 3.00× | ❌ not met |",
		"## What limits the targets not met",
		"- **restore, ≤ 0.5× restic**",
		"borg / nochange: `borg: exit status 2`",
		"`cairn test`",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}

func TestFmtRatio(t *testing.T) {
	for _, tc := range []struct {
		r, bound float64
		want     string
	}{{0.4, 0.5, "0.40×"}, {1.0012, 1, "1.001×"}, {0.998, 1, "0.998×"}, {1.2, 0, "1.20×"}} {
		if got := fmtRatio(tc.r, tc.bound); got != tc.want {
			t.Errorf("fmtRatio(%v, %v) = %s, want %s", tc.r, tc.bound, got, tc.want)
		}
	}
}
