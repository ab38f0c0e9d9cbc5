package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/appliance/web"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// A route is one endpoint of the API. Every route is listed in
// openapi.json (a test checks it) and has a minimum role.
type route struct {
	method  string
	pattern string // net/http pattern path, e.g. /api/v1/hosts/{host}
	minRole int
	// Exactly one of json and raw is set. json handlers return a value to
	// encode or an error to map to a status.
	json func(r *http.Request, p *principal) (any, error)
	raw  func(w http.ResponseWriter, r *http.Request, p *principal)
}

// httpError carries a status code with its message.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func forbidden(format string, args ...any) error {
	return &httpError{http.StatusForbidden, fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &httpError{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

// statusOf maps an error to an HTTP status.
func statusOf(err error) int {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he.code
	case errors.Is(err, catalog.ErrNotFound), errors.Is(err, pool.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, catalog.ErrExists):
		return http.StatusConflict
	case errors.Is(err, catalog.ErrJobState):
		return http.StatusConflict
	case errors.Is(err, errShutdown):
		return http.StatusServiceUnavailable
	case errors.Is(err, errUnauthenticated), errors.Is(err, errBadToken), errors.Is(err, errBadSession):
		return http.StatusUnauthorized
	case errors.Is(err, web.ErrCSRF):
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// apiErr is the body of every error response.
type apiErr struct {
	Error string `json:"error"`
}

func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	code := statusOf(err)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cairn"`)
	}
	if code >= 500 {
		s.log.Error("api", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, code, apiErr{Error: err.Error()})
}

// decode reads a JSON body into v, rejecting unknown fields.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: %v", err)
	}
	return nil
}

func pathInt(r *http.Request, name string) (int64, error) {
	v, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || v <= 0 {
		return 0, badRequest("%s %q: want a positive number", name, r.PathValue(name))
	}
	return v, nil
}

// buildRoutes registers every route on a fresh mux behind auth.
func (s *Server) buildRoutes() {
	s.routes = s.allRoutes()
	mux := http.NewServeMux()
	for _, rt := range s.routes {
		mux.HandleFunc(rt.method+" "+rt.pattern, s.wrap(rt))
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		// Unknown API paths still need credentials, so they reveal nothing.
		if _, err := s.authenticate(r); err != nil {
			s.writeErr(w, r, err)
			return
		}
		s.writeErr(w, r, notFound("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	// The restore tree over WebDAV, per user (dav.go).
	mux.HandleFunc(DAVPrefix+"/", s.handleDAV)
	mux.HandleFunc(DAVPrefix, s.handleDAV)
	// Everything else is the web UI (login, setup, pages, static files).
	if s.ui != nil {
		mux.Handle("/", s.ui.Handler())
	}
	s.handler = mux
}

func (s *Server) wrap(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var p *principal
		if rt.minRole > rolePublic {
			var err error
			if p, err = s.authenticate(r); err != nil {
				s.writeErr(w, r, err)
				return
			}
			if p.rank() < rt.minRole {
				s.writeErr(w, r, forbidden("%s %s needs the %s role; %s is %s", r.Method, rt.pattern, rankName(rt.minRole), p.Name, p.Role))
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), principalKey, p))
		}
		if rt.raw != nil {
			rt.raw(w, r, p)
			return
		}
		v, err := rt.json(r, p)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		code := http.StatusOK
		if r.Method == http.MethodPost {
			if c, ok := v.(created); ok {
				code, v = http.StatusCreated, c.v
			}
		}
		if v == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeJSON(w, code, v)
	}
}

// created wraps a POST result that made a new resource (201).
type created struct{ v any }

func rankName(r int) string {
	switch r {
	case roleAdmin:
		return "admin"
	case roleOperator:
		return "operator"
	case roleUser:
		return "user"
	}
	return "public"
}

// allRoutes is the API. Keep openapi.json in step (TestOpenAPICoversRoutes).
func (s *Server) allRoutes() []route {
	return append([]route{
		{method: "GET", pattern: "/healthz", minRole: rolePublic, raw: s.handleHealthz},
		{method: "GET", pattern: "/api/v1/status", minRole: rolePublic, json: s.handleStatus},
		{method: "GET", pattern: "/api/v1/openapi.json", minRole: roleUser, raw: handleOpenAPI},
		{method: "GET", pattern: "/metrics", minRole: roleOperator, raw: s.handleMetrics},
		{method: "GET", pattern: "/api/v1/events", minRole: roleUser, raw: s.handleEvents},
		{method: "GET", pattern: "/api/v1/whoami", minRole: roleUser, json: s.handleWhoami},
		{method: "GET", pattern: "/api/v1/methods", minRole: roleUser, json: handleMethods},
		{method: "GET", pattern: "/api/v1/schedule/preview", minRole: roleUser, json: s.handleSchedulePreview}, // api_methods_ui.go
		{method: "PUT", pattern: "/api/v1/users/me/password", minRole: roleUser, json: s.handlePasswordChange},
		{method: "GET", pattern: "/api/v1/maintenance", minRole: roleUser, json: s.handleMaintenanceGet},
		{method: "PUT", pattern: "/api/v1/maintenance", minRole: roleAdmin, json: s.handleMaintenancePut},
		{method: "GET", pattern: "/api/v1/instances", minRole: roleOperator, json: s.handleInstances},

		{method: "GET", pattern: "/api/v1/hosts", minRole: roleUser, json: s.handleHostList},
		{method: "POST", pattern: "/api/v1/hosts", minRole: roleOperator, json: s.handleHostCreate},
		{method: "GET", pattern: "/api/v1/hosts/{host}", minRole: roleUser, json: s.handleHostGet},
		{method: "PATCH", pattern: "/api/v1/hosts/{host}", minRole: roleOperator, json: s.handleHostPatch},
		{method: "DELETE", pattern: "/api/v1/hosts/{host}", minRole: roleOperator, json: s.handleHostDelete},
		{method: "PUT", pattern: "/api/v1/hosts/{host}/sources/{source}", minRole: roleOperator, json: s.handleSourcePut},
		{method: "DELETE", pattern: "/api/v1/hosts/{host}/sources/{source}", minRole: roleOperator, json: s.handleSourceDelete},
		{method: "POST", pattern: "/api/v1/hosts/{host}/backup", minRole: roleOperator, json: s.handleBackupRun},
		{method: "POST", pattern: "/api/v1/hosts/{host}/test", minRole: roleOperator, json: s.handleHostTest},
		{method: "GET", pattern: "/api/v1/hosts/{host}/onboard", minRole: roleOperator, json: s.handleHostOnboard},
		{method: "GET", pattern: "/api/v1/hosts/{host}/retention", minRole: roleUser, json: s.handleRetentionPreview},
		{method: "GET", pattern: "/api/v1/hosts/{host}/effective", minRole: roleUser, json: s.handleHostEffective},

		{method: "GET", pattern: "/api/v1/jobs", minRole: roleUser, json: s.handleJobList},
		{method: "GET", pattern: "/api/v1/jobs/{id}", minRole: roleUser, json: s.handleJobGet},
		{method: "POST", pattern: "/api/v1/jobs/{id}/cancel", minRole: roleOperator, json: s.handleJobCancel},

		{method: "GET", pattern: "/api/v1/snapshots", minRole: roleUser, json: s.handleSnapshotList},
		{method: "GET", pattern: "/api/v1/snapshots/{id}", minRole: roleUser, json: s.handleSnapshotGet},
		{method: "DELETE", pattern: "/api/v1/snapshots/{id}", minRole: roleOperator, json: s.handleSnapshotDelete},
		{method: "GET", pattern: "/api/v1/snapshots/{id}/tree/{path...}", minRole: roleUser, json: s.handleSnapshotTree},
		{method: "GET", pattern: "/api/v1/snapshots/{id}/file/{path...}", minRole: roleUser, raw: s.handleSnapshotFile},
		{method: "GET", pattern: "/api/v1/snapshots/{id}/archive/{path...}", minRole: roleUser, raw: s.handleSnapshotArchive},
		{method: "POST", pattern: "/api/v1/restores", minRole: roleOperator, json: s.handleRestores},
		{method: "GET", pattern: "/api/v1/images", minRole: roleUser, json: s.handleImageList},
		{method: "GET", pattern: "/api/v1/snapshots/{id}/image", minRole: roleUser, raw: s.handleImageDownload},
		{method: "POST", pattern: "/api/v1/images/restore", minRole: roleAdmin, json: s.handleImageRestore},

		{method: "GET", pattern: "/api/v1/pool", minRole: roleOperator, json: s.handlePoolStats},
		{method: "GET", pattern: "/api/v1/pool/history", minRole: roleOperator, json: s.handlePoolHistory},
		{method: "GET", pattern: "/api/v1/storage", minRole: roleAdmin, json: s.handleStorageGet},
		{method: "POST", pattern: "/api/v1/storage", minRole: roleAdmin, json: s.handleStorageSet},
		{method: "POST", pattern: "/api/v1/storage/test", minRole: roleAdmin, json: s.handleStorageTest},
		{method: "GET", pattern: "/api/v1/tls", minRole: roleAdmin, json: s.handleTLSGet}, // setup_tls.go
		{method: "POST", pattern: "/api/v1/tls", minRole: roleAdmin, json: s.handleTLSSet},
		{method: "POST", pattern: "/api/v1/pool/check", minRole: roleOperator, json: s.handlePoolCheck},
		{method: "POST", pattern: "/api/v1/pool/gc", minRole: roleAdmin, json: s.handlePoolGC},
		{method: "POST", pattern: "/api/v1/catalog/rebuild", minRole: roleAdmin, json: s.handleCatalogRebuild},

		{method: "GET", pattern: "/api/v1/users", minRole: roleAdmin, json: s.handleUserList},
		{method: "POST", pattern: "/api/v1/users", minRole: roleAdmin, json: s.handleUserCreate},
		{method: "DELETE", pattern: "/api/v1/users/{name}", minRole: roleAdmin, json: s.handleUserDelete},
		{method: "GET", pattern: "/api/v1/groups", minRole: roleAdmin, json: s.handleGroupList},
		{method: "POST", pattern: "/api/v1/groups", minRole: roleAdmin, json: s.handleGroupCreate},
		{method: "PUT", pattern: "/api/v1/groups/{name}", minRole: roleAdmin, json: s.handleGroupPut},
		{method: "DELETE", pattern: "/api/v1/groups/{name}", minRole: roleAdmin, json: s.handleGroupDelete},
		{method: "GET", pattern: "/api/v1/defaults", minRole: roleOperator, json: s.handleDefaultsGet},
		{method: "PUT", pattern: "/api/v1/defaults", minRole: roleAdmin, json: s.handleDefaultsPut},
		{method: "GET", pattern: "/api/v1/tokens", minRole: roleUser, json: s.handleTokenList},
		{method: "POST", pattern: "/api/v1/tokens", minRole: roleUser, json: s.handleTokenCreate},
		{method: "DELETE", pattern: "/api/v1/tokens/{id}", minRole: roleUser, json: s.handleTokenDelete},
	}, append(append(s.systemRoutes(), s.replicationRoutes()...), append(s.importRoutes(), s.importBackupPCRoutes()...)...)...) // system.go, replicate_routes.go, api_import.go, import_backuppc.go
}

// healthState is the result of the last storage check.
type healthState struct {
	mu      sync.Mutex
	checked time.Time
	err     error
}

// checkStorage re-reads the pool identity: the connectivity check of
// "wrong or missing storage".
func (s *Server) checkStorage(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	o := pool.OpenOptions{ExpectID: s.pool.ID()}
	if s.pool.Encrypted() {
		o.KeyFile = s.poolKeyFile() // setup_storage.go
	}
	_, err := pool.Open(ctx, s.pool.Backend(), o)
	if err == nil {
		err = s.cat.Ping(ctx)
	}
	s.health.mu.Lock()
	was := s.health.err
	s.health.checked, s.health.err = s.now(), err
	s.health.mu.Unlock()
	// Wrong or missing storage: backups wait instead of failing one by one.
	switch {
	case err != nil && was == nil:
		s.log.Error("storage check failed: pausing the backup queue", "err", err)
		s.applyPause()
	case err == nil && was != nil:
		s.log.Info("storage is back: resuming the backup queue")
		s.applyPause()
	}
	return err
}

func (s *Server) healthLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.checkStorage(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("storage check failed", "err", err)
			}
		}
	}
}

type healthBody struct {
	Status  string `json:"status"` // "ok" or "fail"
	Storage string `json:"storage"`
	Error   string `json:"error,omitempty"`
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request, _ *principal) {
	if err := s.checkStorage(r.Context()); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, healthBody{Status: "fail", Storage: "fail", Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, healthBody{Status: "ok", Storage: "ok"})
}

// StatusBody is GET /api/v1/status.
type StatusBody struct {
	Version   string    `json:"version"`
	PoolID    string    `json:"pool_id"`
	Location  string    `json:"pool_location"`
	Catalog   string    `json:"catalog"` // "sqlite" or "postgres"
	SetupDone bool      `json:"setup_done"`
	Started   time.Time `json:"started"`
	// Maintenance is true while maintenance mode is on.
	Maintenance bool `json:"maintenance"`
	// DataPersistent, on the appliance image only, says whether the data
	// dir is on a disk (false: in RAM, lost at reboot). setup_storage.go
	DataPersistent *bool `json:"data_persistent,omitempty"`
}

func (s *Server) handleStatus(r *http.Request, _ *principal) (any, error) {
	done, err := s.cat.AdminExists(r.Context())
	if err != nil {
		return nil, err
	}
	return StatusBody{DataPersistent: s.dataPersistent(), Version: s.cfg.Version, PoolID: s.pool.ID(), Location: s.pool.Location(),
		Catalog: s.cat.Driver(), SetupDone: done, Started: s.started, Maintenance: s.maintenanceNow().On}, nil
}

func (s *Server) handleWhoami(r *http.Request, p *principal) (any, error) {
	return map[string]string{"name": p.Name, "role": p.Role, "via": p.Via}, nil
}

// MethodBody names a source method the appliance can pull with.
type MethodBody struct {
	Name      string        `json:"name"`
	Title     string        `json:"title,omitempty"`
	PathLabel string        `json:"path_label,omitempty"`
	Options   []MethodField `json:"options"` // api_methods.go
}

var methodTitles = map[string]string{
	"local": "Local directory", "sftp": "SFTP", "smb": "SMB/CIFS share", "rsync": "rsync daemon",
	"ftp": "FTP/FTPS", "tar": "tar over SSH", "dbdump": "Database dump",
}

func handleMethods(r *http.Request, p *principal) (any, error) {
	out := []MethodBody{}
	for _, m := range pullers.Methods() {
		out = append(out, MethodBody{Name: m, Title: methodTitles[m], PathLabel: pathLabels[m], Options: methodOptions(m)})
	}
	return out, nil
}
