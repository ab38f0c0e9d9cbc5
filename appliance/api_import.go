package appliance

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers/archive"
)

// importRoutes: POST /api/v1/hosts/{host}/import?source=S[&max_ratio=R]
// with a tar (plain, gzip, zstd, xz) or zip archive as the request body
// (streamed, not buffered) makes a snapshot of its contents for the
// host (operator role). Hostile archives are refused (400) with the
// reason; see package pullers/archive.
func (s *Server) importRoutes() []route {
	return []route{
		{method: "POST", pattern: "/api/v1/hosts/{host}/import", minRole: roleOperator, json: s.handleImport},
	}
}

// ImportBody is the answer to an import: the snapshot made and what the
// archive held.
type ImportBody struct {
	Snapshot     SnapshotBody `json:"snapshot"`
	Format       string       `json:"format"`
	ArchiveBytes int64        `json:"archive_bytes"`
}

func (s *Server) handleImport(r *http.Request, p *principal) (any, error) {
	ctx := r.Context()
	if err := s.refuseInMaintenance(); err != nil {
		return nil, err
	}
	h, err := s.visibleHost(ctx, p, r.PathValue("host"))
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	source := q.Get("source")
	if source == "" {
		source = "import"
	}
	if err := checkName("source", source); err != nil {
		return nil, err
	}
	o := archive.Options{TempDir: filepath.Join(s.dataDir, "spool")}
	if v := q.Get("max_ratio"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 1 {
			return nil, badRequest("max_ratio %q: want a number ≥ 1", v)
		}
		o.MaxRatio = f
	}
	m, st, err := ImportArchive(ctx, s.pool, h.Name, source, r.Body, o)
	if err != nil {
		if errors.Is(err, archive.ErrRefused) {
			return nil, badRequest("import into %s/%s: %v", h.Name, source, err)
		}
		return nil, fmt.Errorf("import into %s/%s: %w", h.Name, source, err)
	}
	row := manifestRow(m, 0)
	if err := s.cat.PutSnapshot(context.WithoutCancel(ctx), row); err != nil {
		return nil, err
	}
	s.events.publish(Event{Type: "snapshot", Host: m.Host, Data: snapshotBody(row)})
	s.invalidateUsage()
	s.log.Info("archive imported", "host", h.Name, "source", source, "snapshot", m.ID, "format", st.Format, "files", m.Files, "by", p.Name)
	return ImportBody{Snapshot: snapshotBody(row), Format: st.Format, ArchiveBytes: st.ArchiveBytes}, nil
}

// ImportArchive reads an archive from r into a new snapshot of
// host/source in p. A refused or failed import leaves no snapshot.
func ImportArchive(ctx context.Context, p *pool.Pool, host, source string, r interface{ Read([]byte) (int, error) }, o archive.Options) (*pool.Manifest, archive.Stats, error) {
	w, err := p.NewWriter(context.WithoutCancel(ctx), pool.SnapshotMeta{Host: host, Source: source,
		Labels: map[string]string{"method": "import"}})
	if err != nil {
		return nil, archive.Stats{}, err
	}
	st, err := archive.Import(ctx, r, w, o)
	if err != nil {
		w.Abort()
		return nil, st, err
	}
	m, err := w.Finish(ctx)
	return m, st, err
}
