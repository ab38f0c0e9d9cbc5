package appliance

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/appliance/schedule"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/dbdump"
)

// Verification (issue 11): the scheduled pool check re-reads a rotating
// slice of the digest space, so that successive checks cover the whole
// pool; restore tests read sample files of each host's newest snapshot
// through the restore tree and compare them with their recorded digests
// (and load database dumps into a scratch database). Results are kept in
// the settings table, shown by GET /api/v1/verify and in the metrics.
//
// The entry points — (*Server).RunRestoreTests and the check rotation
// used by the "check" job — are plain functions so a cluster can run them
// as singletons.

const (
	settingCheckCursor  = "verify.check.cursor"     // uint64: start of the next slice of the digest space
	settingCheckLast    = "verify.check.last"       // CheckSummary JSON
	settingRestorePfx   = "verify.restore.host."    // + host: RestoreTestResult JSON
	settingRestoreSched = "verify.restore.schedule" // cron; "-" disables
	restoreTestKey      = "pool|restoretest"
	restoreTestKind     = "restoretest"

	// DefaultRestoreTestSchedule is monthly: the 1st at 05:00.
	DefaultRestoreTestSchedule = "0 5 1 * *"
	// DefaultRestoreTestFiles is how many files a restore test reads.
	DefaultRestoreTestFiles = 20
)

func init() { executors[restoreTestKind] = runRestoreTestJob }

// ---- rotating data check ----

// digestPoint maps a digest to its place in the digest space: its first
// 8 bytes as a number. Slices are integer ranges modulo 2^64, so
// successive slices tile the space exactly.
func digestPoint(d pool.Digest) uint64 { return binary.BigEndian.Uint64(d[:8]) }

// inSlice reports whether x is in [from, from+width) modulo 2^64; width
// 0 means the whole space.
func inSlice(x, from, width uint64) bool { return width == 0 || x-from < width }

// sliceWidth is percent of the digest space (0: all of it).
func sliceWidth(percent float64) uint64 {
	if percent <= 0 || percent >= 100 {
		return 0
	}
	return uint64(percent / 100 * math.Pow(2, 64))
}

func fraction(x uint64) float64 { return float64(x) / math.Pow(2, 64) }

// checkRotation returns the selection of the next rotating data check
// (percent of the digest space from the stored cursor) and its slice.
func (s *Server) checkRotation(ctx context.Context, percent float64) (sel func(pool.Digest) bool, from, width uint64) {
	width = sliceWidth(percent)
	if v, ok, err := s.cat.Setting(ctx, settingCheckCursor); err == nil && ok {
		from, _ = strconv.ParseUint(v, 10, 64)
	}
	return func(d pool.Digest) bool { return inSlice(digestPoint(d), from, width) }, from, width
}

// CheckSummary is the outcome of the last pool check, as the API shows it.
type CheckSummary struct {
	Time      time.Time `json:"time"`
	OK        bool      `json:"ok"`
	Summary   string    `json:"summary"`
	ReadData  bool      `json:"read_data"`
	SliceFrom float64   `json:"slice_from"` // the digest-space slice re-read, as fractions
	SliceTo   float64   `json:"slice_to"`
	// Coverage is the fraction of the digest space re-read since the
	// rotation last started over (1 = the whole pool has been re-read).
	Coverage float64 `json:"coverage"`
	// Flaky counts objects that read back wrong once and then verified on
	// a fresh read (pool.CheckReport.Flaky): not corrupt, but a sign of
	// unreliable storage or transport.
	Flaky   int      `json:"flaky"`
	Corrupt []string `json:"corrupt,omitempty"`
	Missing []string `json:"missing,omitempty"`
	// Affected names every snapshot path using a bad object:
	// "host/source@snapshot:path".
	Affected []string `json:"affected,omitempty"`
	// AffectedSnapshots are the snapshot IDs among Affected.
	AffectedSnapshots []string `json:"affected_snapshots,omitempty"`
}

// rotatingCheck runs the scheduled check: structure, plus a data re-read
// of the next slice of the digest space; then it advances the cursor.
func (s *Server) rotatingCheck(ctx context.Context, percent float64) (pool.CheckReport, *CheckSummary, error) {
	sel, from, width := s.checkRotation(ctx, percent)
	rep, err := s.pool.Check(ctx, pool.CheckOptions{ReadData: true, Select: sel})
	if err != nil {
		return rep, nil, err
	}
	prev, _ := s.lastCheckSummary(ctx)
	sum := summarize(rep, s.now())
	sum.ReadData, sum.SliceFrom, sum.SliceTo = true, fraction(from), fraction(from+width)
	sum.Coverage = fraction(width)
	if prev != nil && prev.ReadData && prev.Coverage < 1 && from != 0 {
		sum.Coverage = prev.Coverage + fraction(width)
	}
	if width == 0 || sum.Coverage > 1-1e-9 {
		sum.Coverage = 1
	}
	if width == 0 {
		sum.SliceFrom, sum.SliceTo = 0, 1
	}
	if err := s.cat.SetSetting(ctx, settingCheckCursor, strconv.FormatUint(from+width, 10)); err != nil {
		return rep, nil, err
	}
	return rep, sum, s.storeCheckSummary(ctx, sum)
}

func summarize(rep pool.CheckReport, now time.Time) *CheckSummary {
	sum := &CheckSummary{Time: now, OK: rep.OK(), Summary: rep.String(), Flaky: rep.Flaky}
	for _, d := range rep.Corrupt {
		sum.Corrupt = append(sum.Corrupt, d.String())
	}
	for _, d := range rep.Missing {
		sum.Missing = append(sum.Missing, d.String())
	}
	seen := map[string]bool{}
	for _, u := range rep.Affected {
		sum.Affected = append(sum.Affected, fmt.Sprintf("%s/%s@%s:%s", u.Host, u.Source, u.Snapshot, u.Path))
		if !seen[u.Snapshot] {
			seen[u.Snapshot] = true
			sum.AffectedSnapshots = append(sum.AffectedSnapshots, u.Snapshot)
		}
	}
	sort.Strings(sum.AffectedSnapshots)
	return sum
}

func (s *Server) storeCheckSummary(ctx context.Context, sum *CheckSummary) error {
	b, _ := json.Marshal(sum)
	return s.cat.SetSetting(ctx, settingCheckLast, string(b))
}

func (s *Server) lastCheckSummary(ctx context.Context) (*CheckSummary, error) {
	v, ok, err := s.cat.Setting(ctx, settingCheckLast)
	if err != nil || !ok {
		return nil, err
	}
	var sum CheckSummary
	if err := json.Unmarshal([]byte(v), &sum); err != nil {
		return nil, err
	}
	return &sum, nil
}

// ---- restore tests ----

// RestoreTestParams are the parameters of a restore-test job.
type RestoreTestParams struct {
	Host  string `json:"host,omitempty"`  // "" = every enabled host
	Files int    `json:"files,omitempty"` // sample size; default 20
}

// RestoreTestResult is one host's last restore test.
type RestoreTestResult struct {
	Host    string    `json:"host"`
	Time    time.Time `json:"time"`
	OK      bool      `json:"ok"`
	Files   int       `json:"files"`            // files read and compared
	Bytes   int64     `json:"bytes"`            // their size
	Dumps   int       `json:"dumps"`            // database dumps loaded and compared
	Sources []string  `json:"sources"`          // "source@snapshot" tested
	Errors  []string  `json:"errors,omitempty"` // what failed, by path
}

// RunRestoreTests tests every enabled host (or the one named), records
// each result and returns them. An error means the tests could not run.
func (s *Server) RunRestoreTests(ctx context.Context, host string, files int) ([]RestoreTestResult, error) {
	if files <= 0 {
		files = DefaultRestoreTestFiles
	}
	hosts, err := s.cat.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	var out []RestoreTestResult
	found := false
	for i := range hosts {
		h := &hosts[i]
		if host != "" && h.Name != host || host == "" && !h.Enabled {
			continue
		}
		found = true
		res := s.restoreTestHost(ctx, h, files)
		if err := ctx.Err(); err != nil {
			return out, err
		}
		b, _ := json.Marshal(res)
		if err := s.cat.SetSetting(ctx, settingRestorePfx+h.Name, string(b)); err != nil {
			return out, err
		}
		out = append(out, res)
	}
	if host != "" && !found {
		return nil, notFound("no host %q", host)
	}
	return out, nil
}

// restoreTestHost samples files of the newest complete snapshot of each
// of the host's sources and reads them through the restore tree.
func (s *Server) restoreTestHost(ctx context.Context, h *catalog.Host, files int) RestoreTestResult {
	res := RestoreTestResult{Host: h.Name, Time: s.now(), Sources: []string{}}
	fail := func(format string, args ...any) { res.Errors = append(res.Errors, fmt.Sprintf(format, args...)) }
	srcs, err := s.cat.Sources(ctx, h.ID)
	if err != nil {
		fail("sources: %v", err)
		return res
	}
	s.refreshTreeNow()
	fsys := s.tree()
	tested := 0
	for i := range srcs {
		src := &srcs[i]
		sn, err := s.cat.LastSnapshot(ctx, h.Name, src.Name, true)
		if errors.Is(err, catalog.ErrNotFound) {
			continue
		}
		if err != nil {
			fail("%s: %v", src.Name, err)
			continue
		}
		m, err := s.pool.Snapshot(ctx, sn.ID)
		if err != nil {
			fail("%s@%s: %v", src.Name, sn.ID, err)
			continue
		}
		tested++
		res.Sources = append(res.Sources, src.Name+"@"+sn.ID)
		sample, err := s.sampleFiles(ctx, m, files)
		if err != nil {
			fail("%s@%s: %v", src.Name, sn.ID, err)
			continue
		}
		tfs, treeDir := snapshotInTree(fsys, m)
		if tfs == nil {
			tfs, treeDir = s.pool.SnapshotFS(ctx, m), "."
		}
		for _, f := range sample {
			if err := ctx.Err(); err != nil {
				fail("%v", err)
				return res
			}
			p := path.Join(treeDir, f.path)
			if err := s.verifyTreeFile(ctx, tfs, p, &f.e); err != nil {
				fail("%s: %v", p, err)
				continue
			}
			res.Files++
			res.Bytes += f.e.Size
		}
		if isDumpMethod(src.Method) {
			n, errs := s.dumpRestoreTest(ctx, h, src, m)
			res.Dumps += n
			res.Errors = append(res.Errors, errs...)
		}
	}
	if tested == 0 {
		fail("no complete snapshot to test")
	}
	res.OK = len(res.Errors) == 0
	return res
}

// snapshotInTree finds snapshot m in the restore tree: at
// <host>/<time>/<source>, or <source>~<id> when two snapshots of a source
// started in one second. It checks that the directory found is m's root.
func snapshotInTree(fsys fs.FS, m *pool.Manifest) (fs.FS, string) {
	dir := path.Join(m.Host, m.Start.UTC().Format(pool.SnapshotTimeFormat))
	for _, name := range []string{m.Source + "~" + m.ID, m.Source} {
		p := path.Join(dir, name)
		fi, err := fs.Stat(fsys, p)
		if err != nil {
			continue
		}
		if e, ok := fi.Sys().(*pool.Entry); ok && e.Subtree == m.Root {
			return fsys, p
		}
	}
	return nil, ""
}

// refreshTreeNow makes the shared restore tree see new snapshots.
func (s *Server) refreshTreeNow() {
	if r, ok := s.tree().(interface{ Refresh() }); ok {
		r.Refresh()
	}
}

func (s *Server) verifyTreeFile(ctx context.Context, fsys fs.FS, name string, e *pool.Entry) error {
	f, err := fsys.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return s.pool.VerifyContent(ctx, e, f)
}

type sampled struct {
	path string
	e    pool.Entry
}

// sampleFiles picks up to n regular files of the snapshot at random
// (reservoir sampling over one walk of its trees).
func (s *Server) sampleFiles(ctx context.Context, m *pool.Manifest, n int) ([]sampled, error) {
	var out []sampled
	seen := 0
	var walk func(d pool.Digest, dir string) error
	walk = func(d pool.Digest, dir string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		es, err := s.pool.ReadTree(ctx, d)
		if err != nil {
			return err
		}
		for _, e := range es {
			p := path.Join(dir, e.Name)
			switch e.Type {
			case pool.TypeDir:
				if err := walk(e.Subtree, p); err != nil {
					return err
				}
			case pool.TypeFile:
				seen++
				if len(out) < n {
					out = append(out, sampled{p, e})
				} else if j := rand.IntN(seen); j < n {
					out[j] = sampled{p, e}
				}
			}
		}
		return nil
	}
	if err := walk(m.Root, ""); err != nil {
		return nil, err
	}
	return out, nil
}

func isDumpMethod(m string) bool { return m == "postgres" || m == "mariadb" || m == "mysql" }

// dumpVerifier is dbdump's restore test.
type dumpVerifier interface {
	Verify(ctx context.Context, host string, target pullers.Source, dump io.Reader, file string, recorded []byte, scratch string) (*dbdump.VerifyResult, error)
}

// dumpRestoreTest loads each dump of the snapshot that has recorded
// sums into a scratch database on the source's server and compares the
// tables' row counts and checksums.
func (s *Server) dumpRestoreTest(ctx context.Context, h *catalog.Host, src *catalog.Source, m *pool.Manifest) (int, []string) {
	es, err := s.pool.ReadTree(ctx, m.Root)
	if err != nil {
		return 0, []string{fmt.Sprintf("%s: %v", src.Name, err)}
	}
	pl, err := pullers.Get(src.Method)
	if err != nil {
		return 0, []string{fmt.Sprintf("%s: %v", src.Name, err)}
	}
	v, ok := pl.(dumpVerifier)
	if !ok {
		return 0, nil
	}
	ps, _, err := s.pullerSource(h, src)
	if err != nil {
		return 0, []string{fmt.Sprintf("%s: %v", src.Name, err)}
	}
	names := map[string]*pool.Entry{}
	for i := range es {
		names[es[i].Name] = &es[i]
	}
	var errs []string
	n := 0
	for _, e := range es {
		db, ok := strings.CutSuffix(e.Name, dbdump.SumsSuffix)
		if !ok || e.Type != pool.TypeFile {
			continue
		}
		var dump *pool.Entry
		for name, de := range names {
			if strings.HasPrefix(name, db+".") && name != e.Name && de.Type == pool.TypeFile {
				dump = de
			}
		}
		if dump == nil {
			errs = append(errs, fmt.Sprintf("%s: %s has no dump next to it", src.Name, e.Name))
			continue
		}
		sums, err := s.pool.OpenContent(ctx, &e)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s/%s: %v", src.Name, e.Name, err))
			continue
		}
		recorded, err := io.ReadAll(sums)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s/%s: %v", src.Name, e.Name, err))
			continue
		}
		r, err := s.pool.OpenContent(ctx, dump)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s/%s: %v", src.Name, dump.Name, err))
			continue
		}
		scratch := fmt.Sprintf("cairn_restoretest_%d", s.now().UnixNano())
		vr, err := v.Verify(ctx, h.Name, ps, r, dump.Name, recorded, scratch)
		switch {
		case err != nil:
			errs = append(errs, fmt.Sprintf("%s/%s: restore test: %v", src.Name, dump.Name, err))
		case !vr.OK():
			errs = append(errs, fmt.Sprintf("%s/%s: restored tables differ: %s", src.Name, dump.Name, strings.Join(vr.Mismatches, "; ")))
		default:
			n++
		}
	}
	return n, errs
}

func runRestoreTestJob(ctx context.Context, jc *jobCtx) error {
	var p RestoreTestParams
	if len(jc.job.Params) > 0 {
		if err := json.Unmarshal(jc.job.Params, &p); err != nil {
			return fmt.Errorf("job parameters: %w", err)
		}
	}
	jc.update(func(pr *Progress) { pr.Phase = "restore testing" })
	res, err := jc.s.RunRestoreTests(ctx, p.Host, p.Files)
	if err != nil {
		return err
	}
	jc.update(func(pr *Progress) { pr.Phase, pr.Result = "done", res })
	var failed []string
	for _, r := range res {
		if r.OK {
			jc.logf("info", "restore test %s: %d files (%d bytes) and %d dumps match", r.Host, r.Files, r.Bytes, r.Dumps)
		} else {
			failed = append(failed, r.Host)
			jc.logf("error", "restore test %s failed: %s", r.Host, strings.Join(r.Errors, "; "))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("restore test failed for %s", strings.Join(failed, ", "))
	}
	return nil
}

// loadRestoreTestSchedule puts the restore tests on the scheduler
// (settings verify.restore.schedule, default monthly; "-" disables).
func (s *Server) loadRestoreTestSchedule(ctx context.Context) error {
	c := DefaultRestoreTestSchedule
	if v, ok, err := s.cat.Setting(ctx, settingRestoreSched); err != nil {
		return err
	} else if ok {
		c = v
	}
	if c == "-" {
		s.jobs.sched.Remove(restoreTestKey)
		return nil
	}
	cron, err := schedule.ParseCron(c, time.Local)
	if err != nil {
		return fmt.Errorf("restore test schedule: %w", err)
	}
	var last time.Time
	if v, ok, err := s.cat.Setting(ctx, "schedule.last."+restoreTestKey); err == nil && ok {
		last, _ = time.Parse(time.RFC3339Nano, v)
	}
	if last.IsZero() {
		last = s.now()
	}
	return s.jobs.sched.Set(schedule.Source{Key: restoreTestKey, Cron: cron, LastRun: last,
		Payload: schedPayload{kind: restoreTestKind, params: RestoreTestParams{}}})
}

// ---- API ----

// VerifyBody is GET /api/v1/verify.
type VerifyBody struct {
	Check               *CheckSummary       `json:"check,omitempty"`
	RestoreTests        []RestoreTestResult `json:"restore_tests"`
	RestoreTestSchedule string              `json:"restore_test_schedule"`
}

func (s *Server) restoreResults(ctx context.Context) ([]RestoreTestResult, error) {
	hosts, err := s.cat.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	out := []RestoreTestResult{}
	for _, h := range hosts {
		v, ok, err := s.cat.Setting(ctx, settingRestorePfx+h.Name)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		var r RestoreTestResult
		if json.Unmarshal([]byte(v), &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *Server) handleVerifyGet(r *http.Request, p *principal) (any, error) {
	ctx := r.Context()
	sum, err := s.lastCheckSummary(ctx)
	if err != nil {
		return nil, err
	}
	res, err := s.restoreResults(ctx)
	if err != nil {
		return nil, err
	}
	sched := DefaultRestoreTestSchedule
	if v, ok, _ := s.cat.Setting(ctx, settingRestoreSched); ok {
		sched = v
	}
	return VerifyBody{Check: sum, RestoreTests: res, RestoreTestSchedule: sched}, nil
}

// handleRestoreTestRun runs restore tests now and answers with them.
func (s *Server) handleRestoreTestRun(r *http.Request, p *principal) (any, error) {
	var in RestoreTestParams
	if r.ContentLength != 0 {
		if err := decode(r, &in); err != nil {
			return nil, err
		}
	}
	if in.Files < 0 || in.Files > 10000 {
		return nil, badRequest("files %d: want 1–10000", in.Files)
	}
	return s.RunRestoreTests(r.Context(), in.Host, in.Files)
}

// handleRestoreTestSchedule sets the restore-test schedule.
func (s *Server) handleRestoreTestSchedule(r *http.Request, p *principal) (any, error) {
	var in struct {
		Schedule string `json:"schedule"`
	}
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.Schedule != "-" {
		if _, err := schedule.ParseCron(in.Schedule, time.Local); err != nil {
			return nil, badRequest("schedule %q: %v", in.Schedule, err)
		}
	}
	if err := s.cat.SetSetting(r.Context(), settingRestoreSched, in.Schedule); err != nil {
		return nil, err
	}
	if err := s.loadRestoreTestSchedule(r.Context()); err != nil {
		return nil, err
	}
	return s.handleVerifyGet(r, p)
}

// runPoolCheck runs a check job's pool check: the rotating slice when
// cp.Rotate, else as asked; the outcome is kept for GET /api/v1/verify
// and the metrics.
func (s *Server) runPoolCheck(ctx context.Context, cp CheckParams) (pool.CheckReport, error) {
	if cp.Rotate && cp.ReadData {
		rep, _, err := s.rotatingCheck(ctx, cp.Percent)
		return rep, err
	}
	rep, err := s.pool.Check(ctx, pool.CheckOptions{ReadData: cp.ReadData, Percent: cp.Percent})
	if err != nil {
		return rep, err
	}
	sum := summarize(rep, s.now())
	sum.ReadData = cp.ReadData
	if cp.ReadData && (cp.Percent <= 0 || cp.Percent >= 100) {
		sum.SliceTo, sum.Coverage = 1, 1
	}
	return rep, s.storeCheckSummary(ctx, sum)
}
