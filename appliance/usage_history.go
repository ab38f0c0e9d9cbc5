package appliance

// Pool usage over time, for the dashboard's chart: a sample of the stored
// bytes (objects in the pool, after dedup and compression) and the
// apparent bytes (the sum of the snapshots' file bytes) is taken at
// start, after every snapshot or finished pool job, and hourly. The
// samples are kept in the catalog setting pool.usage_history (JSON),
// thinned so it stays small: every sample of the last two days, then the
// last one of each day, at most historyMax.

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
)

const (
	settingUsageHistory = "pool.usage_history"
	historyMax          = 1000
	historyDense        = 48 * time.Hour
)

// UsagePoint is one sample of the pool's usage.
type UsagePoint struct {
	Time      time.Time `json:"time"`
	Stored    int64     `json:"stored"`   // bytes of the pool's objects
	Apparent  int64     `json:"apparent"` // sum of the snapshots' file bytes
	Objects   int64     `json:"objects"`
	Snapshots int       `json:"snapshots"`
}

// historyMu serialises read-modify-write of the history setting.
var historyMu sync.Mutex

// usageLoop samples at start, on snapshot and final job events and hourly,
// until ctx ends.
func (s *Server) usageLoop(ctx context.Context) {
	ch, cancel := s.events.subscribe(func(e Event) bool {
		if e.Type == "snapshot" {
			return true
		}
		if e.Type != "job" {
			return false
		}
		d, _ := e.Data.(map[string]string)
		return d["kind"] != "backup" && d["state"] != catalog.JobQueued && d["state"] != catalog.JobRunning
	})
	defer cancel()
	s.sampleUsage(ctx)
	for {
		t := s.clock.NewTimer(time.Hour)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case _, ok := <-ch:
			t.Stop()
			if !ok {
				return
			}
			s.invalidateUsage()
		case <-t.C():
		}
		s.sampleUsage(ctx)
	}
}

func (s *Server) sampleUsage(ctx context.Context) {
	if err := s.recordUsage(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("pool usage sample", "err", err)
	}
}

// recordUsage appends one sample to the history.
func (s *Server) recordUsage(ctx context.Context) error {
	storageMu.Lock() // not during a storage swap (setup_storage.go)
	objs, bytes, err := s.poolUsage(ctx, false)
	storageMu.Unlock()
	if err != nil {
		return err
	}
	snaps, err := s.cat.Snapshots(ctx, "")
	if err != nil {
		return err
	}
	pt := UsagePoint{Time: s.now().UTC(), Stored: bytes, Objects: objs, Snapshots: len(snaps)}
	for _, sn := range snaps {
		pt.Apparent += sn.Bytes
	}
	historyMu.Lock()
	defer historyMu.Unlock()
	h, err := s.usageHistory(ctx)
	if err != nil {
		return err
	}
	h = thinHistory(append(h, pt), pt.Time)
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return s.cat.SetSetting(ctx, settingUsageHistory, string(b))
}

func (s *Server) usageHistory(ctx context.Context) ([]UsagePoint, error) {
	v, ok, err := s.cat.Setting(ctx, settingUsageHistory)
	if err != nil || !ok {
		return nil, err
	}
	var h []UsagePoint
	if err := json.Unmarshal([]byte(v), &h); err != nil {
		return nil, nil // a damaged history starts again
	}
	return h, nil
}

// thinHistory keeps every point newer than historyDense before now, the
// last point of each older UTC day, and at most historyMax points.
func thinHistory(h []UsagePoint, now time.Time) []UsagePoint {
	out := make([]UsagePoint, 0, len(h))
	for i, p := range h {
		if now.Sub(p.Time) < historyDense {
			out = append(out, p)
			continue
		}
		if i+1 < len(h) && sameDay(h[i+1].Time, p.Time) {
			continue // a later point of the same day follows
		}
		out = append(out, p)
	}
	if len(out) > historyMax {
		out = out[len(out)-historyMax:]
	}
	return out
}

func sameDay(a, b time.Time) bool {
	ay, am, ad := a.UTC().Date()
	by, bm, bd := b.UTC().Date()
	return ay == by && am == bm && ad == bd
}

// PoolHistoryBody answers GET /api/v1/pool/history.
type PoolHistoryBody struct {
	Points []UsagePoint `json:"points"`
}

func (s *Server) handlePoolHistory(r *http.Request, p *principal) (any, error) {
	h, err := s.usageHistory(r.Context())
	if err != nil {
		return nil, err
	}
	if h == nil {
		h = []UsagePoint{}
	}
	return PoolHistoryBody{Points: h}, nil
}
