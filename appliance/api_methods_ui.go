package appliance

// Two small endpoints the web UI's forms need: the next runs of a cron
// schedule (the host form's preview) and a user's own password change.

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/appliance/schedule"
	"github.com/cairn-backup/cairn/appliance/web"
	"golang.org/x/crypto/bcrypt"
)

// SchedulePreviewBody answers GET /api/v1/schedule/preview.
type SchedulePreviewBody struct {
	Cron string      `json:"cron"`
	Zone string      `json:"zone"` // the appliance's zone the schedule runs in
	Next []time.Time `json:"next"`
}

// handleSchedulePreview lists the next runs (default 5, at most 50) of
// ?cron= after now, as the scheduler computes them (in the appliance's
// local zone; jitter and blackout windows not applied).
func (s *Server) handleSchedulePreview(r *http.Request, p *principal) (any, error) {
	q := r.URL.Query()
	expr := strings.TrimSpace(q.Get("cron"))
	n := 5
	if v := q.Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 50 {
			return nil, badRequest("n %q: want 1–50", v)
		}
	}
	c, err := schedule.ParseCron(expr, time.Local)
	if err != nil {
		return nil, badRequest("schedule %q: %v", expr, err)
	}
	out := SchedulePreviewBody{Cron: expr, Zone: time.Local.String(), Next: []time.Time{}}
	t := s.now()
	for range n {
		t = c.Next(t)
		if t.IsZero() {
			break
		}
		out.Next = append(out.Next, t)
	}
	return out, nil
}

// PasswordInput changes the caller's own password.
type PasswordInput struct {
	Current string `json:"current"`
	New     string `json:"new"`
}

// handlePasswordChange sets the caller's password after checking the
// current one; the new one must pass the setup's policy.
func (s *Server) handlePasswordChange(r *http.Request, p *principal) (any, error) {
	if p.UserID == 0 {
		return nil, badRequest("password: %s has no password (root on the unix socket, or a replication token)", p.Name)
	}
	var in PasswordInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	u, err := s.cat.UserByID(r.Context(), p.UserID)
	if err != nil {
		return nil, err
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(in.Current)) != nil {
		return nil, forbidden("current: the current password is wrong")
	}
	if err := web.CheckPassword(u.Name, in.New); err != nil {
		return nil, badRequest("new: %v", err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(in.New), bcrypt.DefaultCost)
	if err != nil {
		return nil, err
	}
	u.PasswordHash = string(hash)
	if err := s.cat.UpdateUser(r.Context(), u); err != nil {
		return nil, err
	}
	s.log.Info("password changed", "user", u.Name)
	return nil, nil
}
