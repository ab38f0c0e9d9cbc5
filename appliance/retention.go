package appliance

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/appliance/retention"
	"github.com/cairn-backup/cairn/pool"
)

// RetentionPlan is what a host's policy keeps and removes, per source.
type RetentionPlan struct {
	Host    string                     `json:"host"`
	Policy  string                     `json:"policy"`
	Sources map[string]*RetentionSplit `json:"sources"`
}

// RetentionSplit is the plan for one source.
type RetentionSplit struct {
	Keep   []RetainedSnapshot `json:"keep"`
	Remove []RetainedSnapshot `json:"remove"`
}

// RetainedSnapshot is one snapshot in a plan, with why it is kept.
type RetainedSnapshot struct {
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Status  string    `json:"status"`
	Reasons []string  `json:"reasons,omitempty"`
}

func policyOf(r catalog.Retention) retention.Policy {
	return retention.Policy{KeepLast: r.Last, KeepHourly: r.Hourly, KeepDaily: r.Daily,
		KeepWeekly: r.Weekly, KeepMonthly: r.Monthly, KeepYearly: r.Yearly}
}

// retentionPlan applies a host's policy to each of its sources' snapshots.
// Snapshots are grouped by source: one source's history never decides
// another's. Periods are in the appliance's local time.
func (s *Server) retentionPlan(ctx context.Context, h *catalog.Host) (*RetentionPlan, error) {
	r, err := s.effectiveRetention(ctx, h)
	if err != nil {
		return nil, err
	}
	pol := policyOf(r)
	snaps, err := s.cat.Snapshots(ctx, h.Name)
	if err != nil {
		return nil, err
	}
	bySource := map[string][]catalog.Snapshot{}
	for _, sn := range snaps {
		bySource[sn.Source] = append(bySource[sn.Source], sn)
	}
	plan := &RetentionPlan{Host: h.Name, Policy: pol.String(), Sources: map[string]*RetentionSplit{}}
	for src, list := range bySource {
		in := make([]retention.Snapshot, 0, len(list))
		status := map[string]string{}
		for _, sn := range list {
			in = append(in, retention.Snapshot{ID: sn.ID, Time: sn.Started, Complete: sn.Status == catalog.SnapshotComplete})
			status[sn.ID] = sn.Status
		}
		keep, remove, reasons := retention.Apply(pol, in, time.Local)
		split := &RetentionSplit{Keep: []RetainedSnapshot{}, Remove: []RetainedSnapshot{}}
		for _, k := range keep {
			split.Keep = append(split.Keep, RetainedSnapshot{ID: k.ID, Time: k.Time, Status: status[k.ID], Reasons: reasons[k.ID]})
		}
		for _, k := range remove {
			split.Remove = append(split.Remove, RetainedSnapshot{ID: k.ID, Time: k.Time, Status: status[k.ID]})
		}
		sort.Slice(split.Keep, func(i, j int) bool { return split.Keep[i].Time.After(split.Keep[j].Time) })
		sort.Slice(split.Remove, func(i, j int) bool { return split.Remove[i].Time.After(split.Remove[j].Time) })
		plan.Sources[src] = split
	}
	return plan, nil
}

// applyRetention removes what the host's policy does not keep: the
// manifest from the pool first (the truth), then the index row. Objects
// go at the next GC.
func (s *Server) applyRetention(ctx context.Context, jc *jobCtx, h *catalog.Host) error {
	plan, err := s.retentionPlan(ctx, h)
	if err != nil {
		return err
	}
	removed := 0
	for src, split := range plan.Sources {
		for _, r := range split.Remove {
			if err := s.deleteSnapshot(ctx, r.ID); err != nil {
				return err
			}
			removed++
			if jc != nil {
				jc.logf("info", "retention (%s): removed snapshot %s of %s", plan.Policy, r.ID, src)
			}
		}
	}
	if removed > 0 {
		s.invalidateUsage()
	}
	return nil
}

// deleteSnapshot removes the catalog row first, then the manifest: a
// crash in between leaves a manifest the catalog does not list (its data
// kept by GC, back with `cairn catalog rebuild`), never a listed snapshot
// whose manifest is gone (GC would sweep its objects and the listed
// snapshot would no longer restore).
func (s *Server) deleteSnapshot(ctx context.Context, id string) error {
	if err := s.cat.DeleteSnapshot(ctx, id); err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return err
	}
	if err := s.pool.DeleteSnapshot(ctx, id); err != nil && !errors.Is(err, pool.ErrNotFound) {
		return err
	}
	return nil
}

func (s *Server) handleRetentionPreview(r *http.Request, p *principal) (any, error) {
	h, err := s.visibleHost(r.Context(), p, r.PathValue("host"))
	if err != nil {
		return nil, err
	}
	return s.retentionPlan(r.Context(), h)
}

func (s *Server) handleSnapshotDelete(r *http.Request, p *principal) (any, error) {
	snap, err := s.visibleSnapshot(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if err := s.deleteSnapshot(r.Context(), snap.ID); err != nil {
		return nil, err
	}
	s.invalidateUsage()
	s.log.Info("snapshot deleted", "snapshot", snap.ID, "host", snap.Host, "by", p.Name)
	return nil, nil
}
