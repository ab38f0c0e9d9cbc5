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
	// Every family's HELP and TYPE are written even without samples, so
	// dashboards and alert rules always find the names they use.
	poolID := s.pool.ID()
	sum, err := s.lastCheckSummary(ctx)
	if err != nil {
		return err
	}
	pl := []string{"pool", poolID}
	for _, m := range []struct {
		name, help string
		val        func(*CheckSummary) float64
	}{
		{"cairn_pool_check_corrupt_objects", "Corrupt objects the last pool check found (quarantined).", func(c *CheckSummary) float64 { return float64(len(c.Corrupt)) }},
		{"cairn_pool_check_missing_objects", "Referenced objects the last pool check found missing.", func(c *CheckSummary) float64 { return float64(len(c.Missing)) }},
		{"cairn_pool_check_affected_snapshots", "Snapshots using a missing or corrupt object, per the last pool check.", func(c *CheckSummary) float64 { return float64(len(c.AffectedSnapshots)) }},
		{"cairn_pool_check_coverage_ratio", "Fraction of the pool re-read by the rotating data checks since the rotation last started over (1: all).", func(c *CheckSummary) float64 { return c.Coverage }},
	} {
		p.head(m.name, "gauge", m.help)
		if sum != nil {
			p.sample(m.name, pl, m.val(sum))
		}
	}
	res, err := s.restoreResults(ctx)
	if err != nil {
		return err
	}
	for _, m := range []struct {
		name, help string
		val        func(*RestoreTestResult) float64
	}{
		{"cairn_restore_test_status", "1 if the host's last restore test read every sampled file (and dump) back intact, 0 if not.", func(r *RestoreTestResult) float64 {
			if r.OK {
				return 1
			}
			return 0
		}},
		{"cairn_restore_test_last_timestamp_seconds", "When the host's last restore test ran.", func(r *RestoreTestResult) float64 { return unixSeconds(r.Time) }},
		{"cairn_restore_test_files", "Files the host's last restore test read and compared.", func(r *RestoreTestResult) float64 { return float64(r.Files) }},
	} {
		p.head(m.name, "gauge", m.help)
		for i := range res {
			p.sample(m.name, []string{"host", res[i].Host}, m.val(&res[i]))
		}
	}
	ts, err := s.loadTargets(ctx)
	if err != nil {
		return err
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
