package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/archive"
)

func init() { executors["backup"] = runBackup }

// jobSink passes entries to the snapshot writer and logs the first
// per-file errors as job events.
type jobSink struct {
	w      *pool.Writer
	jc     *jobCtx
	scrub  func(string) string
	logged atomic.Int64
}

const maxLoggedFileErrors = 20

func (js *jobSink) Add(ctx context.Context, path string, e pool.Entry, r io.Reader) error {
	return js.w.Add(ctx, path, e, r)
}

// AddStream lets dump pullers stream content of unknown size.
func (js *jobSink) AddStream(ctx context.Context, path string, e pool.Entry, r io.Reader) (int64, error) {
	return js.w.AddStream(ctx, path, e, r)
}

// StoreContent and Flush let the archive importer store members ahead of
// their entries (pullers/archive.Sink).
func (js *jobSink) StoreContent(ctx context.Context, r io.Reader) (pool.Entry, error) {
	return js.w.StoreContent(ctx, r)
}

func (js *jobSink) Flush(ctx context.Context) error { return js.w.Flush(ctx) }

var (
	_ pullers.StreamSink = (*jobSink)(nil)
	_ archive.Sink       = (*jobSink)(nil)
)

func (js *jobSink) RecordError(path string, err error) {
	js.w.RecordError(path, err)
	if n := js.logged.Add(1); n <= maxLoggedFileErrors {
		js.jc.logf("warn", "%s", js.scrub(fmt.Sprintf("%s: %v", path, err)))
	} else if n == maxLoggedFileErrors+1 {
		js.jc.logf("warn", "more per-file errors: see the snapshot's manifest")
	}
}

// scrubber returns a function that masks every secret value in a message,
// so a puller error that echoes a credential never reaches a log or the
// catalog.
func scrubber(secret map[string]string) func(string) string {
	var vals []string
	for _, v := range secret {
		if len(v) >= 3 {
			vals = append(vals, v)
		}
	}
	sort.Slice(vals, func(i, j int) bool { return len(vals[i]) > len(vals[j]) })
	return func(s string) string {
		for _, v := range vals {
			s = strings.ReplaceAll(s, v, "***")
		}
		return s
	}
}

// runBackup backs up every (selected) source of the job's host, one after
// the other, each into its own snapshot. A failing source does not stop
// the others; the job fails if any did.
func runBackup(ctx context.Context, jc *jobCtx) error {
	s := jc.s
	var params BackupParams
	if len(jc.job.Params) > 0 {
		if err := json.Unmarshal(jc.job.Params, &params); err != nil {
			return fmt.Errorf("job parameters: %w", err)
		}
	}
	h, err := s.cat.Host(ctx, jc.job.Host)
	if err != nil {
		return err
	}
	srcs, err := s.cat.Sources(ctx, h.ID)
	if err != nil {
		return err
	}
	if len(params.Sources) > 0 {
		want := map[string]bool{}
		for _, n := range params.Sources {
			want[n] = true
		}
		var sel []catalog.Source
		for _, src := range srcs {
			if want[src.Name] {
				sel = append(sel, src)
			}
		}
		srcs = sel
	}
	if len(srcs) == 0 {
		return fmt.Errorf("host %s has no sources to back up", h.Name)
	}
	// The previous snapshots' sizes give the ETA its total.
	var total int64
	for _, src := range srcs {
		if last, err := s.cat.LastSnapshot(ctx, h.Name, src.Name, false); err == nil {
			total += last.Bytes
		}
	}
	jc.update(func(p *Progress) { p.Phase, p.Sources, p.BytesTotal = "pulling", len(srcs), total })
	jc.logf("info", "backup of %s: %d source(s)", h.Name, len(srcs))

	var failed []string
	allPermanent := true
	var base Progress // totals of the sources done so far
	for i, src := range srcs {
		if err := ctx.Err(); err != nil {
			return err
		}
		jc.update(func(p *Progress) { p.Source, p.SourcesDone = src.Name, i })
		m, err := s.backupSource(ctx, jc, h, &src, base)
		if m != nil {
			base.Files += m.Files
			base.Bytes += m.Bytes
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			failed = append(failed, err.Error())
			allPermanent = allPermanent && errors.Is(err, pullers.ErrPermanent)
			continue
		}
	}
	jc.update(func(p *Progress) { p.SourcesDone, p.Source, p.Path, p.Phase = len(srcs), "", "", "done" })
	s.invalidateUsage()
	if len(failed) > 0 {
		err := errors.New(strings.Join(failed, "; "))
		if allPermanent {
			return permanent{err} // retrying would not help
		}
		return err
	}
	// Retention runs after a successful backup of the host, never after
	// a failed one (the newest complete snapshot is always kept anyway).
	if err := s.applyRetention(ctx, jc, h); err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	return nil
}

// backupSource pulls one source into a new snapshot and records it.
func (s *Server) backupSource(ctx context.Context, jc *jobCtx, h *catalog.Host, src *catalog.Source, base Progress) (*pool.Manifest, error) {
	if isImageMethod(src.Method) {
		return s.backupImage(ctx, jc, h, src) // images_job.go
	}
	start := s.now()
	fail := func(err error) (*pool.Manifest, error) {
		msg := fmt.Sprintf("source %s: %v", src.Name, err)
		if ctx.Err() == nil {
			s.cat.PutBackupStatus(context.WithoutCancel(ctx), &catalog.BackupStatus{Host: h.Name, Source: src.Name,
				Status: "failed", Error: msg, Attempt: s.now(), Duration: s.now().Sub(start)})
			jc.logf("error", "%s", msg)
		}
		if errors.Is(err, pullers.ErrPermanent) {
			return nil, permanent{errors.New(msg)}
		}
		return nil, errors.New(msg)
	}
	secret := map[string]string{}
	if src.Secret != nil {
		var err error
		if secret, err = s.openSecret(src.Secret); err != nil {
			return fail(fmt.Errorf("credentials: %w", err))
		}
	}
	// A source without its own SSH credential logs in with the
	// appliance's key (installed on the host by `cairn host onboard`).
	if err := s.withApplianceKey(src.Method, src.Options, secret); err != nil {
		return fail(fmt.Errorf("appliance ssh key: %w", err))
	}
	scrub := scrubber(secret)
	pl, err := pullers.Get(src.Method)
	if err != nil {
		return fail(err)
	}
	if err := applyDirCap(pl, src.Method, src.Options); err != nil { // pullers.go
		return fail(permanent{err})
	}
	hooks, err := newHookRunner(h, src, secret)
	if err != nil {
		return fail(err)
	}
	snap, err := snapshotFor(src, jc.job.ID)
	if err != nil {
		return fail(permanent{err})
	}
	jump, err := newJump(src.Options, secret)
	if err != nil {
		return fail(permanent{err})
	}
	defer jump.Close() // after the post-command and the snapshot removal
	if err := useJump(pl, src.Method, src.Options["via"], jump); err != nil {
		return fail(err)
	}
	if hooks != nil && jump != nil {
		hooks.dial = jump.Dial
	}
	pullPath := src.Path
	if hooks != nil {
		// The post-command runs whatever happens from here on, after the
		// snapshot is gone (deferred calls run last first).
		defer func() {
			if src.Options["post"] == "" {
				return
			}
			if err := hooks.run(context.WithoutCancel(ctx), "post", src.Options["post"]); err != nil {
				jc.logf("warn", "source %s: %s", src.Name, scrub(err.Error()))
			} else {
				jc.logf("info", "source %s: post-command done", src.Name)
			}
		}()
		if src.Options["pre"] != "" {
			jc.logf("info", "source %s: pre-command", src.Name)
			if err := hooks.run(ctx, "pre", src.Options["pre"]); err != nil {
				return fail(keepPermanent(err, errors.New(scrub(err.Error()))))
			}
		}
		if snap != nil {
			// Removed also after a failed or cancelled pull, and after a
			// half-done creation (the removal tolerates what is missing).
			defer func() {
				if err := hooks.run(context.WithoutCancel(ctx), "snapshot removal", snap.remove); err != nil {
					jc.logf("warn", "source %s: %s snapshot %s: %s", src.Name, snap.kind, snap.created, scrub(err.Error()))
				} else {
					jc.logf("info", "source %s: %s snapshot %s removed", src.Name, snap.kind, snap.created)
				}
			}()
			if err := hooks.run(ctx, "snapshot", snap.create); err != nil {
				return fail(keepPermanent(err, errors.New(scrub(err.Error()))))
			}
			jc.logf("info", "source %s: %s snapshot %s; pulling %s", src.Name, snap.kind, snap.created, snap.path)
			if snapshotTaken != nil {
				snapshotTaken(ctx, jc.job.ID, snap)
			}
			pullPath = snap.path
		}
	}
	if jc.job.RetryOf != 0 {
		s.adoptCheckpoints(ctx, jc, h.Name, src.Name)
	}
	var prev pullers.Previous
	if last, err := s.cat.LastSnapshot(ctx, h.Name, src.Name, false); err == nil {
		if root, err := pool.ParseDigest(last.Root); err == nil {
			prev = s.pool.NewTreeLookup(root)
		}
	}
	// Checkpoints commit the snapshot so far now and then (a partial
	// manifest, indexed at once), so a process killed mid-backup leaves
	// a partial snapshot that the re-run uses as its basis.
	ckpt, err := checkpointOptions(src.Options)
	if err != nil {
		return fail(permanent{err})
	}
	ckpt.OnCheckpoint = func(m *pool.Manifest) {
		if err := s.recordSnapshot(context.WithoutCancel(ctx), jc, m); err != nil {
			jc.logf("warn", "source %s: checkpoint %s not indexed: %v", src.Name, m.ID, err)
		}
	}
	// The writer's workers outlive a cancelled pull, so an interrupted
	// backup can still be finished as a partial snapshot.
	w, err := s.pool.NewWriterWith(context.WithoutCancel(ctx), pool.SnapshotMeta{Host: h.Name, Source: src.Name, Start: start,
		Labels: map[string]string{"job": strconv.FormatInt(jc.job.ID, 10), "method": src.Method}},
		pool.WriterOptions{Checkpoint: ckpt})
	if err != nil {
		return fail(err)
	}
	// A failed pull discards its snapshot, checkpoints included.
	abort := func() {
		had := w.Checkpointed()
		w.Abort()
		if had {
			s.cat.DeleteSnapshot(context.WithoutCancel(ctx), w.ID())
		}
	}
	opts, err := s.pullOptions(h, src)
	if err != nil {
		abort()
		return fail(err)
	}
	sink := &jobSink{w: w, jc: jc, scrub: scrub}
	pj := &pullers.Job{
		Host: h.Name,
		Source: pullers.Source{Method: src.Method, Name: src.Name, Path: pullPath, Excludes: src.Excludes,
			Options: opts, Secret: secret},
		Sink:     sink,
		Previous: prev,
		Progress: func(pp pullers.Progress) {
			jc.update(func(p *Progress) {
				p.Files, p.Bytes = base.Files+pp.Files, base.Bytes+pp.Bytes
				p.Skipped, p.Errors, p.Path = base.Skipped+pp.Skipped, base.Errors+pp.Errors, pp.Path
			})
		},
	}
	jc.logf("info", "source %s: %s %s", src.Name, src.Method, src.Path)
	pullErr := pl.Pull(ctx, pj)
	if ctx.Err() != nil {
		// Cancelled or shutting down: keep what was pulled as a partial
		// snapshot (the next backup reuses it), if the tree is usable.
		w.RecordError(".", context.Cause(ctx))
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		m, err := w.Finish(fctx)
		if err != nil {
			return nil, context.Cause(ctx)
		}
		s.recordSnapshot(fctx, jc, m)
		jc.logf("warn", "source %s: kept the partial snapshot %s", src.Name, m.ID)
		return m, context.Cause(ctx)
	}
	if pullErr != nil {
		abort()
		return fail(keepPermanent(pullErr, errors.New(scrub(pullErr.Error()))))
	}
	// Trust on first use: the server identity of a successful pull
	// becomes the source's pin.
	s.pinIdentity(ctx, jc, h, src, pl)
	m, err := w.Finish(ctx)
	if err != nil {
		return fail(err)
	}
	if err := s.recordSnapshot(ctx, jc, m); err != nil {
		return fail(err)
	}
	s.cat.PutBackupStatus(ctx, &catalog.BackupStatus{Host: h.Name, Source: src.Name, Status: m.Status,
		Attempt: m.End, LastSuccess: m.End, Duration: m.End.Sub(m.Start), Files: m.Files, Bytes: m.Bytes, BytesNew: m.BytesNew})
	jc.logf("info", "source %s: snapshot %s %s: %d files, %d bytes, %d new, %d errors",
		src.Name, m.ID, m.Status, m.Files, m.Bytes, m.BytesNew, m.ErrorCount)
	return m, nil
}

// adoptCheckpoints indexes the checkpoint manifests of an interrupted job
// (the one a re-run retries) that the catalog missed: the process died
// between writing a checkpoint and indexing it. They are shown as the
// partial snapshots they are, and the newest is the re-run's basis.
func (s *Server) adoptCheckpoints(ctx context.Context, jc *jobCtx, host, source string) {
	ids, err := s.pool.SnapshotIDs(ctx)
	if err != nil {
		return
	}
	rows, err := s.cat.Snapshots(ctx, "") // all hosts: only unknown manifests are read
	if err != nil {
		return
	}
	known := make(map[string]bool, len(rows))
	for _, r := range rows {
		known[r.ID] = true
	}
	want := strconv.FormatInt(jc.job.RetryOf, 10)
	for _, id := range ids {
		if known[id] {
			continue
		}
		m, err := s.pool.Snapshot(ctx, id)
		if err != nil || !m.Checkpoint || m.Host != host || m.Source != source || m.Labels["job"] != want {
			continue
		}
		if err := s.cat.PutSnapshot(ctx, manifestRow(m, jc.job.RetryOf)); err == nil {
			jc.logf("info", "source %s: indexed the partial snapshot %s that interrupted job %s left", source, m.ID, want)
		}
	}
}

func manifestRow(m *pool.Manifest, jobID int64) *catalog.Snapshot {
	return &catalog.Snapshot{ID: m.ID, Host: m.Host, Source: m.Source, Started: m.Start, Finished: m.End,
		Root: m.Root.String(), Status: m.Status, Files: m.Files, Bytes: m.Bytes, BytesNew: m.BytesNew,
		Errors: int64(m.ErrorCount), JobID: jobID}
}

func (s *Server) recordSnapshot(ctx context.Context, jc *jobCtx, m *pool.Manifest) error {
	if err := s.cat.PutSnapshot(ctx, manifestRow(m, jc.job.ID)); err != nil {
		return err
	}
	s.events.publish(Event{Type: "snapshot", JobID: jc.job.ID, Host: m.Host, Data: snapshotBody(manifestRow(m, jc.job.ID))})
	return nil
}

// keepPermanent returns repl, marked permanent when orig was.
func keepPermanent(orig, repl error) error {
	if errors.Is(orig, pullers.ErrPermanent) {
		return permanent{repl}
	}
	return repl
}
