package appliance

import (
	"context"
	"strings"
	"time"
)

// writeVerifyMetrics writes the metrics of issue 11: the last pool
// check's findings and rotation coverage, restore tests per host, and
// replication per target and host (from each target's last run, no
// storage access at scrape time).
func (s *Server) writeVerifyMetrics(ctx context.Context, p *promWriter) error {
	poolID := s.pool.ID()
	if sum, err := s.lastCheckSummary(ctx); err != nil {
		return err
	} else if sum != nil {
		pl := []string{"pool", poolID}
		p.head("cairn_pool_check_corrupt_objects", "gauge", "Corrupt objects the last pool check found (quarantined).")
		p.sample("cairn_pool_check_corrupt_objects", pl, float64(len(sum.Corrupt)))
		p.head("cairn_pool_check_missing_objects", "gauge", "Referenced objects the last pool check found missing.")
		p.sample("cairn_pool_check_missing_objects", pl, float64(len(sum.Missing)))
		p.head("cairn_pool_check_affected_snapshots", "gauge", "Snapshots using a missing or corrupt object, per the last pool check.")
		p.sample("cairn_pool_check_affected_snapshots", pl, float64(len(sum.AffectedSnapshots)))
		p.head("cairn_pool_check_coverage_ratio", "gauge", "Fraction of the pool re-read by the rotating data checks since the rotation last started over (1: all).")
		p.sample("cairn_pool_check_coverage_ratio", pl, sum.Coverage)
	}
	res, err := s.restoreResults(ctx)
	if err != nil {
		return err
	}
	if len(res) > 0 {
		p.head("cairn_restore_test_status", "gauge", "1 if the host's last restore test read every sampled file (and dump) back intact, 0 if not.")
		for _, r := range res {
			v := 0.0
			if r.OK {
				v = 1
			}
			p.sample("cairn_restore_test_status", []string{"host", r.Host}, v)
		}
		p.head("cairn_restore_test_last_timestamp_seconds", "gauge", "When the host's last restore test ran.")
		for _, r := range res {
			p.sample("cairn_restore_test_last_timestamp_seconds", []string{"host", r.Host}, unixSeconds(r.Time))
		}
		p.head("cairn_restore_test_files", "gauge", "Files the host's last restore test read and compared.")
		for _, r := range res {
			p.sample("cairn_restore_test_files", []string{"host", r.Host}, float64(r.Files))
		}
	}
	ts, err := s.loadTargets(ctx)
	if err != nil {
		return err
	}
	if len(ts) == 0 {
		return nil
	}
	var rows []ReplicaTargetStatus
	for _, t := range ts {
		rows = append(rows, s.repl.status(t.ReplicaTarget))
	}
	p.head("cairn_replication_up", "gauge", "1 if the target's last replication run succeeded.")
	for _, r := range rows {
		v := 0.0
		if r.LastRun != nil && r.LastError == "" {
			v = 1
		}
		p.sample("cairn_replication_up", []string{"target", r.Name}, v)
	}
	p.head("cairn_replication_last_success_timestamp_seconds", "gauge", "When the target's last successful replication run ended; 0 if none since start.")
	for _, r := range rows {
		var at time.Time
		if r.LastSuccess != nil {
			at = *r.LastSuccess
		}
		p.sample("cairn_replication_last_success_timestamp_seconds", []string{"target", r.Name}, unixSeconds(at))
	}
	for _, m := range []struct {
		name, help string
		val        func(st *ReplicaTargetStatus) float64
	}{
		{"cairn_replication_last_bytes", "Stored bytes the target's last replication run sent.", func(st *ReplicaTargetStatus) float64 { return float64(st.Bytes) }},
		{"cairn_replication_last_objects", "Objects the target's last replication run sent.", func(st *ReplicaTargetStatus) float64 { return float64(st.Objects) }},
		{"cairn_replication_sent_bytes_total", "Stored bytes sent to the target since the appliance started.", func(st *ReplicaTargetStatus) float64 { return float64(st.BytesTotal) }},
		{"cairn_replication_sent_objects_total", "Objects sent to the target since the appliance started.", func(st *ReplicaTargetStatus) float64 { return float64(st.ObjectsTotal) }},
		{"cairn_replica_snapshots", "Snapshots on the target after its last replication run.", func(st *ReplicaTargetStatus) float64 { return float64(len(st.Snapshots)) }},
		{"cairn_replication_lag_threshold_seconds", "How long a host's newest snapshot may wait for the target before the audit flags the host.",
			func(st *ReplicaTargetStatus) float64 { return st.lagAlert().Seconds() }},
	} {
		typ := "gauge"
		if strings.HasSuffix(m.name, "_total") {
			typ = "counter"
		}
		p.head(m.name, typ, m.help)
		for i := range rows {
			p.sample(m.name, []string{"target", rows[i].Name}, m.val(&rows[i]))
		}
	}
	audit, err := s.Audit(ctx, false)
	if err != nil {
		return err
	}
	p.head("cairn_replication_lag_seconds", "gauge", "How long the host's oldest complete snapshot not yet on the target has waited (0: up to date).")
	for _, h := range audit.Hosts {
		for _, ht := range h.Targets[1:] {
			p.sample("cairn_replication_lag_seconds", []string{"target", ht.Target, "host", h.Host}, ht.LagSeconds)
		}
	}
	p.head("cairn_replication_lagging", "gauge", "1 if the host lags on the target past the target's threshold.")
	for _, h := range audit.Hosts {
		for _, ht := range h.Targets[1:] {
			v := 0.0
			if ht.Lagging {
				v = 1
			}
			p.sample("cairn_replication_lagging", []string{"target", ht.Target, "host", h.Host}, v)
		}
	}
	return nil
}
