package appliance

import (
	"fmt"
	"net/http"
	"time"
)

// handleEvents streams job state, progress and log events as Server-Sent
// Events. User-role principals get only the events of hosts they see.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, p *principal) {
	fl, ok := w.(http.Flusher)
	if !ok {
		s.writeErr(w, r, fmt.Errorf("streaming unsupported"))
		return
	}
	ctx := r.Context()
	visible := map[string]bool{}
	filter := func(e Event) bool {
		if p.rank() >= roleOperator {
			return true
		}
		return e.Host != "" && visible[e.Host]
	}
	if p.rank() < roleOperator {
		// Resolve visibility once, up front: the filter runs under the
		// broker's lock and must not touch the database.
		hs, err := s.cat.Hosts(ctx)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		for _, h := range hs {
			if ok, err := s.canSeeHost(ctx, p, h.Name); err == nil && ok {
				visible[h.Name] = true
			}
		}
	}
	ch, cancel := s.events.subscribe(filter)
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": cairn events\n\n")
	fl.Flush()
	keepalive := time.NewTicker(25 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
			fl.Flush()
		case data, ok := <-ch:
			if !ok {
				return
			}
			fmt.Fprintf(w, "data: %s\n\n", data)
			fl.Flush()
		}
	}
}
