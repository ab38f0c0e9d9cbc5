package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/pullers"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Store is what the UI needs from the catalog: login, first-boot setup and
// the display settings. *catalog.DB implements it.
type Store interface {
	AdminExists(ctx context.Context) (bool, error)
	User(ctx context.Context, name string) (*catalog.User, error)
	UserByID(ctx context.Context, id int64) (*catalog.User, error)
	CreateUser(ctx context.Context, u *catalog.User) error
	Setting(ctx context.Context, key string) (val string, ok bool, err error)
	SetSetting(ctx context.Context, key, val string) error
	// For the pages of one host, snapshot or job: a user-role user gets
	// the not-found page for what the API hides from them.
	UserSeesHost(ctx context.Context, userID int64, host string) (bool, error)
	Snapshot(ctx context.Context, id string) (*catalog.Snapshot, error)
	Job(ctx context.Context, id int64) (*catalog.Job, error)
}

var _ Store = (*catalog.DB)(nil)

// Settings keys the UI writes.
const (
	SettingTimezone  = "ui.timezone"   // IANA zone the UI shows times in
	SettingSetupDone = "ui.setup_done" // "1" once the wizard finished
)

// Config configures the UI. Store is required.
type Config struct {
	Store   Store
	Logger  *slog.Logger
	Now     func() time.Time // default time.Now
	Version string
	// PoolLocation and PoolEncrypted describe the pool at start. The
	// setup's storage step asks GET /api/v1/storage instead, as the pool
	// may be replaced there.
	PoolLocation  string
	PoolEncrypted bool
	// Methods lists the registered puller methods (default
	// pullers.Methods). The host form asks GET /api/v1/methods first and
	// falls back to these names with generic fields.
	Methods func() []string
	// BcryptCost for new passwords (default bcrypt.DefaultCost; tests
	// lower it).
	BcryptCost int
}

// UI serves the web pages. Create it with New.
type UI struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	Sessions *Sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
	limiter  *loginLimiter

	setupMu sync.Mutex
	token   string
}

// New builds the UI and its session store, with a fresh setup token.
func New(cfg Config) (*UI, error) {
	if cfg.Store == nil {
		return nil, errors.New("web: Config.Store is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Methods == nil {
		cfg.Methods = pullers.Methods
	}
	u := &UI{cfg: cfg, log: cfg.Logger, now: cfg.Now, Sessions: NewSessions(cfg.Now),
		token: randomToken()[:32], limiter: newLoginLimiter(cfg.Now)}
	if err := u.parse(); err != nil {
		return nil, err
	}
	u.routes()
	return u, nil
}

// SetupToken is the one-time token the first-boot setup asks for. `cairn
// serve` prints it (with SetupURL) while NeedsSetup is true.
func (u *UI) SetupToken() string {
	u.setupMu.Lock()
	defer u.setupMu.Unlock()
	return u.token
}

// SetupURL is the setup page of base (e.g. "http://127.0.0.1:8080") with
// the token in the query, ready to open.
func (u *UI) SetupURL(base string) string {
	return strings.TrimRight(base, "/") + "/setup?token=" + url.QueryEscape(u.SetupToken())
}

// NeedsSetup reports whether no admin exists yet.
func (u *UI) NeedsSetup(ctx context.Context) (bool, error) {
	ok, err := u.cfg.Store.AdminExists(ctx)
	if err != nil {
		return false, fmt.Errorf("web: admin exists: %w", err)
	}
	return !ok, nil
}

// Handler serves every UI path: /, /login, /logout, /setup…, /static/…
// and the pages. The appliance mounts it for all paths outside /api/,
// /healthz and /metrics.
func (u *UI) Handler() http.Handler { return u.mux }

var pageNames = []string{"setup.html", "setup_storage.html", "setup_timezone.html", "setup_defaults.html", "setup_host.html",
	"login.html", "dashboard.html", "hosts.html", "host.html", "host_form.html", "browse.html",
	"snapshot.html", "jobs.html", "job.html", "users.html", "tokens.html", "notfound.html",
	// Pages over the verification, replication, scale-out and appliance
	// APIs: one template and one script each.
	"verify.html", "audit.html", "replication.html", "instances.html", "system.html", "setup_disk.html",
	"setup_tls.html"}

func (u *UI) parse() error {
	funcs := template.FuncMap{"join": strings.Join}
	u.pages = map[string]*template.Template{}
	for _, n := range pageNames {
		t, err := template.New(n).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+n)
		if err != nil {
			return fmt.Errorf("web: template %s: %w", n, err)
		}
		u.pages[n] = t
	}
	return nil
}

func (u *UI) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	fileServer := http.StripPrefix("/static/", http.FileServerFS(static))
	m.Handle("GET /static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		fileServer.ServeHTTP(w, r)
	}))
	m.HandleFunc("GET /setup", u.handleSetup)
	m.HandleFunc("POST /setup", u.handleSetupPost)
	m.HandleFunc("GET /setup/storage", u.page("setup_storage.html", catalog.RoleAdmin, nil))
	m.HandleFunc("GET /setup/timezone", u.page("setup_timezone.html", catalog.RoleAdmin, u.timezoneData))
	m.HandleFunc("POST /setup/timezone", u.handleTimezonePost)
	m.HandleFunc("GET /setup/tls", u.page("setup_tls.html", catalog.RoleAdmin, nil)) // HTTPS certificate, over /api/v1/tls
	m.HandleFunc("GET /setup/defaults", u.page("setup_defaults.html", catalog.RoleAdmin, nil))
	m.HandleFunc("GET /setup/host", u.page("setup_host.html", catalog.RoleAdmin, nil))
	m.HandleFunc("POST /setup/done", u.handleSetupDone)
	m.HandleFunc("GET /login", u.handleLogin)
	m.HandleFunc("POST /login", u.handleLoginPost)
	m.HandleFunc("POST /logout", u.handleLogout)
	m.HandleFunc("GET /{$}", u.page("dashboard.html", catalog.RoleUser, nil))
	m.HandleFunc("GET /hosts", u.page("hosts.html", catalog.RoleUser, nil))
	m.HandleFunc("GET /hosts/new", u.page("host_form.html", catalog.RoleOperator, u.hostFormData))
	m.HandleFunc("GET /hosts/{host}", u.page("host.html", catalog.RoleUser, u.hostData))
	m.HandleFunc("GET /hosts/{host}/edit", u.page("host_form.html", catalog.RoleOperator, u.hostFormData))
	m.HandleFunc("GET /browse/{host}", u.page("browse.html", catalog.RoleUser, u.hostData))
	m.HandleFunc("GET /snapshots/{id}/{path...}", u.page("snapshot.html", catalog.RoleUser, u.snapshotData))
	m.HandleFunc("GET /jobs", u.page("jobs.html", catalog.RoleUser, nil))
	m.HandleFunc("GET /jobs/{id}", u.page("job.html", catalog.RoleUser, u.jobData))
	m.HandleFunc("GET /users", u.page("users.html", catalog.RoleAdmin, nil))
	m.HandleFunc("GET /tokens", u.page("tokens.html", catalog.RoleUser, nil))
	m.HandleFunc("GET /verify", u.page("verify.html", catalog.RoleOperator, nil))
	m.HandleFunc("GET /audit", u.page("audit.html", catalog.RoleOperator, nil))
	m.HandleFunc("GET /replication", u.page("replication.html", catalog.RoleOperator, nil))
	m.HandleFunc("GET /instances", u.page("instances.html", catalog.RoleOperator, nil))
	m.HandleFunc("GET /system", u.page("system.html", catalog.RoleAdmin, nil))
	m.HandleFunc("GET /setup/disk", u.page("setup_disk.html", catalog.RoleAdmin, nil))
	m.HandleFunc("/", u.page("notfound.html", catalog.RoleUser, func(r *http.Request, d *pageData) int {
		return http.StatusNotFound
	}))
	u.mux = m
}

// pageData is what every template gets.
type pageData struct {
	Title   string
	Page    string // body data-page: which script part runs
	User    *catalog.User
	IsAdmin bool
	IsOper  bool
	CSRF    string
	TZ      string
	Version string
	Errors  map[string]string // field → message
	Form    map[string]string // values to refill
	Flash   string
	Data    map[string]any
	Attrs   map[string]string // data-* attributes of <body> for the script
}

func (u *UI) render(w http.ResponseWriter, code int, name string, d *pageData) {
	if d.Version == "" {
		d.Version = u.cfg.Version
	}
	if d.Page == "" {
		d.Page = strings.TrimSuffix(name, ".html")
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	w.WriteHeader(code)
	if err := u.pages[name].ExecuteTemplate(w, "layout", d); err != nil {
		u.log.Error("web: render", "page", name, "err", err)
	}
}

func roleRank(r string) int {
	switch r {
	case catalog.RoleAdmin:
		return 3
	case catalog.RoleOperator:
		return 2
	case catalog.RoleUser:
		return 1
	}
	return 0
}

// current returns the logged-in user of r, or nil.
func (u *UI) current(r *http.Request) *catalog.User {
	id, ok := u.Sessions.Authenticate(r)
	if !ok {
		return nil
	}
	usr, err := u.cfg.Store.UserByID(r.Context(), id)
	if err != nil {
		return nil
	}
	return usr
}

// gate sends r to /setup while no admin exists and to /login without a
// session. It returns the user, or nil when it answered.
func (u *UI) gate(w http.ResponseWriter, r *http.Request) *catalog.User {
	need, err := u.NeedsSetup(r.Context())
	if err != nil {
		http.Error(w, "catalog unavailable", http.StatusServiceUnavailable)
		u.log.Error("web", "err", err)
		return nil
	}
	if need {
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return nil
	}
	usr := u.current(r)
	if usr == nil {
		if HasCookie(r) {
			u.Sessions.Destroy(w, r)
		}
		http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return nil
	}
	return usr
}

func (u *UI) baseData(r *http.Request, usr *catalog.User, title string) *pageData {
	d := &pageData{Title: title, User: usr, Data: map[string]any{}, Errors: map[string]string{}, Form: map[string]string{},
		Attrs: map[string]string{}}
	if usr != nil {
		d.IsAdmin = usr.Role == catalog.RoleAdmin
		d.IsOper = roleRank(usr.Role) >= 2
		d.CSRF = u.Sessions.CSRFToken(r)
	}
	if tz, ok, _ := u.cfg.Store.Setting(r.Context(), SettingTimezone); ok {
		d.TZ = tz
	}
	return d
}

var titles = map[string]string{
	"dashboard.html": "Dashboard", "hosts.html": "Hosts", "host.html": "Host", "host_form.html": "Host",
	"browse.html": "Snapshots", "snapshot.html": "Browse", "jobs.html": "Jobs", "job.html": "Job",
	"users.html": "Users and groups", "tokens.html": "Your account", "notfound.html": "Not found",
	"verify.html": "Verification", "audit.html": "Replication audit", "replication.html": "Replication", "instances.html": "Instances",
	"system.html": "System", "setup_disk.html": "Setup: data disk",
	"setup_storage.html": "Setup: storage", "setup_timezone.html": "Setup: timezone", "setup_defaults.html": "Setup: schedule", "setup_host.html": "Setup: first host", "setup_tls.html": "Setup: HTTPS",
}

// page serves a page shell for users of at least minRole. fill may add
// data and return a status other than 200: 404 serves the not-found page
// instead (the same page as for a path that does not exist), 500 an
// internal error.
func (u *UI) page(name, minRole string, fill func(r *http.Request, d *pageData) int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		usr := u.gate(w, r)
		if usr == nil {
			return
		}
		d := u.baseData(r, usr, titles[name])
		if roleRank(usr.Role) < roleRank(minRole) {
			d.Title = "Not found"
			u.render(w, http.StatusNotFound, "notfound.html", d)
			return
		}
		code := http.StatusOK
		if fill != nil {
			if c := fill(r, d); c != 0 {
				code = c
			}
		}
		switch {
		case code == http.StatusNotFound && name != "notfound.html":
			u.render(w, code, "notfound.html", u.baseData(r, usr, titles["notfound.html"]))
			return
		case code == http.StatusInternalServerError:
			http.Error(w, "internal error", code)
			return
		}
		u.render(w, code, name, d)
	}
}

func pathData(names ...string) func(r *http.Request, d *pageData) int {
	return func(r *http.Request, d *pageData) int {
		for _, n := range names {
			d.Data[n] = r.PathValue(n)
			d.Attrs[n] = r.PathValue(n)
		}
		return 0
	}
}

// seesHost reports whether usr may see host, as the API decides it
// (appliance canSeeHost): operators and admins see every host, users the
// hosts of their groups; a host that does not exist is seen by no user,
// so a hidden host and a missing one look the same.
func (u *UI) seesHost(ctx context.Context, usr *catalog.User, host string) (bool, error) {
	if roleRank(usr.Role) >= roleRank(catalog.RoleOperator) {
		return true, nil
	}
	if host == "" {
		return false, nil
	}
	return u.cfg.Store.UserSeesHost(ctx, usr.ID, host)
}

// visibleStatus turns the answer of seesHost into a fill status: 0 (the
// page), 404 or 500.
func (u *UI) visibleStatus(r *http.Request, ok bool, err error) int {
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		return http.StatusNotFound
	case err != nil:
		u.log.Error("web: page visibility", "path", r.URL.Path, "err", err)
		return http.StatusInternalServerError
	case !ok:
		return http.StatusNotFound
	}
	return 0
}

// hostData fills the pages of one host (/hosts/{host}, /browse/{host}):
// 404 unless the user may see the host.
func (u *UI) hostData(r *http.Request, d *pageData) int {
	host := r.PathValue("host")
	ok, err := u.seesHost(r.Context(), d.User, host)
	if c := u.visibleStatus(r, ok, err); c != 0 {
		return c
	}
	return pathData("host")(r, d)
}

// snapshotData fills the snapshot browser (/snapshots/{id}/{path...}):
// 404 unless the user may see the snapshot's host.
func (u *UI) snapshotData(r *http.Request, d *pageData) int {
	if roleRank(d.User.Role) < roleRank(catalog.RoleOperator) {
		snap, err := u.cfg.Store.Snapshot(r.Context(), r.PathValue("id"))
		ok := false
		if err == nil {
			ok, err = u.seesHost(r.Context(), d.User, snap.Host)
		}
		if c := u.visibleStatus(r, ok, err); c != 0 {
			return c
		}
	}
	d.Attrs["id"] = r.PathValue("id")
	d.Attrs["path"] = r.PathValue("path")
	return 0
}

// jobData fills a job's page (/jobs/{id}): 404 unless the user may see
// the job's host (jobs without a host are for operators).
func (u *UI) jobData(r *http.Request, d *pageData) int {
	if roleRank(d.User.Role) < roleRank(catalog.RoleOperator) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			return http.StatusNotFound
		}
		j, err := u.cfg.Store.Job(r.Context(), id)
		ok := false
		if err == nil {
			ok, err = u.seesHost(r.Context(), d.User, j.Host)
		}
		if c := u.visibleStatus(r, ok, err); c != 0 {
			return c
		}
	}
	return pathData("id")(r, d)
}

func (u *UI) hostFormData(r *http.Request, d *pageData) int {
	d.Data["host"] = r.PathValue("host")
	d.Attrs["host"] = r.PathValue("host")
	d.Attrs["methods"] = strings.Join(u.cfg.Methods(), ",")
	if r.URL.Query().Get("setup") != "" {
		d.Attrs["setup"] = "1"
	}
	return 0
}

// checkSameOrigin rejects a cross-site form post when the browser says
// where it came from (Origin or Sec-Fetch-Site). Forms without a session
// (login, setup) rely on it plus a double-submit cookie.
func checkSameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		ou, err := url.Parse(o)
		if err != nil || ou.Host != r.Host {
			return false
		}
	}
	return true
}
