package retention_test

import (
	"fmt"
	"time"

	"github.com/cairn-backup/cairn/appliance/retention"
)

// A retention preview: what is kept, why, and what would be removed.
func ExampleApply() {
	day := func(d, h int) time.Time { return time.Date(2026, 11, d, h, 0, 0, 0, time.UTC) }
	snaps := []retention.Snapshot{
		{ID: "a1", Time: day(20, 14), Complete: false}, // interrupted, newer than the last good one
		{ID: "b2", Time: day(20, 2), Complete: true},
		{ID: "c3", Time: day(19, 2), Complete: true},
		{ID: "d4", Time: day(18, 14), Complete: true},
		{ID: "e5", Time: day(18, 2), Complete: true},
		{ID: "f6", Time: day(1, 2), Complete: true},
	}
	p := retention.Policy{KeepDaily: 3, KeepMonthly: 2}
	keep, remove, reasons := retention.Apply(p, snaps, time.UTC)
	fmt.Println(p)
	for _, s := range keep {
		fmt.Println("keep  ", s.ID, reasons[s.ID])
	}
	for _, s := range remove {
		fmt.Println("remove", s.ID)
	}
	// Output:
	// keep 3 daily, 2 monthly
	// keep   a1 [partial, newer than newest complete]
	// keep   b2 [daily 2026-11-20 monthly 2026-11]
	// keep   c3 [daily 2026-11-19]
	// keep   d4 [daily 2026-11-18]
	// keep   f6 [monthly 2026-11 (oldest)]
	// remove e5
}
