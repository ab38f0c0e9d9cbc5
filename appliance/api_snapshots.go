package appliance

import (
	"context"
	"net/http"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
)

// SnapshotBody is a snapshot as the API shows it.
type SnapshotBody struct {
	ID       string    `json:"id"`
	Host     string    `json:"host"`
	Source   string    `json:"source"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Root     string    `json:"root"`
	Status   string    `json:"status"`
	Files    int64     `json:"files"`
	Bytes    int64     `json:"bytes"`
	BytesNew int64     `json:"bytes_new"`
	Errors   int64     `json:"errors"`
	JobID    int64     `json:"job_id,omitempty"`
}

func snapshotBody(s *catalog.Snapshot) SnapshotBody {
	return SnapshotBody{ID: s.ID, Host: s.Host, Source: s.Source, Started: s.Started, Finished: s.Finished,
		Root: s.Root, Status: s.Status, Files: s.Files, Bytes: s.Bytes, BytesNew: s.BytesNew, Errors: s.Errors, JobID: s.JobID}
}

func (s *Server) handleSnapshotList(r *http.Request, p *principal) (any, error) {
	host := r.URL.Query().Get("host")
	if host != "" {
		if ok, err := s.canSeeHost(r.Context(), p, host); err != nil {
			return nil, err
		} else if !ok {
			return []SnapshotBody{}, nil
		}
	}
	ss, err := s.cat.Snapshots(r.Context(), host)
	if err != nil {
		return nil, err
	}
	out := []SnapshotBody{}
	seen := map[string]bool{}
	for i := range ss {
		ok, known := seen[ss[i].Host]
		if !known {
			if ok, err = s.canSeeHost(r.Context(), p, ss[i].Host); err != nil {
				return nil, err
			}
			seen[ss[i].Host] = ok
		}
		if ok {
			out = append(out, snapshotBody(&ss[i]))
		}
	}
	return out, nil
}

// visibleSnapshot loads a snapshot the principal may see (else 404).
func (s *Server) visibleSnapshot(ctx context.Context, p *principal, id string) (*catalog.Snapshot, error) {
	snap, err := s.cat.Snapshot(ctx, id)
	if err != nil {
		return nil, err
	}
	if ok, err := s.canSeeHost(ctx, p, snap.Host); err != nil {
		return nil, err
	} else if !ok {
		return nil, notFound("snapshot %s: not found", id)
	}
	return snap, nil
}

func (s *Server) handleSnapshotGet(r *http.Request, p *principal) (any, error) {
	snap, err := s.visibleSnapshot(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	return snapshotBody(snap), nil
}
