package appliance

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/images"
	"github.com/cairn-backup/cairn/pool"
)

// The audit answers, for every host: which snapshots exist on the
// primary pool and on each replication target, the newest complete one
// per target, the snapshots a target lacks (newer than its newest: not
// yet copied; within its range: gaps, such as the target's own
// retention), and whether the target lags past its threshold.

// AuditBody is GET /api/v1/audit.
type AuditBody struct {
	Time    time.Time     `json:"time"`
	Targets []AuditTarget `json:"targets"`
	Hosts   []AuditHost   `json:"hosts"`
	// Lagging is true when any host lags on any target past the
	// target's threshold.
	Lagging bool `json:"lagging"`
}

// AuditTarget is one target as seen by the audit.
type AuditTarget struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Location  string `json:"location"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	// LagAlertSeconds is the threshold past which a host lags.
	LagAlertSeconds float64 `json:"lag_alert_seconds"`
}

// AuditHost is one host across the primary and the targets.
type AuditHost struct {
	Host    string            `json:"host"`
	Targets []AuditHostTarget `json:"targets"` // "primary" first
}

// AuditHostTarget is one host on one target.
type AuditHostTarget struct {
	Target         string     `json:"target"` // "primary" or a target name
	Snapshots      []string   `json:"snapshots"`
	NewestComplete string     `json:"newest_complete,omitempty"`
	NewestTime     *time.Time `json:"newest_time,omitempty"`
	// Missing: complete primary snapshots newer than the target's newest
	// (waiting to be copied). Gaps: complete primary snapshots within the
	// target's range that it does not hold.
	Missing []string `json:"missing,omitempty"`
	Gaps    []string `json:"gaps,omitempty"`
	// Images: the image snapshots among Snapshots. On a target an image
	// snapshot counts as held only when its image version is there too
	// (replicate_images.go); else it is missing like any other.
	Images     []string `json:"images"`
	LagSeconds float64  `json:"lag_seconds"`
	Lagging    bool     `json:"lagging"`
}

// Audit builds the audit. With live set, every target is listed now;
// otherwise the listing of each target's last successful run is used
// (targets without one are unreachable).
func (s *Server) Audit(ctx context.Context, live bool) (*AuditBody, error) {
	now := s.now()
	out := &AuditBody{Time: now, Targets: []AuditTarget{}, Hosts: []AuditHost{}}
	snaps, err := s.cat.Snapshots(ctx, "")
	if err != nil {
		return nil, err
	}
	byID := map[string]catalog.Snapshot{}
	byHost := map[string][]catalog.Snapshot{}
	for _, sn := range snaps {
		byID[sn.ID] = sn
		byHost[sn.Host] = append(byHost[sn.Host], sn)
	}
	hosts, err := s.cat.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	for _, h := range hosts {
		if _, ok := byHost[h.Name]; !ok {
			byHost[h.Name] = nil
		}
	}
	ts, err := s.loadTargets(ctx)
	if err != nil {
		return nil, err
	}
	// Per target: host → snapshot IDs it holds.
	held := map[string]map[string][]catalog.Snapshot{}
	for i := range ts {
		t := &ts[i]
		at := AuditTarget{Name: t.Name, Kind: t.Kind, Location: t.Location, LagAlertSeconds: t.lagAlert().Seconds()}
		ids, versions, lookup, closeFn, err := s.targetSnapshots(ctx, t, live)
		if err != nil {
			at.Error = err.Error() // ids: the last listing known
		} else {
			at.Reachable = true
		}
		m := map[string][]catalog.Snapshot{}
		for _, id := range ids {
			sn, ok := byID[id]
			if !ok {
				sn, ok = lookup(id)
			}
			if !ok {
				continue
			}
			if v, isImg := s.placeholderOf(ctx, sn); isImg && !versions[v] {
				continue // the placeholder is there, its image is not (yet)
			}
			m[sn.Host] = append(m[sn.Host], sn)
		}
		held[t.Name] = m
		closeFn()
		out.Targets = append(out.Targets, at)
	}
	names := make([]string, 0, len(byHost))
	for h := range byHost {
		names = append(names, h)
	}
	sort.Strings(names)
	for _, host := range names {
		prim := byHost[host]
		sort.Slice(prim, func(i, j int) bool { return prim[i].Started.Before(prim[j].Started) })
		ph := hostOn("primary", prim, nil, now, 0)
		ph.Images = s.imageSnapshots(ctx, prim)
		ah := AuditHost{Host: host, Targets: []AuditHostTarget{ph}}
		for _, at := range out.Targets {
			list := held[at.Name][host]
			sort.Slice(list, func(i, j int) bool { return list[i].Started.Before(list[j].Started) })
			ht := hostOn(at.Name, list, prim, now, time.Duration(at.LagAlertSeconds*float64(time.Second)))
			ht.Images = s.imageSnapshots(ctx, list)
			out.Lagging = out.Lagging || ht.Lagging
			ah.Targets = append(ah.Targets, ht)
		}
		out.Hosts = append(out.Hosts, ah)
	}
	return out, nil
}

// hostOn compares what a target holds of a host (list, oldest first)
// with the primary's complete snapshots.
func hostOn(target string, list, primary []catalog.Snapshot, now time.Time, alert time.Duration) AuditHostTarget {
	ht := AuditHostTarget{Target: target, Snapshots: []string{}}
	has := map[string]bool{}
	var newest, oldest *catalog.Snapshot
	for i := range list {
		sn := &list[i]
		ht.Snapshots = append(ht.Snapshots, sn.ID)
		has[sn.ID] = true
		if oldest == nil {
			oldest = sn
		}
		if sn.Status == catalog.SnapshotComplete {
			newest = sn
		}
	}
	if newest != nil {
		ht.NewestComplete = newest.ID
		t := newest.Finished
		ht.NewestTime = &t
	}
	if primary == nil {
		return ht
	}
	// Lag: how long the oldest complete snapshot the target lacks (newer
	// than its newest) has waited since it was committed.
	var waiting time.Time
	for _, sn := range primary {
		if sn.Status != catalog.SnapshotComplete || has[sn.ID] {
			continue
		}
		switch {
		case newest == nil || !sn.Started.Before(newest.Started):
			ht.Missing = append(ht.Missing, sn.ID)
			if waiting.IsZero() {
				waiting = sn.Finished
			}
		case oldest != nil && sn.Started.After(oldest.Started):
			ht.Gaps = append(ht.Gaps, sn.ID)
		}
	}
	if !waiting.IsZero() {
		ht.LagSeconds = max(0, now.Sub(waiting).Seconds())
		ht.Lagging = alert > 0 && now.Sub(waiting) > alert
	}
	return ht
}

// imageSnapshots returns the IDs of the image snapshots in list.
func (s *Server) imageSnapshots(ctx context.Context, list []catalog.Snapshot) []string {
	out := []string{}
	for _, sn := range list {
		if _, ok := s.placeholderOf(ctx, sn); ok {
			out = append(out, sn.ID)
		}
	}
	return out
}

// targetSnapshots lists the snapshot IDs and image versions ("name/id")
// on a target — live, or as of its last successful run — and returns a
// lookup of manifests the catalog does not know (pruned on the primary;
// live only) and a close.
func (s *Server) targetSnapshots(ctx context.Context, t *storedTarget, live bool) ([]string, map[string]bool, func(string) (catalog.Snapshot, bool), func(), error) {
	none := func(string) (catalog.Snapshot, bool) { return catalog.Snapshot{}, false }
	st := s.repl.status(t.ReplicaTarget)
	cached := map[string]bool{}
	for _, v := range st.ImageVersions {
		cached[v] = true
	}
	if !live {
		// The last good listing, even when the latest run failed: a
		// target that is down lags more and more.
		if st.LastError != "" {
			return st.Snapshots, cached, none, func() {}, errors.New(st.LastError)
		}
		if st.LastSuccess == nil {
			return nil, cached, none, func() {}, errors.New("not replicated to yet")
		}
		return st.Snapshots, cached, none, func() {}, nil
	}
	_, sec, err := s.target(ctx, t.Name)
	if err != nil {
		return nil, cached, none, func() {}, err
	}
	b, closeFn, err := s.openTarget(ctx, t, sec)
	if err != nil {
		return st.Snapshots, cached, none, func() {}, err
	}
	ids, err := pool.ReplicaSnapshots(ctx, b)
	if err != nil {
		closeFn()
		return st.Snapshots, cached, none, func() {}, err
	}
	versions, err := images.ReplicaVersions(ctx, replicaImagesBackend(b))
	if err != nil {
		closeFn()
		return st.Snapshots, cached, none, func() {}, err
	}
	var rp *pool.Pool
	lookup := func(id string) (catalog.Snapshot, bool) {
		if rp == nil {
			if rp, err = s.openReplicaPool(ctx, b); err != nil {
				return catalog.Snapshot{}, false
			}
		}
		m, err := rp.Snapshot(ctx, id)
		if err != nil {
			return catalog.Snapshot{}, false
		}
		return *manifestRow(m, 0), true
	}
	return ids, versions, lookup, closeFn, nil
}

func (s *Server) handleAudit(r *http.Request, p *principal) (any, error) {
	return s.Audit(r.Context(), r.URL.Query().Get("cached") == "")
}
