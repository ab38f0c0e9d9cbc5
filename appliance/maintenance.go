package appliance

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Maintenance mode: the scheduler pauses, the queue starts nothing new,
// new backups and pool jobs are refused with the reason, running jobs
// finish, and restores keep working. It is kept in the catalog, so it
// survives a restart.

const settingMaintenance = "maintenance"

// MaintenanceBody is GET/PUT /api/v1/maintenance.
type MaintenanceBody struct {
	On     bool      `json:"on"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	By     string    `json:"by,omitempty"`
}

type maintenanceState struct {
	mu sync.Mutex
	MaintenanceBody
}

func (s *Server) maintenanceNow() MaintenanceBody {
	s.maint.mu.Lock()
	defer s.maint.mu.Unlock()
	return s.maint.MaintenanceBody
}

// loadMaintenance restores the mode from the catalog at start.
func (s *Server) loadMaintenance(ctx context.Context) error {
	v, ok, err := s.cat.Setting(ctx, settingMaintenance)
	if err != nil || !ok || v == "" {
		return err
	}
	var m MaintenanceBody
	if json.Unmarshal([]byte(v), &m) == nil && m.On {
		s.maint.mu.Lock()
		s.maint.MaintenanceBody = m
		s.maint.mu.Unlock()
		s.log.Warn("maintenance mode is on: scheduled backups paused", "reason", m.Reason)
	}
	return nil
}

// applyPause pauses or resumes the scheduler and the queue from the
// maintenance mode and the storage check.
func (s *Server) applyPause() {
	m := s.maintenanceNow()
	s.health.mu.Lock()
	storageBad := s.health.err != nil
	s.health.mu.Unlock()
	if m.On {
		s.jobs.sched.Pause()
	} else {
		s.jobs.sched.Resume()
	}
	if m.On || storageBad {
		s.jobs.q.Pause()
	} else {
		s.jobs.q.Resume()
	}
}

// refuseInMaintenance is the error for new jobs while the mode is on.
func (s *Server) refuseInMaintenance() error {
	m := s.maintenanceNow()
	if !m.On {
		return nil
	}
	msg := "maintenance mode is on"
	if m.Reason != "" {
		msg += " (" + m.Reason + ")"
	}
	return &httpError{http.StatusServiceUnavailable, msg + ": new backups and pool jobs are refused until it is turned off; restores still work"}
}

func (s *Server) handleMaintenanceGet(r *http.Request, p *principal) (any, error) {
	return s.maintenanceNow(), nil
}

func (s *Server) handleMaintenancePut(r *http.Request, p *principal) (any, error) {
	var in MaintenanceBody
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	m := MaintenanceBody{On: in.On}
	if in.On {
		m.Reason, m.Since, m.By = in.Reason, s.now(), p.Name
	}
	b, _ := json.Marshal(m)
	if err := s.cat.SetSetting(r.Context(), settingMaintenance, string(b)); err != nil {
		return nil, err
	}
	s.maint.mu.Lock()
	s.maint.MaintenanceBody = m
	s.maint.mu.Unlock()
	s.applyPause()
	s.log.Warn("maintenance mode changed", "on", m.On, "reason", m.Reason, "by", p.Name)
	s.events.publish(Event{Type: "maintenance", Data: m})
	return m, nil
}
