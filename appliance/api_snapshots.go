package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/pool"

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

// TreeEntry is one entry of a directory listing in a snapshot.
type TreeEntry struct {
	Name    string    `json:"name"`
	Type    string    `json:"type"`
	Mode    string    `json:"mode"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
	User    string    `json:"user,omitempty"`
	Group   string    `json:"group,omitempty"`
	UID     uint32    `json:"uid"`
	GID     uint32    `json:"gid"`
	Target  string    `json:"target,omitempty"`
}

func treeEntry(e *pool.Entry) TreeEntry {
	return TreeEntry{Name: e.Name, Type: e.Type.String(), Mode: e.FileMode().String(), Size: e.Size,
		ModTime: time.Unix(0, e.ModTime).UTC(), User: e.User, Group: e.Group, UID: e.UID, GID: e.GID, Target: e.Target}
}

// TreeBody answers a browse request: the entry at the path and, for a
// directory, its entries.
type TreeBody struct {
	Snapshot string      `json:"snapshot"`
	Path     string      `json:"path"`
	Entry    TreeEntry   `json:"entry"`
	Entries  []TreeEntry `json:"entries,omitempty"`
}

func (s *Server) snapshotEntry(r *http.Request, p *principal) (*catalog.Snapshot, string, *pool.Entry, error) {
	snap, err := s.visibleSnapshot(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return nil, "", nil, err
	}
	sp, err := cleanSnapPath(r.PathValue("path"))
	if err != nil {
		return nil, "", nil, err
	}
	root, err := pool.ParseDigest(snap.Root)
	if err != nil {
		return nil, "", nil, err
	}
	e, err := s.pool.Lookup(r.Context(), root, sp)
	if err != nil {
		if errors.Is(err, pool.ErrNotFound) {
			return nil, "", nil, notFound("%s: no such path in snapshot %s", sp, snap.ID)
		}
		return nil, "", nil, err
	}
	return snap, sp, &e, nil
}

func (s *Server) handleSnapshotTree(r *http.Request, p *principal) (any, error) {
	snap, sp, e, err := s.snapshotEntry(r, p)
	if err != nil {
		return nil, err
	}
	b := TreeBody{Snapshot: snap.ID, Path: sp, Entry: treeEntry(e)}
	if e.Type == pool.TypeDir {
		es, err := s.pool.ReadTree(r.Context(), e.Subtree)
		if err != nil {
			return nil, err
		}
		b.Entries = make([]TreeEntry, 0, len(es))
		for i := range es {
			b.Entries = append(b.Entries, treeEntry(&es[i]))
		}
	}
	return b, nil
}

func (s *Server) handleSnapshotFile(w http.ResponseWriter, r *http.Request, p *principal) {
	_, sp, e, err := s.snapshotEntry(r, p)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	if e.Type != pool.TypeFile {
		s.writeErr(w, r, badRequest("%s is a %s, not a file", sp, e.Type))
		return
	}
	cr, err := s.pool.OpenContent(r.Context(), e)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(sp)}))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", time.Unix(0, e.ModTime), cr)
}

// RestoreInput asks for a restore to a directory on the appliance.
type RestoreInput struct {
	Host     string `json:"host,omitempty"`
	Snapshot string `json:"snapshot"`         // ID, or "latest" (then host and source are required)
	Source   string `json:"source,omitempty"` // with "latest"
	Path     string `json:"path,omitempty"`   // inside the snapshot; "" = all
	To       string `json:"to"`               // absolute, missing or empty directory
}

func (s *Server) handleRestore(r *http.Request, p *principal) (any, error) {
	var in RestoreInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	snap, err := s.resolveSnapshot(r.Context(), p, in.Host, in.Snapshot, in.Source)
	if err != nil {
		return nil, err
	}
	sp, err := cleanSnapPath(in.Path)
	if err != nil {
		return nil, err
	}
	if err := checkRestoreTarget(in.To); err != nil {
		return nil, err
	}
	// Below admin, restores land only under DATA/restores: writing new
	// directories anywhere as the appliance's user would be an escalation.
	if p.rank() < roleAdmin {
		base := filepath.Join(s.dataDir, "restores") + string(filepath.Separator)
		if !strings.HasPrefix(in.To, base) {
			return nil, forbidden("restore target %s: only admins may restore outside %s", in.To, base)
		}
		// A symlink restored earlier must not lead a later restore out.
		if err := noSymlinks(strings.TrimSuffix(base, string(filepath.Separator)), in.To); err != nil {
			return nil, forbidden("restore target %s: %v", in.To, err)
		}
	}
	root, err := pool.ParseDigest(snap.Root)
	if err != nil {
		return nil, err
	}
	if _, err := s.pool.Lookup(r.Context(), root, sp); err != nil {
		if errors.Is(err, pool.ErrNotFound) {
			return nil, notFound("%s: no such path in snapshot %s", sp, snap.ID)
		}
		return nil, err
	}
	params, _ := json.Marshal(RestoreParams{Snapshot: snap.ID, Host: snap.Host, Source: snap.Source, Path: sp, To: in.To})
	j := &catalog.Job{Kind: "restore", Host: snap.Host, Manual: true, Params: params}
	if err := s.jobs.enqueue(r.Context(), j); err != nil {
		return nil, err
	}
	s.log.Info("restore queued", "job", j.ID, "snapshot", snap.ID, "path", sp, "to", in.To, "by", p.Name)
	return created{s.jobBody(j)}, nil
}

// noSymlinks fails when any existing path element of to below base is a
// symlink (to must be inside base).
func noSymlinks(base, to string) error {
	rel, err := filepath.Rel(base, to)
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("not below %s", base)
	}
	cur := base
	for el := range strings.SplitSeq(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, el)
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symlink", cur)
		}
	}
	return nil
}
