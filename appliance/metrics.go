package appliance

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/pool"
)

// poolUsage is a cached count of the pool's objects and stored bytes:
// listing a big pool is too slow for every scrape.
type poolUsage struct {
	mu      sync.Mutex
	at      time.Time
	objects int64
	bytes   int64
	err     error
}

const poolUsageTTL = 5 * time.Minute

func (s *Server) poolUsage(ctx context.Context, fresh bool) (objects, bytes int64, err error) {
	u := &s.usage
	u.mu.Lock()
	defer u.mu.Unlock()
	if !fresh && !u.at.IsZero() && s.now().Sub(u.at) < poolUsageTTL {
		return u.objects, u.bytes, u.err
	}
	var n, b int64
	err = s.pool.ListObjects(ctx, func(_ pool.Digest, oi pool.ObjectInfo) error {
		n++
		b += oi.Size
		return nil
	})
	u.at, u.objects, u.bytes, u.err = s.now(), n, b, err
	return n, b, err
}

// invalidateUsage makes the next scrape recount (after a backup or GC).
func (s *Server) invalidateUsage() {
	s.usage.mu.Lock()
	s.usage.at = time.Time{}
	s.usage.mu.Unlock()
}

// checkResult is the outcome of the last pool check.
type checkResult struct {
	mu  sync.Mutex
	at  time.Time
	ok  bool
	msg string
}

func (s *Server) recordCheck(ok bool, msg string) {
	s.lastCheck.mu.Lock()
	s.lastCheck.at, s.lastCheck.ok, s.lastCheck.msg = s.now(), ok, msg
	s.lastCheck.mu.Unlock()
}

// promWriter writes the Prometheus text exposition format (version 0.0.4).
type promWriter struct {
	w    io.Writer
	seen map[string]bool
}

func (p *promWriter) head(name, typ, help string) {
	if p.seen[name] {
		return
	}
	p.seen[name] = true
	fmt.Fprintf(p.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (p *promWriter) sample(name string, labels []string, v float64) {
	fmt.Fprint(p.w, name)
	if len(labels) > 0 {
		fmt.Fprint(p.w, "{")
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				fmt.Fprint(p.w, ",")
			}
			fmt.Fprintf(p.w, "%s=\"%s\"", labels[i], escapeLabel(labels[i+1]))
		}
		fmt.Fprint(p.w, "}")
	}
	fmt.Fprintf(p.w, " %s\n", formatFloat(v))
}

func formatFloat(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d", int64(v))
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// handleMetrics serves /metrics for Prometheus.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request, _ *principal) {
	var buf bytes.Buffer
	if err := s.writeMetrics(r.Context(), &buf); err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Write(buf.Bytes())
}

// writeMetrics writes every metric in the text exposition format.
func (s *Server) writeMetrics(ctx context.Context, w io.Writer) error {
	statuses, err := s.cat.BackupStatuses(ctx)
	if err != nil {
		return err
	}
	queued, err := s.cat.Jobs(ctx, catalog.JobFilter{States: []string{catalog.JobQueued}})
	if err != nil {
		return err
	}
	p := &promWriter{w: w, seen: map[string]bool{}}

	sort.Slice(statuses, func(i, j int) bool {
		if statuses[i].Host != statuses[j].Host {
			return statuses[i].Host < statuses[j].Host
		}
		return statuses[i].Source < statuses[j].Source
	})
	type metric struct {
		name, typ, help string
		val             func(st *catalog.BackupStatus) float64
	}
	ms := []metric{
		{"cairn_backup_last_success", "gauge", "1 if the last backup attempt of the source made a complete snapshot, 0.5 if partial, 0 if it failed.",
			func(st *catalog.BackupStatus) float64 {
				switch st.Status {
				case catalog.SnapshotComplete:
					return 1
				case catalog.SnapshotPartial:
					return 0.5
				}
				return 0
			}},
		{"cairn_backup_last_attempt_timestamp_seconds", "gauge", "When the last backup attempt of the source ended.",
			func(st *catalog.BackupStatus) float64 { return unixSeconds(st.Attempt) }},
		{"cairn_backup_last_success_timestamp_seconds", "gauge", "When the last successful (complete or partial) backup of the source ended; 0 if never.",
			func(st *catalog.BackupStatus) float64 { return unixSeconds(st.LastSuccess) }},
		{"cairn_backup_last_duration_seconds", "gauge", "Duration of the last backup attempt of the source.",
			func(st *catalog.BackupStatus) float64 { return st.Duration.Seconds() }},
		{"cairn_backup_last_files", "gauge", "Entries in the last successful snapshot of the source.",
			func(st *catalog.BackupStatus) float64 { return float64(st.Files) }},
		{"cairn_backup_last_bytes", "gauge", "File bytes in the last successful snapshot of the source.",
			func(st *catalog.BackupStatus) float64 { return float64(st.Bytes) }},
		{"cairn_backup_last_new_bytes", "gauge", "Bytes the last successful snapshot of the source added to the pool.",
			func(st *catalog.BackupStatus) float64 { return float64(st.BytesNew) }},
	}
	for _, m := range ms {
		p.head(m.name, m.typ, m.help)
		for i := range statuses {
			p.sample(m.name, []string{"host", statuses[i].Host, "source", statuses[i].Source}, m.val(&statuses[i]))
		}
	}
	p.head("cairn_jobs_queued", "gauge", "Jobs waiting in the queue.")
	p.sample("cairn_jobs_queued", nil, float64(len(queued)))
	p.head("cairn_jobs_running", "gauge", "Jobs running now.")
	p.sample("cairn_jobs_running", nil, float64(s.jobs.runningCount()))

	up := 1.0
	s.health.mu.Lock()
	if s.health.err != nil {
		up = 0
	}
	s.health.mu.Unlock()
	p.head("cairn_storage_up", "gauge", "1 if the last storage check (pool identity re-read) succeeded.")
	p.sample("cairn_storage_up", nil, up)

	if objs, bytes, err := s.poolUsage(ctx, false); err == nil {
		p.head("cairn_pool_objects", "gauge", "Objects stored in the pool.")
		p.sample("cairn_pool_objects", []string{"pool", s.pool.ID()}, float64(objs))
		p.head("cairn_pool_bytes", "gauge", "Bytes stored in the pool (after dedup and compression).")
		p.sample("cairn_pool_bytes", []string{"pool", s.pool.ID()}, float64(bytes))
	}
	s.poolSpaceMetrics(p)
	s.imagesMetrics(ctx, p) // images.go
	s.lastCheck.mu.Lock()
	at, ok := s.lastCheck.at, s.lastCheck.ok
	s.lastCheck.mu.Unlock()
	if !at.IsZero() {
		v := 0.0
		if ok {
			v = 1
		}
		p.head("cairn_pool_check_success", "gauge", "1 if the last pool check found no problem.")
		p.sample("cairn_pool_check_success", []string{"pool", s.pool.ID()}, v)
		p.head("cairn_pool_check_timestamp_seconds", "gauge", "When the last pool check ended.")
		p.sample("cairn_pool_check_timestamp_seconds", []string{"pool", s.pool.ID()}, unixSeconds(at))
	}
	maint := 0.0
	if s.maintenanceNow().On {
		maint = 1
	}
	p.head("cairn_maintenance", "gauge", "1 while maintenance mode is on (scheduled backups paused).")
	p.sample("cairn_maintenance", nil, maint)
	if err := s.writeVerifyMetrics(ctx, p); err != nil { // verify_metrics.go
		return err
	}
	p.head("cairn_build_info", "gauge", "Version of the running cairn.")
	p.sample("cairn_build_info", []string{"version", s.cfg.Version}, 1)
	return nil
}

// writeTextfile writes the metrics for node-exporter's textfile collector:
// to a temporary file next to path, then renamed, so the collector never
// reads half a file.
func (s *Server) writeTextfile(ctx context.Context, path string) error {
	var buf bytes.Buffer
	if err := s.writeMetrics(ctx, &buf); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("metrics textfile: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("metrics textfile: %w", err)
	}
	return nil
}

// textfileLoop rewrites cfg.MetricsTextfile every minute.
func (s *Server) textfileLoop(ctx context.Context) {
	if s.cfg.MetricsTextfile == "" {
		return
	}
	for {
		if err := s.writeTextfile(ctx, s.cfg.MetricsTextfile); err != nil && ctx.Err() == nil {
			s.log.Warn("metrics textfile", "err", err)
		}
		t := s.clock.NewTimer(time.Minute)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}
