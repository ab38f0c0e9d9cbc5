package appliance

import (
	"context"
	"testing"
	"time"
)

func TestThinHistory(t *testing.T) {
	day := func(d, h int) time.Time { return time.Date(2026, 11, d, h, 0, 0, 0, time.UTC) }
	now := day(20, 12)
	in := []UsagePoint{{Time: day(10, 1), Stored: 1}, {Time: day(10, 5), Stored: 2}, {Time: day(11, 3), Stored: 3},
		{Time: day(18, 1), Stored: 4}, {Time: day(18, 23), Stored: 5}, {Time: day(19, 1), Stored: 6}, {Time: day(19, 2), Stored: 7}, {Time: day(20, 11), Stored: 8}}
	got := thinHistory(in, now)
	var stored []int64
	for _, p := range got {
		stored = append(stored, p.Stored)
	}
	// Older than two days: the last of each day (2, 3, 5); newer: all.
	want := []int64{2, 3, 5, 6, 7, 8}
	if len(stored) != len(want) {
		t.Fatalf("kept %v, want %v", stored, want)
	}
	for i := range want {
		if stored[i] != want[i] {
			t.Fatalf("kept %v, want %v", stored, want)
		}
	}
	many := make([]UsagePoint, historyMax+50)
	for i := range many {
		many[i] = UsagePoint{Time: now.Add(-time.Duration(len(many)-i) * time.Minute), Stored: int64(i)}
	}
	if got := thinHistory(many, now); len(got) != historyMax || got[len(got)-1].Stored != int64(len(many)-1) {
		t.Fatalf("capped to %d, last %d", len(got), got[len(got)-1].Stored)
	}
}

// A backup adds a sample with the pool's stored bytes and the snapshot's
// apparent bytes; GET /api/v1/pool/history answers them.
func TestPoolHistoryAfterBackup(t *testing.T) {
	e := newEnv(t, Config{})
	e.addHost("h1", nil)
	if j := e.waitJob(e.backup("h1").ID); j.State != "done" {
		t.Fatalf("backup %+v", j)
	}
	snaps, err := e.s.cat.Snapshots(context.Background(), "")
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots %v %v", snaps, err)
	}
	var h PoolHistoryBody
	waitFor(t, "a usage sample with the snapshot", func() bool {
		e.must("socket", "GET", "/api/v1/pool/history", nil, &h)
		return len(h.Points) > 0 && h.Points[len(h.Points)-1].Snapshots == 1
	})
	last := h.Points[len(h.Points)-1]
	objs, bytes, err := e.s.poolUsage(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if last.Apparent != snaps[0].Bytes || last.Stored != bytes || last.Objects != objs || last.Stored == 0 {
		t.Fatalf("sample %+v; pool %d objects %d bytes, snapshot %d bytes", last, objs, bytes, snaps[0].Bytes)
	}
	if len(h.Points) < 2 || h.Points[0].Snapshots != 0 {
		t.Fatalf("no sample from the start before the backup: %+v", h.Points)
	}
	// Users do not see it.
	tok := e.user("u1", "user")
	if w := e.do(tok, "GET", "/api/v1/pool/history", nil); w.Code != 403 && w.Code != 404 {
		t.Fatalf("user GET history: %d", w.Code)
	}
}
