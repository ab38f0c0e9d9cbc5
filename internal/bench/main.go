package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/internal/bench/corpus"
)

type options struct {
	out, work, tools, cairnBin string
	runs                       int
	seed                       uint64
	quick, flat, genOnly       bool
	render                     string
	peers, scale               bool
	scaleFiles, pullRuns       int
	results                    string
	compareOld, compareNew     string
	only                       string
	transports                 string
	shared                     bool
	mergeScale                 string
	merge                      string
	load                       string
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "report to write")
	flag.StringVar(&o.work, "work", "/var/tmp/cairn-bench", "work directory (corpus, repositories); outside the repository")
	flag.StringVar(&o.tools, "tools", "cairn,restic,borg,rsync", "comma-separated tools to run")
	flag.StringVar(&o.cairnBin, "cairn", "bin/cairn", "cairn binary")
	flag.IntVar(&o.runs, "runs", 3, "runs per scenario")
	flag.Uint64Var(&o.seed, "seed", 1, "corpus seed")
	flag.BoolVar(&o.quick, "quick", os.Getenv("BENCH_QUICK") == "1", "≈200 MiB corpus (also BENCH_QUICK=1)")
	flag.BoolVar(&o.flat, "flat", true, "run the flat-RSS check (many small files)")
	flag.BoolVar(&o.genOnly, "gen-only", false, "only generate the corpora (and reuse them later)")
	flag.StringVar(&o.render, "render", "", "only render -out from a saved results JSON")
	flag.BoolVar(&o.peers, "peers", true, "run the peer scenarios (rsync, SFTP, SMB, FTP, dump, FUSE, WebDAV) against testenv servers")
	flag.BoolVar(&o.scale, "scale", true, "run the scale part (a -scale-files small-file tree); off in quick mode unless given or BENCH_SCALE=1")
	flag.IntVar(&o.scaleFiles, "scale-files", 1_000_000, "files in the scale tree")
	flag.IntVar(&o.pullRuns, "pull-runs", 0, "runs of each peer scenario (0: -runs, or 1 in quick mode)")
	flag.StringVar(&o.results, "results", "bench/results.json", "machine-readable results to write (all figures)")
	flag.StringVar(&o.compareOld, "compare-old", "", "with -compare-new: print the deltas between two results files and exit")
	flag.StringVar(&o.compareNew, "compare-new", "", "see -compare-old")
	flag.StringVar(&o.mergeScale, "merge-scale", "", "take the scale part's figures from this results file (a separate -only scale run) instead of running it")
	flag.BoolVar(&o.shared, "shared", false, "say prominently in the report that the machine was shared with other work")
	flag.StringVar(&o.merge, "merge", "", "with -render: take the peer figures (pairs, their results, dump dedup, verification notes) of this results file (an -only run) over the rendered file's, and save the merge to -results")
	flag.StringVar(&o.load, "load", "bench/load.json", "figures of the load test (internal/torture TestLoad, make torture) to report; a missing file is skipped")
	flag.StringVar(&o.transports, "transports", "", "with the pulls part: run only these transports, comma-separated of rsync daemon, rsync ssh, sftp, smb, ftp (sftp's no-change peer is rsync ssh's)")
	flag.StringVar(&o.only, "only", "", "run only these peer parts: comma-separated of pulls, dump, fuse, webdav, scale")
	flag.Parse()
	scaleSet := os.Getenv("BENCH_SCALE") == "1"
	flag.Visit(func(f *flag.Flag) { scaleSet = scaleSet || f.Name == "scale" })
	if o.quick && !scaleSet {
		o.scale = false // the 1M-file part does not fit quick mode's 10 minutes
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, log, o); err != nil {
		log.Error("bench failed", "err", err)
		os.Exit(1)
	}
}

// Scenario names, in report order.
const (
	scFirst    = "first"
	scNoChange = "nochange"
	scMutated  = "mutated"
	scRestore  = "restore"
)

var scenarios = []string{scFirst, scNoChange, scMutated, scRestore}

// mutateSeed is the same for every run, so every run sees the same change.
const mutateSeed = 1000

type key struct{ scenario, tool string }

type result struct {
	Scenario, Tool string
	Samples        []sample
	Errs           []string
}

type flatResult struct {
	Tool   string
	Files  int
	Bytes  int64
	Wall   time.Duration
	MaxRSS int64
	Err    string
}

type bench struct {
	o     options
	log   *slog.Logger
	tools []tool
	drv   string // benchdrv binary
	plan  *corpus.Plan
	src   string
	stamp string
	rec   record
}

// record is everything the report is made from. It is saved as JSON next
// to the corpus so a report can be rendered again (-render) and runs compared.
type record struct {
	Quick        bool
	Runs         int
	Tools        []string
	Versions     map[string]string
	GoVersion    string
	Info         machineInfo
	Load0, Load1 string
	Start        time.Time
	Took         time.Duration
	Corpus       corpus.Config
	Mutation     *mutation
	GenTime      time.Duration
	Results      []*result
	Flat         []flatResult
	FlatSizes    []int
	Verify       map[string][]string // tool → restore verification notes
	Logs         string
	// Peer scenarios (pulls, dump, FUSE, WebDAV; results in Results).
	Pairs      []pairSpec
	Dumps      []dumpResult
	ScaleSizes []int
	Skipped    []string        // scenarios not run, and why
	Images     *imagesRecord   `json:",omitempty"` // block images (images.go)
	ScaleOut   *scaleOutRecord `json:",omitempty"` // scale-out fleet (scaleout.go)
	Shared     bool            // -shared: other work ran on the machine meanwhile
	// ScaleFrom names the run the scale figures were merged from (-merge-scale).
	ScaleFrom string `json:",omitempty"`
	// MergedFrom describes each run whose peer figures were merged in
	// (-merge): which scenarios came from it and its conditions.
	MergedFrom []string `json:",omitempty"`
	// Load holds the figures of issue 15's load test (load.go).
	Load *loadFigures `json:",omitempty"`
}

// mutation counts what corpus.Mutate did.
type mutation struct{ Rewritten, Patched, Deleted, Added int }

// res returns the result of tool in scenario sc, or nil.
func (b *bench) res(sc, tool string) *result {
	for _, r := range b.rec.Results {
		if r.Scenario == sc && r.Tool == tool {
			return r
		}
	}
	return nil
}

func run(ctx context.Context, log *slog.Logger, o options) error {
	b := &bench{o: o, log: log}
	if o.compareOld != "" || o.compareNew != "" {
		return compareResults(os.Stdout, o.compareOld, o.compareNew)
	}
	if o.render != "" {
		data, err := os.ReadFile(o.render)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &b.rec); err != nil {
			return fmt.Errorf("%s: %w", o.render, err)
		}
		if b.rec.Load == nil { // saved before the load figures were part of the results
			if b.rec.Load, err = readLoad(o.load); err != nil {
				return err
			}
		}
		if o.mergeScale != "" || o.merge != "" {
			// Render again with the scale part or peer figures of a
			// separate run, and save the merged figures to -results.
			if o.mergeScale != "" {
				if err := b.mergeScale(o.mergeScale); err != nil {
					return err
				}
			}
			if o.merge != "" {
				other, err := loadRecord(o.merge)
				if err != nil {
					return err
				}
				if err := b.rec.mergePeers(*other); err != nil {
					return fmt.Errorf("-merge %s: %w", o.merge, err)
				}
			}
			data, err := json.MarshalIndent(&b.rec, "", "  ")
			if err != nil {
				return err
			}
			if err := os.WriteFile(o.results, data, 0o644); err != nil {
				return err
			}
		}
		return b.writeReport(o.out)
	}
	b.rec = record{Quick: o.quick, Runs: o.runs, Shared: o.shared, Versions: map[string]string{}, Verify: map[string][]string{},
		Start: time.Now(), Load0: loadavg(), GoVersion: firstLine(ctx, "go", "version")}
	if !filepath.IsAbs(o.work) {
		return fmt.Errorf("-work %s: must be absolute", o.work)
	}
	if err := b.setupTools(ctx); err != nil {
		return err
	}
	for _, t := range b.tools {
		b.rec.Tools = append(b.rec.Tools, t.Name())
		b.rec.Versions[t.Name()] = t.Version(ctx)
	}
	b.rec.Info = machine(ctx, o.work)
	load, err := readLoad(o.load)
	if err != nil {
		return err
	}
	b.rec.Load = load
	b.rec.Logs = filepath.Join(o.work, "logs")
	if err := os.MkdirAll(b.rec.Logs, 0o755); err != nil {
		return err
	}
	cfg, name := corpus.Full(o.seed), "full"
	if o.quick {
		cfg, name = corpus.Quick(o.seed), "quick"
	}
	b.rec.Corpus = cfg
	b.rec.FlatSizes = b.flatSizes()
	b.plan = corpus.NewPlan(cfg)
	b.src = filepath.Join(o.work, "corpus-"+name, "src")
	b.stamp = filepath.Join(o.work, "corpus-"+name+".stamp")
	d, err := b.ensureCorpus(ctx, b.plan, b.src, b.stamp)
	if err != nil {
		return err
	}
	b.rec.GenTime = d
	if o.genOnly {
		sizes := b.flatSizes()
		if o.scale {
			sizes = append(sizes, b.scaleSizes()...)
		}
		for _, n := range sizes {
			p := corpus.NewPlan(corpus.SmallOnly(o.seed, n))
			if _, err := b.ensureCorpus(ctx, p, b.flatDir(n), b.flatDir(n)+".stamp"); err != nil {
				return err
			}
		}
		return nil
	}
	for r := 1; r <= o.runs; r++ {
		for _, t := range b.tools {
			if err := b.cycle(ctx, t, r); err != nil {
				return err
			}
		}
	}
	if o.flat {
		if err := b.flatCheck(ctx); err != nil {
			return err
		}
	}
	// From here an interrupt (Ctrl-C, SIGTERM) still saves and reports
	// what was measured; the unfinished part is listed as not run.
	if o.peers {
		if err := b.peerScenarios(ctx); err != nil && ctx.Err() == nil {
			return err
		}
	}
	if err := b.runImages(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	if err := b.runScaleOut(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	if o.mergeScale != "" {
		if err := b.mergeScale(o.mergeScale); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		b.rec.Skipped = append(b.rec.Skipped, "the run was interrupted after "+time.Since(b.rec.Start).Round(time.Second).String()+": the scenarios after the last figures above did not run")
	}
	b.rec.Load1 = loadavg()
	b.rec.Took = time.Since(b.rec.Start)
	data, err := json.MarshalIndent(&b.rec, "", "  ")
	if err != nil {
		return err
	}
	saved := filepath.Join(o.work, savedName(name, o.only))
	if err := os.WriteFile(saved, data, 0o644); err != nil {
		return err
	}
	b.log.Info("results saved", "file", saved)
	if o.results != "" {
		if err := os.MkdirAll(filepath.Dir(o.results), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(o.results, data, 0o644); err != nil {
			return err
		}
		b.log.Info("results saved", "file", o.results)
	}
	return b.writeReport(o.out)
}

// savedName is the work dir's results file of a run: results-full.json,
// results-quick.json, or for an -only run results-full-only-pulls.json
// and the like, so a partial run does not overwrite the figures of the
// whole run it is to be merged into.
func savedName(corpusName, only string) string {
	if only != "" {
		corpusName += "-only-" + strings.NewReplacer(",", "-", " ", "").Replace(only)
	}
	return "results-" + corpusName + ".json"
}

func (b *bench) setupTools(ctx context.Context) error {
	var missing []string
	for _, n := range strings.Split(b.o.tools, ",") {
		switch n = strings.TrimSpace(n); n {
		case "cairn":
			bin, err := filepath.Abs(b.o.cairnBin)
			if err != nil {
				return err
			}
			// Others may rebuild bin/cairn while we run; measure one fixed copy.
			data, err := os.ReadFile(bin)
			if err != nil {
				return fmt.Errorf("cairn binary: %w (run `make build`)", err)
			}
			cp := filepath.Join(b.o.work, "bin", "cairn")
			if err := os.MkdirAll(filepath.Dir(cp), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(cp+".tmp", data, 0o755); err != nil {
				return err
			}
			if err := os.Rename(cp+".tmp", cp); err != nil {
				return err
			}
			b.tools = append(b.tools, cairn{bin: cp})
		case "restic":
			b.tools = append(b.tools, restic{})
		case "borg":
			b.tools = append(b.tools, borg{})
		case "rsync":
			b.tools = append(b.tools, rsync{})
		case "":
		default:
			return fmt.Errorf("-tools: unknown tool %q", n)
		}
		pkg := map[string]string{"restic": "restic", "borg": "borgbackup", "rsync": "rsync"}[n]
		if _, err := exec.LookPath(n); pkg != "" && err != nil {
			missing = append(missing, pkg)
		}
	}
	if _, err := os.Stat(timeBin); err != nil {
		missing = append(missing, "time")
	}
	if len(missing) == 0 {
		return nil
	}
	args := append([]string{"install", "-y", "--no-install-recommends"}, missing...)
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing tools; install them with: sudo apt-get %s", strings.Join(args, " "))
	}
	b.log.Info("installing", "packages", missing)
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if err := runQuiet(ctx, cmd); err != nil {
		return fmt.Errorf("installing %v: %w", missing, err)
	}
	return nil
}

// ensureCorpus generates p at src unless the stamp says it is already there,
// then reads it into the page cache. It returns the generation time (zero if
// reused).
func (b *bench) ensureCorpus(ctx context.Context, p *corpus.Plan, src, stamp string) (time.Duration, error) {
	var d time.Duration
	if corpus.CheckStamp(stamp, p) != nil {
		st := p.Stats()
		b.log.Info("generating corpus", "dir", src, "files", st.Files, "bytes", st.Bytes)
		if err := os.RemoveAll(src); err != nil {
			return 0, err
		}
		start := time.Now()
		if err := corpus.Generate(ctx, src, p); err != nil {
			return 0, err
		}
		d = time.Since(start)
		if err := corpus.WriteStamp(stamp, p); err != nil {
			return 0, err
		}
		b.log.Info("generated", "took", d.Round(time.Millisecond))
	} else {
		b.log.Info("reusing corpus", "dir", src)
	}
	n, bytes, err := warm(src)
	b.log.Info("warmed", "files", n, "bytes", bytes)
	return d, err
}

func (b *bench) record(k key, s sample, err error) {
	r := b.res(k.scenario, k.tool)
	if r == nil {
		r = &result{Scenario: k.scenario, Tool: k.tool}
		b.rec.Results = append(b.rec.Results, r)
	}
	if err != nil {
		r.Errs = append(r.Errs, err.Error())
		b.log.Error("scenario failed", "tool", k.tool, "scenario", k.scenario, "err", err)
		return
	}
	r.Samples = append(r.Samples, s)
	b.log.Info("measured", "tool", k.tool, "scenario", k.scenario, "wall", s.Wall.Round(time.Millisecond),
		"cpu", s.CPU.Round(time.Millisecond), "rss_mib", s.MaxRSS>>20, "stored_mib", s.Stored>>20, "bg_cores", fmt.Sprintf("%.2f", s.Others),
		"received_kib", s.Received>>10)
}

// cycle runs every scenario once for t, from an empty repository and the
// pristine corpus, and leaves the corpus pristine again.
func (b *bench) cycle(ctx context.Context, t tool, run int) (err error) {
	name := t.Name()
	repo := filepath.Join(b.o.work, "repo-"+name)
	state := filepath.Join(b.o.work, "state-"+name)
	dst := filepath.Join(b.o.work, "restore-"+name)
	logPath := filepath.Join(b.rec.Logs, fmt.Sprintf("%s-run%d.log", name, run))
	for _, d := range []string{repo, state, dst} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	defer func() {
		for _, d := range []string{repo, state, dst} {
			if rerr := os.RemoveAll(d); err == nil {
				err = rerr
			}
		}
	}()
	if err := os.MkdirAll(state, 0o755); err != nil {
		return err
	}
	b.log.Info("cycle", "tool", name, "run", run)
	if err := t.Init(ctx, repo, state); err != nil {
		b.record(key{scFirst, name}, sample{}, err)
		return ctx.Err()
	}
	var prev int64
	backup := func(sc string) bool {
		s, err := b.measureCmd(ctx, t.Backup(ctx, repo, state, b.src, sc), logPath)
		if err == nil {
			s.Stored, s.StoredAlloc, s.Files, err = du(repo)
			s.Growth, prev = s.Stored-prev, s.Stored
		}
		b.record(key{sc, name}, s, err)
		return err == nil
	}
	if !backup(scFirst) || !backup(scNoChange) || name == "rsync" {
		return ctx.Err()
	}

	// Mutate in place; the stamp goes first so an interrupted run regenerates.
	if err := os.Remove(b.stamp); err != nil {
		return err
	}
	ch, err := corpus.Mutate(ctx, b.src, mutateSeed)
	if err != nil {
		return err
	}
	b.rec.Mutation = &mutation{len(ch.Rewritten), len(ch.Patched), len(ch.Deleted), len(ch.Added)}
	defer func() {
		if rerr := corpus.Revert(context.WithoutCancel(ctx), b.src, b.plan, ch); rerr != nil {
			err = errors.Join(err, rerr)
			return
		}
		if werr := corpus.WriteStamp(b.stamp, b.plan); err == nil {
			err = werr
		}
		if _, _, werr := warm(b.src); err == nil {
			err = werr
		}
	}()
	if _, _, err := warm(b.src); err != nil {
		return err
	}
	if !backup(scMutated) {
		return ctx.Err()
	}

	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	cmd, root := t.Restore(ctx, repo, state, dst, b.src, scMutated)
	s, err := b.measureCmd(ctx, cmd, logPath)
	b.record(key{scRestore, name}, s, err)
	if err == nil {
		n, verr := compareTrees(b.src, root)
		note := fmt.Sprintf("run %d: restored tree identical to the source (%d files, contents and mtimes)", run, n)
		if verr != nil {
			note = fmt.Sprintf("run %d: NOT identical: %v", run, verr)
			b.log.Error("restore verification failed", "tool", name, "err", verr)
		}
		b.rec.Verify[name] = append(b.rec.Verify[name], note)
	}
	return ctx.Err()
}

// measureCmd measures cmd and the CPU other processes used meanwhile.
func (b *bench) measureCmd(ctx context.Context, cmd *exec.Cmd, logPath string) (sample, error) {
	syscall.Sync() // don't charge the previous step's writeback to this one
	before, busy0 := processCPU(), busyJiffies()
	s, err := measure(ctx, cmd, logPath)
	if err == nil && s.Wall > 0 {
		// Per-process deltas overcount (a reaped child's whole life lands
		// in its parent's cutime); system busy time includes kernel work
		// done for the child. Take the smaller.
		busy := time.Duration(busyJiffies()-busy0) * 10 * time.Millisecond // USER_HZ = 100
		others := min(othersCPU(before, processCPU()), max(0, busy-s.CPU))
		s.Others = others.Seconds() / s.Wall.Seconds()
	}
	return s, err
}

// flatCheck snapshots a small-files-only tree at two sizes (×10 files) and
// records peak RSS, for Cairn and restic as a reference.
func (b *bench) flatCheck(ctx context.Context) error {
	var tools []tool
	for _, t := range b.tools {
		if t.Name() == "cairn" || t.Name() == "restic" {
			tools = append(tools, t)
		}
	}
	if len(tools) == 0 {
		return nil
	}
	for _, n := range b.flatSizes() {
		p := corpus.NewPlan(corpus.SmallOnly(b.o.seed, n))
		src := b.flatDir(n)
		if _, err := b.ensureCorpus(ctx, p, src, src+".stamp"); err != nil {
			return err
		}
		for _, t := range tools {
			name := t.Name()
			repo := filepath.Join(b.o.work, "repo-flat-"+name)
			state := filepath.Join(b.o.work, "state-flat-"+name)
			os.RemoveAll(repo)
			os.RemoveAll(state)
			if err := os.MkdirAll(state, 0o755); err != nil {
				return err
			}
			fr := flatResult{Tool: name, Files: n, Bytes: p.Stats().Bytes}
			err := t.Init(ctx, repo, state)
			if err == nil {
				var s sample
				s, err = b.measureCmd(ctx, t.Backup(ctx, repo, state, src, "flat"), filepath.Join(b.rec.Logs, fmt.Sprintf("flat-%s-%d.log", name, n)))
				fr.Wall, fr.MaxRSS = s.Wall, s.MaxRSS
			}
			if err != nil {
				fr.Err = err.Error()
			}
			b.log.Info("flat", "tool", name, "files", n, "wall", fr.Wall.Round(time.Millisecond), "rss_mib", fr.MaxRSS>>20, "err", fr.Err)
			b.rec.Flat = append(b.rec.Flat, fr)
			os.RemoveAll(repo)
			os.RemoveAll(state)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	return nil
}

func (b *bench) flatSizes() []int {
	if b.o.quick {
		return []int{5_000, 50_000}
	}
	return []int{50_000, 500_000}
}

func (b *bench) flatDir(n int) string { return filepath.Join(b.o.work, fmt.Sprintf("flat-%d", n)) }
