package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/appliance/retention"
	"github.com/cairn-backup/cairn/appliance/schedule"
	"github.com/cairn-backup/cairn/images"
	"github.com/cairn-backup/cairn/pool"
)

// Replication targets (issue 11). A target is a place the pool's complete
// snapshots are copied to as soon as they are committed: another pool
// location (a directory or s3://…), another Cairn appliance (through its
// API with an append-only token) or a remote of an imported rclone.conf.
// Targets live in the settings table (one JSON list); their secrets — a
// location with credentials, a token, an rclone.conf — are sealed with the
// appliance key and never returned by the API.

const (
	settingTargets = "replica.targets"
	sealTarget     = "replica-target"

	KindPool   = "pool"   // a directory path or s3:// URL
	KindCairn  = "cairn"  // another appliance: https://host:port + append-only token
	KindRclone = "rclone" // "remote:path" of an imported rclone.conf
)

// ReplicaRetention is a per-target retention policy (keep rules as for a
// host); zero keeps everything.
type ReplicaRetention struct {
	Last    int `json:"keep_last,omitempty"`
	Hourly  int `json:"keep_hourly,omitempty"`
	Daily   int `json:"keep_daily,omitempty"`
	Weekly  int `json:"keep_weekly,omitempty"`
	Monthly int `json:"keep_monthly,omitempty"`
	Yearly  int `json:"keep_yearly,omitempty"`
}

func (r ReplicaRetention) policy() retention.Policy {
	return retention.Policy{KeepLast: r.Last, KeepHourly: r.Hourly, KeepDaily: r.Daily,
		KeepWeekly: r.Weekly, KeepMonthly: r.Monthly, KeepYearly: r.Yearly}
}

// ReplicaTarget is one target as the API shows it (no secrets).
type ReplicaTarget struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Location string `json:"location"` // credentials removed
	// Limits: requests per second (with Burst), requests in flight and
	// objects copied at once, and bytes per second sent. 0: unlimited or
	// the default.
	RPS            float64          `json:"rps,omitempty"`
	Burst          int              `json:"burst,omitempty"`
	Concurrency    int              `json:"concurrency,omitempty"`
	BytesPerSecond float64          `json:"bytes_per_second,omitempty"`
	Retention      ReplicaRetention `json:"retention"`
	// LagAlert: the audit flags a host whose newest complete snapshot
	// is not on this target after this long (default 48h).
	LagAlert string `json:"lag_alert,omitempty"`
	// TLSFingerprint pins the other appliance's certificate (kind
	// cairn, https): its SHA-256 as `cairn serve` shows it (AB:CD:…).
	// Empty: the certificate must verify against the system's CAs.
	TLSFingerprint string    `json:"tls_fingerprint,omitempty"`
	Created        time.Time `json:"created"`
}

// ReplicaTargetInput is POST /api/v1/replicas: a target with its secrets.
type ReplicaTargetInput struct {
	ReplicaTarget
	Location   string `json:"location"`              // may carry credentials (s3://key:secret@…)
	Token      string `json:"token,omitempty"`       // kind cairn: an append-only token of the target
	RcloneConf string `json:"rclone_conf,omitempty"` // kind rclone: the raw rclone.conf
}

// storedTarget is a target as kept in the settings table.
type storedTarget struct {
	ReplicaTarget
	Sealed []byte `json:"sealed"` // sealed targetSecret
}

type targetSecret struct {
	Location   string `json:"location"`
	Token      string `json:"token,omitempty"`
	RcloneConf string `json:"rclone_conf,omitempty"`
}

func (t *ReplicaTarget) lagAlert() time.Duration {
	if d, err := time.ParseDuration(t.LagAlert); err == nil && d > 0 {
		return d
	}
	return 48 * time.Hour
}

func (s *Server) loadTargets(ctx context.Context) ([]storedTarget, error) {
	v, ok, err := s.cat.Setting(ctx, settingTargets)
	if err != nil || !ok {
		return nil, err
	}
	var ts []storedTarget
	if err := json.Unmarshal([]byte(v), &ts); err != nil {
		return nil, fmt.Errorf("stored replication targets: %w", err)
	}
	return ts, nil
}

func (s *Server) saveTargets(ctx context.Context, ts []storedTarget) error {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	b, err := json.Marshal(ts)
	if err != nil {
		return err
	}
	return s.cat.SetSetting(ctx, settingTargets, string(b))
}

func (s *Server) target(ctx context.Context, name string) (*storedTarget, *targetSecret, error) {
	ts, err := s.loadTargets(ctx)
	if err != nil {
		return nil, nil, err
	}
	for i := range ts {
		if ts[i].Name == name {
			plain, err := s.box.Open(sealTarget+":"+name, ts[i].Sealed)
			if err != nil {
				return nil, nil, fmt.Errorf("replication target %s: open its secret: %w", name, err)
			}
			var sec targetSecret
			if err := json.Unmarshal(plain, &sec); err != nil {
				return nil, nil, fmt.Errorf("replication target %s: %w", name, err)
			}
			return &ts[i], &sec, nil
		}
	}
	return nil, nil, notFound("no replication target %q", name)
}

// validateTarget checks an input and returns the displayable location.
func validateTarget(in *ReplicaTargetInput) (string, error) {
	if !pool.ValidName(in.Name) || strings.ContainsAny(in.Name, " /:") || len(in.Name) > 64 {
		return "", badRequest("target name %q: want letters, digits, '-', '_' or '.'", in.Name)
	}
	if in.Location == "" {
		return "", badRequest("target %s: location is required", in.Name)
	}
	if in.RPS < 0 || in.Burst < 0 || in.Concurrency < 0 || in.BytesPerSecond < 0 {
		return "", badRequest("target %s: limits must not be negative", in.Name)
	}
	if in.LagAlert != "" {
		if d, err := time.ParseDuration(in.LagAlert); err != nil || d <= 0 {
			return "", badRequest("target %s: lag_alert %q: want a duration such as 48h", in.Name, in.LagAlert)
		}
	}
	switch in.Kind {
	case KindPool:
		if strings.Contains(in.Location, "://") {
			u, err := url.Parse(in.Location)
			if err != nil || (u.Scheme != "s3" && u.Scheme != "file") {
				return "", badRequest("target %s: location %s: want a directory, file:///path or s3://…", in.Name, pool.RedactLocation(in.Location))
			}
		} else if !strings.HasPrefix(in.Location, "/") {
			return "", badRequest("target %s: directory %q must be an absolute path", in.Name, in.Location)
		}
	case KindCairn:
		u, err := url.Parse(in.Location)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", badRequest("target %s: location %q: want the other appliance's https://host:port", in.Name, pool.RedactLocation(in.Location))
		}
		if in.Token == "" {
			return "", badRequest("target %s: a cairn target needs an append-only token of the other appliance (cairn replica token create there)", in.Name)
		}
		if in.TLSFingerprint != "" {
			if u.Scheme != "https" {
				return "", badRequest("target %s: tls_fingerprint needs an https:// location", in.Name)
			}
			if _, err := parseFingerprint(in.TLSFingerprint); err != nil {
				return "", badRequest("target %s: tls_fingerprint: %v", in.Name, err)
			}
		}
	case KindRclone:
		if _, err := parseRcloneConf(in.RcloneConf); err != nil {
			return "", badRequest("target %s: rclone_conf: %v", in.Name, err)
		}
		remote, _, ok := strings.Cut(in.Location, ":")
		if !ok || remote == "" {
			return "", badRequest("target %s: location %q: want remote:path", in.Name, in.Location)
		}
		conf, _ := parseRcloneConf(in.RcloneConf)
		if _, ok := conf[remote]; !ok {
			return "", badRequest("target %s: remote %q is not in the rclone.conf (it has %s)", in.Name, remote, strings.Join(sortedKeys(conf), ", "))
		}
	default:
		return "", badRequest("target %s: kind %q: want pool, cairn or rclone", in.Name, in.Kind)
	}
	return pool.RedactLocation(in.Location), nil
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (s *Server) handleReplicaList(r *http.Request, p *principal) (any, error) {
	ts, err := s.loadTargets(r.Context())
	if err != nil {
		return nil, err
	}
	out := []ReplicaTargetStatus{}
	for _, t := range ts {
		out = append(out, s.repl.status(t.ReplicaTarget))
	}
	return out, nil
}

func (s *Server) handleReplicaCreate(r *http.Request, p *principal) (any, error) {
	var in ReplicaTargetInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	loc, err := validateTarget(&in)
	if err != nil {
		return nil, err
	}
	ts, err := s.loadTargets(r.Context())
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		if t.Name == in.Name {
			return nil, &httpError{http.StatusConflict, fmt.Sprintf("replication target %s exists", in.Name)}
		}
	}
	sec, _ := json.Marshal(targetSecret{Location: in.Location, Token: in.Token, RcloneConf: in.RcloneConf})
	sealed, err := s.box.Seal(sealTarget+":"+in.Name, sec)
	if err != nil {
		return nil, err
	}
	t := in.ReplicaTarget
	t.Location, t.Created = loc, s.now().UTC()
	ts = append(ts, storedTarget{ReplicaTarget: t, Sealed: sealed})
	if err := s.saveTargets(r.Context(), ts); err != nil {
		return nil, err
	}
	s.log.Info("replication target added", "target", t.Name, "kind", t.Kind, "location", t.Location, "by", p.Name)
	s.kickReplication(t.Name)
	return created{s.repl.status(t)}, nil
}

func (s *Server) handleReplicaDelete(r *http.Request, p *principal) (any, error) {
	name := r.PathValue("name")
	ts, err := s.loadTargets(r.Context())
	if err != nil {
		return nil, err
	}
	kept := ts[:0]
	for _, t := range ts {
		if t.Name != name {
			kept = append(kept, t)
		}
	}
	if len(kept) == len(ts) {
		return nil, notFound("no replication target %q", name)
	}
	if err := s.saveTargets(r.Context(), kept); err != nil {
		return nil, err
	}
	s.repl.forget(name)
	s.log.Info("replication target removed (its copy is left as it is)", "target", name, "by", p.Name)
	return nil, nil
}

// handleReplicaSync runs a target's replication now and waits for it.
func (s *Server) handleReplicaSync(r *http.Request, p *principal) (any, error) {
	name := r.PathValue("name")
	if _, _, err := s.target(r.Context(), name); err != nil {
		return nil, err
	}
	if err := s.ReplicateNow(r.Context(), name); err != nil {
		return nil, err
	}
	t, _, err := s.target(r.Context(), name)
	if err != nil {
		return nil, err
	}
	return s.repl.status(t.ReplicaTarget), nil
}

// ReplicaTargetStatus is a target with the outcome of its last run.
type ReplicaTargetStatus struct {
	ReplicaTarget
	Running     bool       `json:"running"`
	LastRun     *time.Time `json:"last_run,omitempty"`
	LastSuccess *time.Time `json:"last_success,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	// Of the last run: snapshots and objects copied, stored bytes sent,
	// snapshots pruned by the target's retention.
	Copied  int   `json:"copied"`
	Objects int   `json:"objects"`
	Bytes   int64 `json:"bytes"`
	Pruned  int   `json:"pruned"`
	// Since the appliance started: snapshots copied, objects and stored
	// bytes sent, over all runs.
	CopiedTotal  int   `json:"copied_total"`
	ObjectsTotal int   `json:"objects_total"`
	BytesTotal   int64 `json:"bytes_total"`
	// Snapshots on the target after the last run.
	Snapshots []string `json:"snapshots,omitempty"`
	// Image versions ("name/id") copied by the last run and on the
	// target after it (replicate_images.go). Their blocks and bytes are
	// counted in Objects and Bytes.
	ImagesCopied  int      `json:"images_copied"`
	ImageVersions []string `json:"image_versions,omitempty"`
}

// replicator runs one worker per target. A committed snapshot (the
// "snapshot" event of recordSnapshot) wakes every worker at once; a
// worker that is busy runs again when it ends, so nothing waits for a
// poll and nothing is lost. The zero value is ready to use.
type replicator struct {
	mu      sync.Mutex
	ctx     context.Context
	workers map[string]*replWorker
	state   map[string]*ReplicaTargetStatus
	wg      sync.WaitGroup
	// placeholders: snapshot ID → the image version it stands for
	// ("name/id", "" for none), for the audit (placeholderOf).
	placeholders map[string]string
}

type replWorker struct {
	wake    chan struct{}
	cancel  context.CancelFunc
	started bool
	run     sync.Mutex // one run per target at a time
}

// replicationLoop starts the workers of the stored targets, kicks each
// once (catch-up after a restart), wakes them on every committed
// snapshot and, when ctx ends, waits for them.
func (s *Server) replicationLoop(ctx context.Context) {
	r := &s.repl
	if err := s.loadRestoreTestSchedule(ctx); err != nil { // verify.go
		s.log.Error("restore test schedule", "err", err)
	}
	events, cancel := s.events.subscribe(func(e Event) bool { return e.Type == "snapshot" })
	defer cancel()
	r.mu.Lock()
	r.ctx = ctx
	r.mu.Unlock()
	kickAll := func() {
		ts, err := s.loadTargets(ctx)
		if err != nil {
			s.log.Error("replication targets", "err", err)
		}
		for _, t := range ts {
			s.kickReplication(t.Name)
		}
	}
	kickAll()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case _, ok := <-events:
			if !ok {
				<-ctx.Done()
				done = true
				break
			}
			kickAll()
		}
	}
	r.mu.Lock()
	for _, w := range r.workers {
		w.cancel()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// worker returns the worker record of a target (made on first use).
func (r *replicator) worker(name string) *replWorker {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.workers == nil {
		r.workers = map[string]*replWorker{}
	}
	w := r.workers[name]
	if w == nil {
		w = &replWorker{wake: make(chan struct{}, 1), cancel: func() {}}
		r.workers[name] = w
	}
	return w
}

// kickReplication wakes the worker of a target, starting it when needed.
func (s *Server) kickReplication(name string) {
	r := &s.repl
	w := r.worker(name)
	r.mu.Lock()
	if r.ctx == nil || r.ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	if !w.started {
		w.started = true
		ctx, cancel := context.WithCancel(r.ctx)
		w.cancel = cancel
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			// A failed run is retried after a backoff (1m doubling to
			// 1h) as well as on the next committed snapshot.
			var retry schedule.Timer
			backoff := time.Duration(0)
			for {
				var retryC <-chan time.Time
				if retry != nil {
					retryC = retry.C()
				}
				select {
				case <-ctx.Done():
					if retry != nil {
						retry.Stop()
					}
					return
				case <-w.wake:
				case <-retryC:
				}
				if retry != nil {
					retry.Stop()
					retry = nil
				}
				err := s.replicateTarget(ctx, name)
				if err == nil || ctx.Err() != nil {
					backoff = 0
					continue
				}
				backoff = min(max(2*backoff, time.Minute), time.Hour)
				s.log.Warn("replication failed; retrying", "target", name, "in", backoff, "err", err)
				retry = s.clock.NewTimer(backoff)
			}
		}()
	}
	r.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // already due to run
	}
}

func (r *replicator) forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.workers[name]; w != nil {
		w.cancel()
		delete(r.workers, name)
	}
	delete(r.state, name)
}

func (r *replicator) status(t ReplicaTarget) ReplicaTargetStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.state[t.Name]; st != nil {
		out := *st
		out.ReplicaTarget = t
		return out
	}
	return ReplicaTargetStatus{ReplicaTarget: t}
}

func (r *replicator) update(name string, fn func(st *ReplicaTargetStatus)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == nil {
		r.state = map[string]*ReplicaTargetStatus{}
	}
	st := r.state[name]
	if st == nil {
		st = &ReplicaTargetStatus{}
		r.state[name] = st
	}
	fn(st)
}

// ReplicateNow runs the replication of one target and returns when it
// is done (one run per target at a time; a running one is waited for
// and then run again). It is the entry point of the API, the CLI and the
// event-driven workers.
func (s *Server) ReplicateNow(ctx context.Context, name string) error {
	return s.replicateTarget(ctx, name)
}

// replicateTarget copies to the target every complete snapshot newer than
// the newest the target has of the same host and source, then applies the
// target's retention.
func (s *Server) replicateTarget(ctx context.Context, name string) (err error) {
	w := s.repl.worker(name)
	w.run.Lock()
	defer w.run.Unlock()
	t, sec, err := s.target(ctx, name)
	if err != nil {
		return err
	}
	start := s.now()
	s.repl.update(name, func(st *ReplicaTargetStatus) { st.Running = true })
	var rep pool.ReplicateReport
	var irep images.ReplicateReport
	pruned := 0
	var onTarget, imagesOn []string
	defer func() {
		s.repl.update(name, func(st *ReplicaTargetStatus) {
			st.Running = false
			st.LastRun = &start
			objects, bytes := rep.Objects+irep.Objects, rep.Bytes+irep.Bytes
			st.Copied, st.Objects, st.Bytes, st.Pruned = len(rep.Copied), objects, bytes, pruned
			st.ImagesCopied = len(irep.Copied)
			st.CopiedTotal += len(rep.Copied)
			st.ObjectsTotal += objects
			st.BytesTotal += bytes
			if err != nil {
				st.LastError = err.Error()
				return
			}
			st.LastError = ""
			end := s.now()
			st.LastSuccess = &end
			st.Snapshots = onTarget
			st.ImageVersions = imagesOn
		})
	}()
	b, closeFn, err := s.openTarget(ctx, t, sec)
	if err != nil {
		return err
	}
	defer closeFn()
	// The file pool's identity first: the image pool nests below it.
	if _, err = s.pool.EnsureReplica(ctx, b); err != nil {
		return fmt.Errorf("replicate to %s: %w", t.Name, err)
	}
	newest, err := s.newestOnTarget(ctx, b)
	if err != nil {
		return err
	}
	ids, err := pool.ReplicaSnapshots(ctx, b)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, id := range ids {
		have[id] = true
	}
	// Not older than the newest there: what the target's own retention
	// pruned is not sent again.
	selected := func(host, source string, start time.Time, status string) bool {
		return status == pool.StatusComplete && !start.Before(newest[host+"\x00"+source])
	}
	lim := pool.NewBandwidth(t.BytesPerSecond)
	// Image versions before the placeholder snapshots that list them.
	if irep, err = s.replicateImages(ctx, t, b, have, selected, lim); err != nil {
		return err
	}
	if len(irep.Copied) > 0 {
		s.log.Info("replicated images", "target", t.Name, "report", irep.String())
	}
	rep, err = s.pool.Replicate(ctx, b, pool.ReplicateOptions{
		Concurrency: t.Concurrency,
		Limiter:     lim,
		Relist:      t.Kind == KindCairn, // the other appliance prunes on its own
		Select: func(m *pool.Manifest) bool {
			return selected(m.Host, m.Source, m.Start, m.Status)
		},
	})
	if err != nil {
		return fmt.Errorf("replicate to %s: %w", t.Name, err)
	}
	if len(rep.Copied) > 0 {
		s.log.Info("replicated", "target", t.Name, "report", rep.String())
	}
	if t.Kind != KindCairn && t.Retention != (ReplicaRetention{}) {
		if pruned, err = s.replicaRetention(ctx, t, b); err != nil {
			return fmt.Errorf("retention on %s: %w", t.Name, err)
		}
	}
	if onTarget, err = pool.ReplicaSnapshots(ctx, b); err != nil {
		return err
	}
	vs, err := images.ReplicaVersions(ctx, replicaImagesBackend(b))
	if err != nil {
		return err
	}
	imagesOn = sortedKeys(vs)
	return nil
}

// newestOnTarget returns, per host and source, the start of the newest
// snapshot on the target that the catalog knows.
func (s *Server) newestOnTarget(ctx context.Context, b pool.Backend) (map[string]time.Time, error) {
	ids, err := pool.ReplicaSnapshots(ctx, b)
	if err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	var rp *pool.Pool
	for _, id := range ids {
		var host, source string
		var started time.Time
		sn, err := s.cat.Snapshot(ctx, id)
		switch {
		case err == nil:
			host, source, started = sn.Host, sn.Source, sn.Started
		case errors.Is(err, catalog.ErrNotFound):
			// Pruned here already: the replica's own manifest says (it
			// opens with the primary's key: it is the same pool).
			if rp == nil {
				if rp, err = s.openReplicaPool(ctx, b); err != nil {
					return nil, err
				}
			}
			m, err := rp.Snapshot(ctx, id)
			if err != nil {
				return nil, err
			}
			host, source, started = m.Host, m.Source, m.Start
		default:
			return nil, err
		}
		k := host + "\x00" + source
		if started.After(out[k]) {
			out[k] = started
		}
	}
	return out, nil
}

// openReplicaPool opens a target as the pool it is a replica of.
func (s *Server) openReplicaPool(ctx context.Context, b pool.Backend) (*pool.Pool, error) {
	o := pool.OpenOptions{ExpectID: s.pool.ID()}
	if s.pool.Encrypted() {
		o.KeyFile = s.poolKeyFile()
	}
	return pool.Open(ctx, b, o)
}

// openTarget opens a target's backend with its limits.
func (s *Server) openTarget(ctx context.Context, t *storedTarget, sec *targetSecret) (pool.Backend, func(), error) {
	d := pool.DecorateOptions{RateLimit: t.RPS, RateBurst: t.Burst, Concurrency: t.Concurrency, Logger: s.log}
	switch t.Kind {
	case KindPool:
		b, err := pool.OpenBackend(ctx, sec.Location, pool.OpenBackendOptions{Create: true, Decorate: d})
		if err != nil {
			return nil, nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		return b, func() { closeBackend(b) }, nil
	case KindCairn:
		d.Retries = 5
		rb, err := newRemoteBackend(sec.Location, sec.Token, s.pool.ID(), t.TLSFingerprint)
		if err != nil {
			return nil, nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		return pool.Decorate(rb, d), func() {}, nil
	case KindRclone:
		rc, err := startRclone(ctx, s.dataDir, sec.RcloneConf, sec.Location)
		if err != nil {
			return nil, nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		d.Retries = 3
		return pool.Decorate(rc.backend(), d), rc.stop, nil
	}
	return nil, nil, fmt.Errorf("target %s: unknown kind %q", t.Name, t.Kind)
}

func closeBackend(b pool.Backend) {
	if c, ok := b.(interface{ Close() error }); ok {
		c.Close()
	}
}

// replicaRetention applies the target's policy to the snapshots on it
// (per host and source, as for the primary) and collects the garbage.
func (s *Server) replicaRetention(ctx context.Context, t *storedTarget, b pool.Backend) (int, error) {
	rp, err := s.openReplicaPool(ctx, b)
	if err != nil {
		return 0, err
	}
	groups := map[string][]retention.Snapshot{}
	if err := rp.Snapshots(ctx, func(m *pool.Manifest) error {
		k := m.Host + "\x00" + m.Source
		groups[k] = append(groups[k], retention.Snapshot{ID: m.ID, Time: m.Start, Complete: m.Status == pool.StatusComplete})
		return nil
	}); err != nil {
		return 0, err
	}
	removed := 0
	for _, snaps := range groups {
		_, remove, _ := retention.Apply(t.Retention.policy(), snaps, time.Local)
		for _, sn := range remove {
			if err := rp.DeleteSnapshot(ctx, sn.ID); err != nil {
				return removed, err
			}
			removed++
		}
	}
	if removed > 0 {
		if _, err := rp.GC(ctx, pool.GCOptions{Now: s.now}); err != nil {
			return removed, err
		}
		s.log.Info("replica retention", "target", t.Name, "removed", removed)
	}
	// Image versions go with their placeholders (replicate_images.go).
	if n, err := s.pruneReplicaImages(ctx, b); err != nil {
		return removed, fmt.Errorf("image pool: %w", err)
	} else if n > 0 {
		s.log.Info("replica retention", "target", t.Name, "image_versions_removed", n)
	}
	return removed, nil
}
