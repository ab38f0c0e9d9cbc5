package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/local"
)

func init() {
	register(&command{name: "snapshot", short: "create and list snapshots in a pool (create, ls)", run: runSnapshot})
}

func runSnapshot(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(os.Stderr, "usage: cairn snapshot create --pool P --host NAME [--source NAME] [--exclude PAT]... [--one-file-system] [--json] SRC\n"+
			"       cairn snapshot ls --pool P [--host H] [--source S] [--json]\n")
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "create":
		return runSnapshotCreate(ctx, args[1:])
	case "ls", "list":
		return runSnapshotLs(ctx, args[1:])
	}
	return fmt.Errorf("unknown subcommand %q (want create or ls)", args[0])
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// snapshotResult is what `snapshot create --json` prints.
type snapshotResult struct {
	*pool.Manifest
	Skipped  int64   `json:"skipped"`
	Previous string  `json:"previous,omitempty"`
	Seconds  float64 `json:"seconds"`
}

func runSnapshotCreate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("snapshot create", flag.ContinueOnError)
	pf := addPoolFlags(fs)
	host := fs.String("host", "", "host name the snapshot is filed under (required)")
	source := fs.String("source", "", "source name within the host (default: the base name of SRC)")
	var excludes stringList
	fs.Var(&excludes, "exclude", "glob pattern relative to SRC to leave out (repeatable)")
	oneFS := fs.Bool("one-file-system", false, "do not descend into other file systems")
	asJSON := fs.Bool("json", false, "print the snapshot manifest and stats as JSON instead of its ID")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: cairn snapshot create --pool P --host NAME [--source NAME] SRC\n\n"+
			"Backs up the local directory SRC into the pool and prints the new snapshot's ID.\n"+
			"Files unchanged (size and mtime) since the previous snapshot of the same host and\n"+
			"source are not read again. Files that cannot be read make the snapshot partial:\n"+
			"it is kept, a warning is printed and the exit status stays 0.\n\n")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *host == "" {
		fs.Usage()
		return errUsage
	}
	src, err := filepath.Abs(pos[0])
	if err != nil {
		return err
	}
	if st, err := os.Stat(src); err != nil {
		return fmt.Errorf("source %s: %w", src, errors.Unwrap(err))
	} else if !st.IsDir() {
		return fmt.Errorf("source %s: not a directory", src)
	}
	if *source == "" {
		*source = sourceName(src)
	}
	if !pool.ValidName(*host) || !pool.ValidName(*source) {
		return fmt.Errorf("host %q and source %q must be non-empty names without '/'", *host, *source)
	}
	p, err := pf.open(ctx)
	if err != nil {
		return err
	}

	prevM, err := latestOf(ctx, p, *host, *source)
	if err != nil {
		return err
	}
	var prev pullers.Previous
	var estimate int64
	if prevM != nil {
		prev = p.NewTreeLookup(prevM.Root)
		estimate = prevM.Bytes
	}

	w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: *host, Source: *source})
	if err != nil {
		return err
	}
	prog := newProgress("snapshot", estimate)
	sink := &reportingSink{Writer: w, out: os.Stderr, clear: prog.clear()}
	var skipped atomic.Int64
	job := &pullers.Job{
		Host:     *host,
		Source:   pullers.Source{Method: local.Method, Name: *source, Path: src, Excludes: excludes},
		Sink:     sink,
		Previous: prev,
		Progress: func(pr pullers.Progress) {
			skipped.Store(pr.Skipped)
			prog.Set(progressState{Files: pr.Files, Bytes: pr.Bytes, Skipped: pr.Skipped, Errors: pr.Errors, Path: pr.Path})
		},
	}
	if *oneFS {
		job.Source.Options = map[string]string{"one_file_system": "true"}
	}
	puller, err := pullers.Get(local.Method)
	if err != nil {
		w.Abort()
		return err
	}
	prog.Start()
	err = puller.Pull(ctx, job)
	prog.Stop()
	if err != nil {
		w.Abort()
		return fmt.Errorf("snapshot of %s failed, nothing was recorded: %w", src, err)
	}
	m, err := w.Finish(ctx)
	if err != nil {
		return fmt.Errorf("snapshot of %s failed, nothing was recorded: %w", src, err)
	}
	sink.flush()
	res := snapshotResult{Manifest: m, Skipped: skipped.Load(), Seconds: prog.Elapsed().Seconds()}
	if prevM != nil {
		res.Previous = prevM.ID
	}
	fmt.Fprintf(os.Stderr, "cairn snapshot: %s of %s/%s: %d files, %d dirs, %s (%s new), %d unchanged files skipped, %s\n",
		m.ID, m.Host, m.Source, m.Files, m.Dirs, fmtBytes(m.Bytes), fmtBytes(m.BytesNew), res.Skipped, fmtDuration(prog.Elapsed()))
	if m.Status == pool.StatusPartial {
		fmt.Fprintf(os.Stderr, "cairn snapshot: warning: snapshot %s is partial: %d files or directories could not be read (listed above)\n", m.ID, m.ErrorCount)
	}
	if *asJSON {
		return printJSON(res)
	}
	fmt.Println(m.ID)
	return nil
}

// sourceName derives a source name from a directory path.
func sourceName(abs string) string {
	b := filepath.Base(abs)
	if b == "/" || b == "." || !pool.ValidName(b) {
		return "root"
	}
	return b
}

// latestOf returns the newest snapshot of host/source, or nil.
func latestOf(ctx context.Context, p *pool.Pool, host, source string) (*pool.Manifest, error) {
	var last *pool.Manifest
	err := p.Snapshots(ctx, func(m *pool.Manifest) error {
		if m.Host == host && m.Source == source && newer(m, last) {
			last = m
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find the previous snapshot of %s/%s: %w", host, source, err)
	}
	return last, nil
}

// newer reports whether m started after old (nil: yes). IDs sort by start
// time only to the second, so the manifests' times decide.
func newer(m, old *pool.Manifest) bool {
	if old == nil {
		return true
	}
	if !m.Start.Equal(old.Start) {
		return m.Start.After(old.Start)
	}
	if !m.End.Equal(old.End) {
		return m.End.After(old.End)
	}
	return m.ID > old.ID
}

// reportingSink prints per-file errors as they happen (the first few),
// then passes them on to the writer.
type reportingSink struct {
	*pool.Writer
	out   io.Writer
	clear string // erases the progress bar
	mu    sync.Mutex
	shown int
	more  int
}

const maxShownErrors = 20

func (s *reportingSink) RecordError(p string, err error) {
	s.mu.Lock()
	if s.shown < maxShownErrors {
		s.shown++
		fmt.Fprintf(s.out, "%scairn snapshot: warning: %s\n", s.clear, strings.TrimSpace(err.Error()))
	} else {
		s.more++
	}
	s.mu.Unlock()
	s.Writer.RecordError(p, err)
}

func (s *reportingSink) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.more > 0 {
		fmt.Fprintf(s.out, "cairn snapshot: warning: … and %d more errors\n", s.more)
	}
}

func runSnapshotLs(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("snapshot ls", flag.ContinueOnError)
	pf := addPoolFlags(fs)
	host := fs.String("host", "", "only snapshots of this host")
	source := fs.String("source", "", "only snapshots of this source")
	asJSON := fs.Bool("json", false, "print a JSON array of manifests")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fs.Usage()
		return errUsage
	}
	p, err := pf.open(ctx)
	if err != nil {
		return err
	}
	list := []*pool.Manifest{}
	err = p.Snapshots(ctx, func(m *pool.Manifest) error {
		if (*host == "" || m.Host == *host) && (*source == "" || m.Source == *source) {
			list = append(list, m)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortStableFunc(list, func(a, b *pool.Manifest) int {
		if newer(a, b) {
			return 1
		}
		if newer(b, a) {
			return -1
		}
		return 0
	})
	if *asJSON {
		return printJSON(list)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tHOST\tSOURCE\tSTART\tSTATUS\tFILES\tSIZE\tNEW")
	for _, m := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", m.ID, quoteName(m.Host), quoteName(m.Source),
			m.Start.Local().Format(time.DateTime), m.Status, m.Files, fmtBytes(m.Bytes), fmtBytes(m.BytesNew))
	}
	return tw.Flush()
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
