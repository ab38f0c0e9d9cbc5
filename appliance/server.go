package appliance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/appliance/internal/secret"
	"github.com/cairn-backup/cairn/appliance/schedule"
	"github.com/cairn-backup/cairn/appliance/web"
	"github.com/cairn-backup/cairn/fusefs"
	"github.com/cairn-backup/cairn/pool"
)

// Defaults of Config.
const (
	DefaultDataDir = "cairn-data"
	DefaultListen  = "127.0.0.1:8080"
	SocketName     = "cairn.sock"
)

// Config configures an appliance. Zero values take the defaults.
type Config struct {
	DataDir string // default ./cairn-data
	Listen  string // TCP address; default 127.0.0.1:8080; "-" disables TCP
	DB      string // catalog: "" = DATA/catalog.db (SQLite), or postgres://…
	Pool    string // pool: a directory or s3://…; "" = DATA/pool
	Images  string // image pool: a directory or s3://…; "" = DATA/images (images.go)
	Version string
	Logger  *slog.Logger
	// MaxJobs is the global limit of concurrently running backups
	// (default 1).
	MaxJobs int
	// Clock drives schedules, retries and timestamps (default the real
	// clock); tests inject a schedule.FakeClock.
	Clock schedule.Clock
	// RetryBackoff is the wait before the first retry of a failed
	// scheduled backup, doubled each time (default 1m).
	RetryBackoff time.Duration
	// GCSchedule and CheckSchedule are cron expressions for pool GC
	// (default nightly, 03:30) and the pool check (default Sundays 04:00,
	// re-reading CheckPercent of the data, default 5). "-" disables one.
	GCSchedule    string
	CheckSchedule string
	CheckPercent  float64
	// WebhookURL receives a JSON POST when a backup fails or a source
	// goes stale (no good backup for StaleAfter, default 36h, checked every
	// StaleCheckEvery, default 1h). Empty: no notifications.
	WebhookURL      string
	StaleAfter      time.Duration
	StaleCheckEvery time.Duration
	// SMTPAddr (host:port), when set with MailTo, gets the same
	// notifications as mail from MailFrom; SMTPUser/SMTPPassword
	// authenticate (PLAIN, only over TLS or to localhost).
	SMTPAddr     string
	SMTPUser     string
	SMTPPassword string
	MailFrom     string
	MailTo       []string
	// MetricsTextfile, when set, gets the metrics every minute for
	// node-exporter's textfile collector (a *.prom path).
	MetricsTextfile string
	// Mount, when set, is where the whole restore tree is mounted
	// read-only over FUSE while serving (a stale mount there is cleared).
	Mount string
	// TLSMode is "" or "off" (plain HTTP), "auto" (a self-signed
	// certificate made once in DATA/tls) or "file" (TLSCert and TLSKey,
	// PEM). See system_tls.go.
	TLSMode, TLSCert, TLSKey string
	// Consoles are where RunAppliance shows the URL, setup token and TLS
	// fingerprint (the appliance: /dev/tty1 and /dev/ttyS0).
	Consoles []string
	// SecretKeyFile holds the key sealing host credentials; "" =
	// DATA/secret.key. Instances of one fleet must share it.
	SecretKeyFile string
	// Cluster configures scale-out (cluster.go).
	Cluster ClusterConfig
}

// A Server is an open appliance: data dir locked, catalog and pool open,
// job runner started. Serve exposes it over HTTP; Close releases it.
type Server struct {
	cfg       Config
	log       *slog.Logger
	dataDir   string
	lock      *dirLock
	cat       *catalog.DB
	box       *secret.Box
	pool      *pool.Pool
	jobs      *jobRunner
	events    *broker
	handler   http.Handler
	routes    []route
	started   time.Time
	now       func() time.Time
	clock     schedule.Clock
	health    healthState
	usage     poolUsage
	lastCheck checkResult
	ui        *web.UI
	maint     maintenanceState
	notify    *notifier
	bgCancel  context.CancelFunc
	bgWG      sync.WaitGroup
	closeOne  sync.Once
	rtree     restoreTree    // shared tree of WebDAV (restoretree.go)
	basic     basicCache     // recent Basic logins (dav.go)
	mount     *fusefs.Server // the restore tree mount (mount.go), or nil
	sys       *sysEnv        // the appliance image's machine (system.go), or nil
	imgs      imageState     // the block-image pool (images.go)
	repl      replicator     // replication targets (replicate.go)

	// tlsCert is served by a TLS listener; POST /api/v1/tls swaps it (setup_tls.go).
	tlsCert atomic.Pointer[tls.Certificate]
}

// New opens the appliance in cfg.DataDir: it takes the data dir lock,
// opens (or creates) the catalog, the secret key and the pool, recovers
// jobs interrupted by a crash and starts the job runner.
func New(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.MaxJobs <= 0 {
		cfg.MaxJobs = 1
	}
	if cfg.Clock == nil {
		cfg.Clock = schedule.RealClock()
	}
	if cfg.GCSchedule == "" {
		cfg.GCSchedule = "30 3 * * *"
	}
	if cfg.CheckSchedule == "" {
		cfg.CheckSchedule = "0 4 * * 0"
	}
	if cfg.CheckPercent <= 0 || cfg.CheckPercent > 100 {
		cfg.CheckPercent = 5
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 36 * time.Hour
	}
	if cfg.StaleCheckEvery <= 0 {
		cfg.StaleCheckEvery = time.Hour
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, dataDir: dir, clock: cfg.Clock, now: cfg.Clock.Now, events: newBroker()}
	s.started = s.now()
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.lock, err = lockDataDir(dir); err != nil {
		return nil, err
	}
	dsn := cfg.DB
	if dsn == "" {
		dsn = filepath.Join(dir, "catalog.db")
	}
	if s.cat, err = catalog.Open(ctx, dsn); err != nil {
		return nil, err
	}
	keyFile := cfg.SecretKeyFile
	if keyFile == "" {
		keyFile = filepath.Join(dir, "secret.key")
	}
	if s.box, err = secret.LoadOrCreate(keyFile); err != nil {
		return nil, err
	}
	if err = initSSHKey(dir); err != nil {
		return nil, err
	}
	if err = s.openPool(ctx); err != nil {
		return nil, err
	}
	s.notify = newNotifier(s)
	s.jobs = newJobRunner(s)
	if err = s.jobs.recover(ctx); err != nil {
		return nil, err
	}
	if s.ui, err = web.New(web.Config{Store: s.cat, Logger: s.log, Now: s.now, Version: cfg.Version,
		PoolLocation: s.pool.Location(), PoolEncrypted: s.pool.Encrypted()}); err != nil {
		return nil, err
	}
	s.buildRoutes()
	if err = s.loadMaintenance(ctx); err != nil {
		return nil, err
	}
	if err = s.jobs.start(ctx); err != nil {
		return nil, err
	}
	s.applyPause()
	bg, cancel := context.WithCancel(context.Background())
	s.bgCancel = cancel
	s.bgWG.Add(1)
	go func() { defer s.bgWG.Done(); s.notify.loop(bg) }()
	s.bgWG.Add(1)
	go func() { defer s.bgWG.Done(); s.usageLoop(bg) }() // usage_history.go
	s.bgWG.Add(1)
	go func() { defer s.bgWG.Done(); s.textfileLoop(bg) }()
	s.bgWG.Add(1)
	go func() { defer s.bgWG.Done(); s.replicationLoop(bg) }() // replicate.go
	return s, nil
}

// openPool opens the pool the catalog expects, or initialises a new one on
// first run and records its identity in the catalog.
func (s *Server) openPool(ctx context.Context) error {
	dir := s.cfg.Pool
	if dir == "" {
		dir = filepath.Join(s.dataDir, "pool")
	}
	want, known, err := s.cat.Setting(ctx, catalog.SettingPoolID)
	if err != nil {
		return err
	}
	if known && s.cfg.Pool == "" {
		if st, ok, err := s.storageChoice(ctx); err != nil {
			return err
		} else if ok {
			return s.openChosenPool(ctx, st, want) // setup_storage.go
		}
	}
	if known {
		b, err := s.openPoolBackend(ctx, dir, false)
		if err != nil {
			return fmt.Errorf("wrong or missing storage: the catalog expects pool %s at %s: %w", want, pool.RedactLocation(dir), err)
		}
		p, err := pool.Open(ctx, b, pool.OpenOptions{ExpectID: want})
		if err != nil {
			return fmt.Errorf("wrong or missing storage: the catalog expects pool %s at %s: %w", want, pool.RedactLocation(dir), err)
		}
		s.pool = p
		return nil
	}
	b, err := s.openPoolBackend(ctx, dir, true)
	if err != nil {
		return err
	}
	p, err := pool.Open(ctx, b, pool.OpenOptions{})
	if err == nil {
		s.log.Info("adopting the existing pool found in the data dir; run `cairn catalog rebuild` to index its snapshots",
			"pool", p.ID(), "location", p.Location())
	} else {
		if _, serr := b.Stat(ctx, pool.IdentityName); serr == nil {
			return fmt.Errorf("pool %s: %w", pool.RedactLocation(dir), err) // present but unreadable: never overwrite
		}
		if p, err = pool.Init(ctx, b, pool.InitOptions{}); err != nil {
			return fmt.Errorf("init pool %s: %w", pool.RedactLocation(dir), err)
		}
		s.log.Info("initialised a new pool", "pool", p.ID(), "location", p.Location())
	}
	if err := s.cat.SetSetting(ctx, catalog.SettingPoolID, p.ID()); err != nil {
		return err
	}
	if err := s.cat.SetSetting(ctx, catalog.SettingPoolLocation, p.Location()); err != nil {
		return err
	}
	s.pool = p
	return nil
}

// Handler returns the HTTP handler of the API (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// Catalog returns the open catalog.
func (s *Server) Catalog() *catalog.DB { return s.cat }

// Pool returns the open pool.
func (s *Server) Pool() *pool.Pool { return s.pool }

// SocketPath is the unix socket of the API in the data dir.
func (s *Server) SocketPath() string { return filepath.Join(s.dataDir, SocketName) }

// Serve listens on cfg.Listen and on the unix socket until ctx is done,
// then shuts down: stops accepting, cancels running jobs (marked
// interrupted, re-queued on the next start) and waits for handlers.
// ready, when not nil, is called with the TCP address once listening.
func (s *Server) Serve(ctx context.Context, ready func(tcpAddr string)) error {
	sock := s.SocketPath()
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", sock, err)
	}
	ul, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ul.Close()
		return fmt.Errorf("chmod %s: %w", sock, err)
	}
	listeners := []net.Listener{ul}
	tcpAddr := ""
	if s.cfg.Listen != "-" {
		tl, err := net.Listen("tcp", s.cfg.Listen)
		if err != nil {
			ul.Close()
			return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
		}
		if tl, err = s.wrapTLS(tl); err != nil { // system_tls.go
			ul.Close()
			return err
		}
		tcpAddr = tl.Addr().String()
		listeners = append(listeners, tl)
	}
	srv := &http.Server{
		Handler:           s.handler,
		ConnContext:       connContext,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	// Mounted before answering: /healthz up means the mount is there.
	if err := s.startMount(ctx); err != nil {
		for _, l := range listeners {
			l.Close()
		}
		os.Remove(sock)
		return err
	}
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { errc <- srv.Serve(l) }()
	}
	s.log.Info("cairn serve listening", "http", tcpAddr, "socket", sock, "data", s.dataDir,
		"pool", s.pool.ID(), "catalog", s.cat.Where(), "version", s.cfg.Version)
	if need, err := s.ui.NeedsSetup(ctx); err == nil && need && tcpAddr != "" {
		s.log.Info("first-boot setup: open this address in a browser to create the admin account",
			"url", s.ui.SetupURL(s.scheme()+"://"+tcpAddr))
	}
	s.jobs.cl.setAddr(tcpAddr)
	if ready != nil {
		ready(tcpAddr)
	}
	go s.healthLoop(ctx)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.log.Info("shutting down")
	s.stopMount()
	s.jobs.stop() // cancels running jobs: they end as interrupted
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	s.events.close() // ends SSE streams so Shutdown need not wait for them
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	os.Remove(sock)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// Close stops the job runner and releases the catalog, pool and lock.
func (s *Server) Close() error {
	s.closeOne.Do(func() {
		if s.bgCancel != nil {
			s.bgCancel()
			s.bgWG.Wait()
		}
		if s.jobs != nil {
			s.jobs.stop()
		}
		if s.cat != nil {
			s.cat.Close()
		}
		if s.pool != nil {
			if c, ok := s.pool.Backend().(io.Closer); ok {
				c.Close()
			}
		}
		s.lock.release()
	})
	return nil
}

// Run is New + Serve + Close: the whole life of `cairn serve`.
func Run(ctx context.Context, cfg Config, ready func(tcpAddr string)) error {
	s, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Serve(ctx, ready)
}

// jobLog records a job event for a job that may not be running here.
func (s *Server) jobLog(id int64, host, level, msg string) {
	e := &catalog.JobEvent{JobID: id, Time: s.now(), Level: level, Message: msg}
	if err := s.cat.AddJobEvent(context.Background(), e); err != nil {
		s.log.Warn("store job event", "job", id, "err", err)
	}
	s.events.publish(Event{Type: "log", JobID: id, Host: host, Data: map[string]string{"level": level, "message": msg}})
}

// schedulesChanged reloads the scheduler after a host or schedule change.
func (s *Server) schedulesChanged(ctx context.Context) {
	if err := s.jobs.loadSchedules(ctx); err != nil {
		s.log.Error("reload schedules", "err", err)
	}
}
