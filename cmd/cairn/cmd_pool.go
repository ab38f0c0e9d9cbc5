package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// appliancePool, when set by the appliance client, handles `cairn pool …`
// run without --pool (the appliance's own pool through a running serve).
var appliancePool func(ctx context.Context, args []string) error

func init() {
	register(&command{name: "pool", short: "create and maintain a pool (init, stats, check, gc)", run: runPool})
}

const poolUsage = `usage: cairn pool init  --pool DIR|s3://… [--encrypt --key-file F] [--json]
       cairn pool stats --pool P [--json]
       cairn pool check --pool P [--read-data[=PCT]] [--json]
       cairn pool gc    --pool P [--dry-run] [--json]
`

func runPool(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(os.Stderr, poolUsage)
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	sub, rest := args[0], args[1:]
	run, ok := map[string]func(context.Context, *flag.FlagSet, *poolFlags, []string) error{
		"init":  runPoolInit,
		"stats": runPoolStats,
		"check": runPoolCheck,
		"gc":    runPoolGC,
	}[sub]
	if !ok {
		return fmt.Errorf("unknown subcommand %q (want init, stats, check or gc)", sub)
	}
	fs := flag.NewFlagSet("pool "+sub, flag.ContinueOnError)
	pf := addPoolFlags(fs)
	return run(ctx, fs, pf, rest)
}

// poolSubcommand hands over to the appliance when no pool is named, else
// parses a pool subcommand's flags (no positional arguments).
func poolSubcommand(ctx context.Context, fs *flag.FlagSet, pf *poolFlags, args []string, sub string, origArgs []string) (handled bool, err error) {
	if sub != "init" && !poolGiven(args) && !slices.Contains(args, "-h") && !slices.Contains(args, "--help") {
		if appliancePool != nil {
			return true, appliancePool(ctx, origArgs)
		}
		return true, errNoPool
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return true, err
	}
	if len(pos) != 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", pos[0])
		fs.Usage()
		return true, errUsage
	}
	if pf.location() == "" && sub != "init" {
		return true, errNoPool // --pool ""
	}
	return false, nil
}

type poolInitResult struct {
	ID        string    `json:"id"`
	Location  string    `json:"location"`
	Encrypted bool      `json:"encrypted"`
	KeyFile   string    `json:"key_file,omitempty"`
	Created   time.Time `json:"created"`
}

func runPoolInit(ctx context.Context, fs *flag.FlagSet, pf *poolFlags, args []string) error {
	encrypt := fs.Bool("encrypt", false, "encrypt the pool with a new key written to --key-file")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if handled, err := poolSubcommand(ctx, fs, pf, args, "init", append([]string{"init"}, args...)); handled {
		return err
	}
	p, err := pf.create(ctx, *encrypt)
	if err != nil {
		return err
	}
	res := poolInitResult{ID: p.ID(), Location: pool.RedactLocation(p.Location()), Encrypted: p.Encrypted(), Created: p.Created()}
	if *encrypt {
		res.KeyFile = pf.key()
	}
	if *asJSON {
		return printJSON(res)
	}
	fmt.Printf("created pool %s at %s\n", res.ID, res.Location)
	if *encrypt {
		fmt.Printf("encrypted; the key is in %s: keep a copy elsewhere, nothing can be restored without it\n", res.KeyFile)
	}
	return nil
}

// poolStats is what `pool stats` reports.
type poolStats struct {
	ID          string         `json:"id"`
	Location    string         `json:"location"`
	Format      int            `json:"format"`
	Encrypted   bool           `json:"encrypted"`
	Created     time.Time      `json:"created"`
	Objects     int64          `json:"objects"`
	StoredBytes int64          `json:"stored_bytes"`
	Quarantined int64          `json:"quarantined"`
	Snapshots   int            `json:"snapshots"`
	Partial     int            `json:"partial"`
	Hosts       map[string]int `json:"hosts"` // host → snapshot count
	// LatestBytes sums the file bytes of the newest snapshot of every
	// host/source: what a full restore of everything would write.
	LatestBytes int64 `json:"latest_bytes"`
}

func runPoolStats(ctx context.Context, fs *flag.FlagSet, pf *poolFlags, args []string) error {
	asJSON := fs.Bool("json", false, "print the statistics as JSON")
	if handled, err := poolSubcommand(ctx, fs, pf, args, "stats", append([]string{"stats"}, args...)); handled {
		return err
	}
	p, err := pf.open(ctx)
	if err != nil {
		return err
	}
	s := poolStats{ID: p.ID(), Location: pool.RedactLocation(p.Location()), Format: pool.FormatVersion,
		Encrypted: p.Encrypted(), Created: p.Created(), Hosts: map[string]int{}}
	err = p.ListObjects(ctx, func(_ pool.Digest, oi pool.ObjectInfo) error {
		s.Objects++
		s.StoredBytes += oi.Size
		return nil
	})
	if err != nil {
		return err
	}
	err = p.Backend().List(ctx, "quarantine/", func(pool.ObjectInfo) error { s.Quarantined++; return nil })
	if err != nil {
		return fmt.Errorf("list quarantine at %s: %w", s.Location, err)
	}
	latest := map[string]int64{}
	err = p.Snapshots(ctx, func(m *pool.Manifest) error {
		s.Snapshots++
		s.Hosts[m.Host]++
		if m.Status == pool.StatusPartial {
			s.Partial++
		}
		latest[m.Host+"/"+m.Source] = m.Bytes
		return nil
	})
	if err != nil {
		return err
	}
	for _, b := range latest {
		s.LatestBytes += b
	}
	if *asJSON {
		return printJSON(s)
	}
	enc := "no"
	if s.Encrypted {
		enc = "yes"
	}
	fmt.Printf("pool          %s\nlocation      %s\nformat        %d\nencrypted     %s\ncreated       %s\n"+
		"snapshots     %d (%d partial) of %d hosts\nobjects       %d\nstored        %s\nlatest data   %s\nquarantined   %d\n",
		s.ID, s.Location, s.Format, enc, s.Created.Local().Format(time.DateTime),
		s.Snapshots, s.Partial, len(s.Hosts), s.Objects, fmtBytes(s.StoredBytes), fmtBytes(s.LatestBytes), s.Quarantined)
	return nil
}

// readDataFlag is --read-data[=PCT]: bare means all objects.
type readDataFlag struct {
	on      bool
	percent float64
}

func (f *readDataFlag) IsBoolFlag() bool { return true }
func (f *readDataFlag) String() string {
	if f == nil || !f.on {
		return "false"
	}
	if f.percent > 0 {
		return strconv.FormatFloat(f.percent, 'g', -1, 64)
	}
	return "true"
}

func (f *readDataFlag) Set(v string) error {
	switch v {
	case "true":
		f.on, f.percent = true, 0
		return nil
	case "false":
		f.on = false
		return nil
	}
	pct, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
	if err != nil || pct <= 0 || pct > 100 {
		return fmt.Errorf("want a percentage in (0, 100], got %q", v)
	}
	f.on, f.percent = true, pct
	return nil
}

type checkResult struct {
	OK bool `json:"ok"`
	pool.CheckReport
}

func runPoolCheck(ctx context.Context, fs *flag.FlagSet, pf *poolFlags, args []string) error {
	var rd readDataFlag
	fs.Var(&rd, "read-data", "also re-read and re-hash stored objects: all, or `PCT` percent chosen at random (--read-data=10)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	imagesLoc := fs.String("images", "", "also check this image pool (default: DATA/images next to a DATA/pool directory)")
	if handled, err := poolSubcommand(ctx, fs, pf, args, "check", append([]string{"check"}, args...)); handled {
		return err
	}
	p, err := pf.open(ctx)
	if err != nil {
		return err
	}
	rep, err := p.Check(ctx, pool.CheckOptions{ReadData: rd.on, Percent: rd.percent})
	if err != nil {
		return fmt.Errorf("check pool %s: %w", pool.RedactLocation(p.Location()), err)
	}
	if *asJSON {
		if err := printJSON(checkResult{OK: rep.OK(), CheckReport: rep}); err != nil {
			return err
		}
	} else {
		for _, s := range rep.BadSnapshots {
			fmt.Printf("bad snapshot manifest: %s\n", s)
		}
		for _, d := range rep.Missing {
			fmt.Printf("missing object %s\n", d)
		}
		for _, d := range rep.Corrupt {
			fmt.Printf("corrupt object %s (moved to %s)\n", d, pool.QuarantineName(d))
		}
		for _, u := range rep.Affected {
			fmt.Printf("damaged: snapshot %s (%s/%s) path %s (object %s)\n", u.Snapshot, quoteName(u.Host), quoteName(u.Source), quoteName(u.Path), u.Digest)
		}
		fmt.Printf("check: %s\n", rep.String())
	}
	imgErr := checkImagesDirect(ctx, pf.location(), *imagesLoc, pf.key(), rd.on, rd.percent, *asJSON) // cmd_image.go
	if rep.OK() && imgErr != nil {
		return imgErr
	}
	if !rep.OK() {
		msg := fmt.Sprintf("pool %s is damaged: %d bad manifests, %d missing and %d corrupt objects", pool.RedactLocation(p.Location()),
			len(rep.BadSnapshots), len(rep.Missing), len(rep.Corrupt))
		if len(rep.Affected) > 0 {
			u := rep.Affected[0]
			msg += fmt.Sprintf(", used by snapshot %s path %s", u.Snapshot, quoteName(u.Path))
			if len(rep.Affected) > 1 {
				msg += fmt.Sprintf(" and %d more", len(rep.Affected)-1)
			}
		}
		if len(rep.Corrupt) > 0 {
			msg += "; corrupt objects were quarantined and the next backup of the same content stores it again"
		}
		return errors.New(msg)
	}
	return nil
}

func runPoolGC(ctx context.Context, fs *flag.FlagSet, pf *poolFlags, args []string) error {
	dry := fs.Bool("dry-run", false, "report what would be freed; delete nothing")
	grace := fs.Duration("grace", pool.DefaultGCGrace, "keep unreferenced objects younger than this (0: none)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if handled, err := poolSubcommand(ctx, fs, pf, args, "gc", append([]string{"gc"}, args...)); handled {
		return err
	}
	p, err := pf.open(ctx)
	if err != nil {
		return err
	}
	g := *grace
	if g <= 0 {
		g = -1
	}
	rep, err := p.GC(ctx, pool.GCOptions{DryRun: *dry, Grace: g})
	if err != nil {
		return fmt.Errorf("gc pool %s: %w", pool.RedactLocation(p.Location()), err)
	}
	if *asJSON {
		return printJSON(rep)
	}
	verb := "deleted"
	if rep.DryRun {
		verb = "would delete"
	}
	fmt.Printf("gc: %d snapshots, %d objects in use; %s %d unreferenced objects (%s); kept %d younger than %s (%s)\n",
		rep.Snapshots, rep.Marked, verb, rep.Swept, fmtBytes(rep.SweptBytes), rep.Kept, *grace, fmtBytes(rep.KeptBytes))
	if rep.Missing > 0 {
		fmt.Printf("gc: warning: %d referenced trees or chunk lists are missing; run `cairn pool check`\n", rep.Missing)
	}
	return nil
}
