package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/pool"
)

func init() {
	executors["check"] = runCheck
	executors["gc"] = runGC
}

// CheckParams are the parameters of a pool check job.
type CheckParams struct {
	ReadData bool    `json:"read_data,omitempty"`
	Percent  float64 `json:"percent,omitempty"` // with ReadData; 0 = all
	// Rotate re-reads the next Percent-wide slice of the digest space
	// instead of a random sample, so successive checks cover the whole
	// pool (the scheduled check; verify.go).
	Rotate bool `json:"rotate,omitempty"`
}

// CheckResult is what a check job reports.
type CheckResult struct {
	OK           bool               `json:"ok"`
	Summary      string             `json:"summary"`
	Snapshots    int                `json:"snapshots"`
	Objects      int                `json:"objects"`
	Referenced   int                `json:"referenced"`
	ReadObjects  int                `json:"read_objects"`
	ReadBytes    int64              `json:"read_bytes"`
	Flaky        int                `json:"flaky"` // read back wrong once, then verified: not corrupt (pool.CheckReport.Flaky)
	BadSnapshots []string           `json:"bad_snapshots,omitempty"`
	Missing      []string           `json:"missing,omitempty"`
	Corrupt      []string           `json:"corrupt,omitempty"`
	Affected     []string           `json:"affected,omitempty"` // "host/source@snapshot:path"
	Images       *ImagesCheckResult `json:"images,omitempty"`   // the image pool (images.go)
}

func runCheck(ctx context.Context, jc *jobCtx) error {
	var cp CheckParams
	if err := json.Unmarshal(jc.job.Params, &cp); err != nil {
		return fmt.Errorf("job parameters: %w", err)
	}
	jc.update(func(p *Progress) { p.Phase = "checking" })
	rep, err := jc.s.runPoolCheck(ctx, cp) // verify.go: rotation, stored summary
	if err != nil {
		if ctx.Err() == nil {
			jc.s.recordCheck(false, err.Error())
		}
		return err
	}
	res := CheckResult{OK: rep.OK(), Summary: rep.String(), Snapshots: rep.Snapshots, Objects: rep.Objects,
		Referenced: rep.Referenced, ReadObjects: rep.ReadObjects, ReadBytes: rep.ReadBytes, Flaky: rep.Flaky, BadSnapshots: rep.BadSnapshots}
	for _, d := range rep.Missing {
		res.Missing = append(res.Missing, d.String())
	}
	for _, d := range rep.Corrupt {
		res.Corrupt = append(res.Corrupt, d.String())
	}
	for _, u := range rep.Affected {
		res.Affected = append(res.Affected, fmt.Sprintf("%s/%s@%s:%s", u.Host, u.Source, u.Snapshot, u.Path))
	}
	if res.Images, err = jc.s.checkImages(ctx, jc, pool.CheckOptions{ReadData: cp.ReadData, Percent: cp.Percent}); err != nil {
		return fmt.Errorf("image pool check: %w", err)
	}
	if res.Images != nil && !res.Images.OK {
		res.OK, res.Summary = false, res.Summary+"; images: "+res.Images.Summary
	}
	jc.update(func(p *Progress) { p.Phase, p.Result = "done", res })
	jc.s.recordCheck(res.OK, res.Summary)
	jc.s.invalidateUsage()
	jc.logf(map[bool]string{true: "info", false: "error"}[res.OK], "pool check: %s", res.Summary)
	if !res.OK {
		return fmt.Errorf("pool check found problems: %s", res.Summary)
	}
	return nil
}

// GCParams are the parameters of a GC job.
type GCParams struct {
	DryRun bool `json:"dry_run,omitempty"`
}

// GCResult is what a GC job reports.
type GCResult struct {
	DryRun     bool            `json:"dry_run"`
	Snapshots  int             `json:"snapshots"`
	Marked     int             `json:"marked"`
	Missing    int             `json:"missing"`
	Swept      int             `json:"swept"`
	SweptBytes int64           `json:"swept_bytes"`
	Kept       int             `json:"kept"`
	KeptBytes  int64           `json:"kept_bytes"`
	Images     *ImagesGCResult `json:"images,omitempty"` // the image pool (images.go)
}

func runGC(ctx context.Context, jc *jobCtx) error {
	var gp GCParams
	if err := json.Unmarshal(jc.job.Params, &gp); err != nil {
		return fmt.Errorf("job parameters: %w", err)
	}
	jc.update(func(p *Progress) { p.Phase = "collecting" })
	rep, err := jc.s.pool.GC(ctx, pool.GCOptions{DryRun: gp.DryRun, Now: jc.s.now})
	if err != nil {
		return err
	}
	res := GCResult{DryRun: rep.DryRun, Snapshots: rep.Snapshots, Marked: rep.Marked, Missing: rep.Missing,
		Swept: rep.Swept, SweptBytes: rep.SweptBytes, Kept: rep.Kept, KeptBytes: rep.KeptBytes}
	if res.Images, err = jc.s.gcImages(ctx, jc, gp.DryRun); err != nil {
		return err
	}
	jc.update(func(p *Progress) { p.Phase, p.Result = "done", res })
	jc.s.invalidateUsage()
	verb := "removed"
	if rep.DryRun {
		verb = "would remove"
	}
	jc.logf("info", "gc: %s %d objects (%d bytes); kept %d young unreferenced objects", verb, rep.Swept, rep.SweptBytes, rep.Kept)
	return nil
}

// PoolBody is GET /api/v1/pool.
type PoolBody struct {
	ID        string    `json:"id"`
	Location  string    `json:"location"`
	Encrypted bool      `json:"encrypted"`
	Created   time.Time `json:"created"`
	Objects   int64     `json:"objects"`
	Bytes     int64     `json:"bytes"`
	Snapshots int       `json:"snapshots"`
	// Sum of the snapshots' file bytes: what the pool would take without
	// dedup and compression.
	LogicalBytes int64           `json:"logical_bytes"`
	LastCheck    *time.Time      `json:"last_check,omitempty"`
	LastCheckOK  *bool           `json:"last_check_ok,omitempty"`
	LastCheckMsg string          `json:"last_check_summary,omitempty"`
	Images       *ImagesPoolBody `json:"images,omitempty"` // the image pool (images.go)
}

func (s *Server) handlePoolStats(r *http.Request, p *principal) (any, error) {
	objs, bytes, err := s.poolUsage(r.Context(), r.URL.Query().Get("fresh") != "")
	if err != nil {
		return nil, err
	}
	snaps, err := s.cat.Snapshots(r.Context(), "")
	if err != nil {
		return nil, err
	}
	b := PoolBody{ID: s.pool.ID(), Location: s.pool.Location(), Encrypted: s.pool.Encrypted(), Created: s.pool.Created(),
		Objects: objs, Bytes: bytes, Snapshots: len(snaps)}
	if b.Images, err = s.imagesUsage(r.Context(), r.URL.Query().Get("fresh") != ""); err != nil {
		return nil, err
	}
	for _, sn := range snaps {
		b.LogicalBytes += sn.Bytes
	}
	s.lastCheck.mu.Lock()
	if !s.lastCheck.at.IsZero() {
		at, ok := s.lastCheck.at, s.lastCheck.ok
		b.LastCheck, b.LastCheckOK, b.LastCheckMsg = &at, &ok, s.lastCheck.msg
	}
	s.lastCheck.mu.Unlock()
	return b, nil
}

func (s *Server) poolJob(r *http.Request, p *principal, kind string, params any) (any, error) {
	if err := s.refuseInMaintenance(); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(params)
	j := &catalog.Job{Kind: kind, Manual: true, Params: b}
	if err := s.jobs.enqueue(r.Context(), j); err != nil {
		return nil, err
	}
	s.log.Info("pool job queued", "job", j.ID, "kind", kind, "by", p.Name)
	return created{s.jobBody(j)}, nil
}

func (s *Server) handlePoolCheck(r *http.Request, p *principal) (any, error) {
	var in CheckParams
	if r.ContentLength != 0 {
		if err := decode(r, &in); err != nil {
			return nil, err
		}
	}
	if in.Percent < 0 || in.Percent > 100 {
		return nil, badRequest("percent %v: want 0–100", in.Percent)
	}
	return s.poolJob(r, p, "check", in)
}

func (s *Server) handlePoolGC(r *http.Request, p *principal) (any, error) {
	var in GCParams
	if r.ContentLength != 0 {
		if err := decode(r, &in); err != nil {
			return nil, err
		}
	}
	return s.poolJob(r, p, "gc", in)
}

// RebuildBody answers a catalog rebuild.
type RebuildBody struct {
	Snapshots int      `json:"snapshots"`
	Bad       []string `json:"bad,omitempty"` // "id: error" for manifests that could not be read
}

// rebuildSnapshots replaces the snapshot index with what the pool's
// manifests say. Unreadable manifests are reported and left out.
func (s *Server) rebuildSnapshots(ctx context.Context) (*RebuildBody, error) {
	ids, err := s.pool.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	out := &RebuildBody{}
	var rows []catalog.Snapshot
	for _, id := range ids {
		m, err := s.pool.Snapshot(ctx, id)
		if errors.Is(err, pool.ErrNotFound) {
			continue
		}
		if err != nil {
			out.Bad = append(out.Bad, err.Error())
			continue
		}
		jobID, _ := strconv.ParseInt(m.Labels["job"], 10, 64)
		rows = append(rows, *imageRowOf(m, manifestRow(m, jobID))) // images.go
	}
	if err := s.cat.ReplaceSnapshots(ctx, rows); err != nil {
		return nil, err
	}
	out.Snapshots = len(rows)
	if _, err := s.adoptImagePool(ctx); err != nil { // replicate_images.go
		return nil, err
	}
	return out, nil
}

func (s *Server) handleCatalogRebuild(r *http.Request, p *principal) (any, error) {
	out, err := s.rebuildSnapshots(r.Context())
	if err != nil {
		return nil, err
	}
	s.log.Info("catalog snapshot index rebuilt from the pool", "snapshots", out.Snapshots, "bad", len(out.Bad), "by", p.Name)
	return out, nil
}
