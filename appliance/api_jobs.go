package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
)

// JobBody is a job as the API shows it.
type JobBody struct {
	ID       int64           `json:"id"`
	Kind     string          `json:"kind"`
	Host     string          `json:"host,omitempty"`
	State    string          `json:"state"`
	Manual   bool            `json:"manual"`
	Params   json.RawMessage `json:"params"`
	Progress json.RawMessage `json:"progress"`
	Error    string          `json:"error,omitempty"`
	RetryOf  int64           `json:"retry_of,omitempty"`
	Instance string          `json:"instance,omitempty"` // the instance that runs or ran it (scale-out)
	Created  time.Time       `json:"created"`
	Started  *time.Time      `json:"started,omitempty"`
	Finished *time.Time      `json:"finished,omitempty"`
	Events   []EventBody     `json:"events,omitempty"`
}

// EventBody is one log line of a job.
type EventBody struct {
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Message string    `json:"message"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (s *Server) jobBody(j *catalog.Job) JobBody {
	b := JobBody{ID: j.ID, Kind: j.Kind, Host: j.Host, State: j.State, Manual: j.Manual, Params: j.Params,
		Progress: j.Progress, Error: j.Error, RetryOf: j.RetryOf, Created: j.Created, Instance: j.Instance,
		Started: optTime(j.Started), Finished: optTime(j.Finished)}
	if j.State == catalog.JobRunning {
		if p, ok := s.jobs.live(j.ID); ok {
			b.Progress, _ = json.Marshal(p)
		}
	}
	return b
}

// BackupParams are the parameters of a backup job.
type BackupParams struct {
	Sources []string `json:"sources,omitempty"` // empty = every source
}

// BackupInput is the optional body of POST /hosts/{host}/backup.
type BackupInput struct {
	Sources []string `json:"sources,omitempty"`
}

func (s *Server) handleBackupRun(r *http.Request, p *principal) (any, error) {
	h, err := s.visibleHost(r.Context(), p, r.PathValue("host"))
	if err != nil {
		return nil, err
	}
	if err := s.refuseInMaintenance(); err != nil {
		return nil, err
	}
	var in BackupInput
	if r.ContentLength != 0 {
		if err := decode(r, &in); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
	}
	srcs, err := s.cat.Sources(r.Context(), h.ID)
	if err != nil {
		return nil, err
	}
	if len(srcs) == 0 {
		return nil, badRequest("host %s has no sources to back up", h.Name)
	}
	have := map[string]bool{}
	for _, src := range srcs {
		have[src.Name] = true
	}
	for _, n := range in.Sources {
		if !have[n] {
			return nil, badRequest("host %s has no source %q", h.Name, n)
		}
	}
	params, _ := json.Marshal(BackupParams(in))
	j := &catalog.Job{Kind: "backup", Host: h.Name, Manual: true, Params: params}
	if err := s.jobs.enqueue(r.Context(), j); err != nil {
		return nil, err
	}
	s.log.Info("backup queued", "job", j.ID, "host", h.Name, "by", p.Name)
	return created{s.jobBody(j)}, nil
}

func (s *Server) handleJobList(r *http.Request, p *principal) (any, error) {
	q := r.URL.Query()
	f := catalog.JobFilter{Host: q.Get("host"), Kind: q.Get("kind"), Limit: 100}
	if st := q.Get("state"); st != "" {
		f.States = []string{st}
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return nil, badRequest("limit %q: want a number", l)
		}
		f.Limit = n
	}
	js, err := s.cat.Jobs(r.Context(), f)
	if err != nil {
		return nil, err
	}
	out := []JobBody{}
	for i := range js {
		if ok, err := s.canSeeJob(r.Context(), p, &js[i]); err != nil {
			return nil, err
		} else if ok {
			out = append(out, s.jobBody(&js[i]))
		}
	}
	return out, nil
}

func (s *Server) canSeeJob(ctx context.Context, p *principal, j *catalog.Job) (bool, error) {
	if p.rank() >= roleOperator {
		return true, nil
	}
	if j.Host == "" {
		return false, nil
	}
	return s.canSeeHost(ctx, p, j.Host)
}

func (s *Server) visibleJob(r *http.Request, p *principal) (*catalog.Job, error) {
	id, err := pathInt(r, "id")
	if err != nil {
		return nil, err
	}
	j, err := s.cat.Job(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if ok, err := s.canSeeJob(r.Context(), p, j); err != nil {
		return nil, err
	} else if !ok {
		return nil, notFound("job %d: not found", id)
	}
	return j, nil
}

func (s *Server) handleJobGet(r *http.Request, p *principal) (any, error) {
	j, err := s.visibleJob(r, p)
	if err != nil {
		return nil, err
	}
	b := s.jobBody(j)
	evs, err := s.cat.JobEvents(r.Context(), j.ID)
	if err != nil {
		return nil, err
	}
	b.Events = []EventBody{}
	for _, e := range evs {
		b.Events = append(b.Events, EventBody{Time: e.Time, Level: e.Level, Message: e.Message})
	}
	return b, nil
}

func (s *Server) handleJobCancel(r *http.Request, p *principal) (any, error) {
	j, err := s.visibleJob(r, p)
	if err != nil {
		return nil, err
	}
	if catalog.JobFinal(j.State) {
		return nil, &httpError{http.StatusConflict, "job " + strconv.FormatInt(j.ID, 10) + " already ended (" + j.State + ")"}
	}
	if err := s.jobs.cancel(r.Context(), j.ID); err != nil {
		return nil, err
	}
	s.log.Info("job cancelled", "job", j.ID, "by", p.Name)
	j, err = s.cat.Job(r.Context(), j.ID)
	if err != nil {
		return nil, err
	}
	return s.jobBody(j), nil
}
