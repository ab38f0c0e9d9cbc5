package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/appliance"

	// Pullers register their methods in init; the appliance finds them
	// by name.
	_ "github.com/cairn-backup/cairn/pullers/local"
)

func init() {
	register(&command{name: "serve", short: "run the appliance (API, scheduler, jobs)", run: runServe})
}

// apDataDirDefault is --data's default: $CAIRN_DATA, else ./cairn-data.
func apDataDirDefault() string {
	if d := os.Getenv("CAIRN_DATA"); d != "" {
		return d
	}
	return appliance.DefaultDataDir
}

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	data := fs.String("data", apDataDirDefault(), "data directory (catalog, pool, socket, keys); env CAIRN_DATA")
	listen := fs.String("listen", appliance.DefaultListen, `HTTP address to listen on ("-" = unix socket only)`)
	db := fs.String("db", "", "catalog database: empty = DATA/catalog.db (SQLite), or postgres://…")
	poolDir := fs.String("pool", "", "pool directory (default DATA/pool)")
	maxJobs := fs.Int("max-jobs", 1, "backups running at once (global limit)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	gcSched := fs.String("gc-schedule", "30 3 * * *", `when pool GC runs (cron; "-" = never)`)
	checkSched := fs.String("check-schedule", "0 4 * * 0", `when the pool check runs (cron; "-" = never)`)
	checkPct := fs.Float64("check-read-data", 5, "percentage of the data the scheduled check re-reads")
	webhook := fs.String("webhook", os.Getenv("CAIRN_WEBHOOK"), "URL to POST JSON to when a backup fails or goes stale; env CAIRN_WEBHOOK")
	textfile := fs.String("metrics-textfile", "", "also write the metrics to this file every minute (node-exporter textfile collector, *.prom)")
	smtpAddr := fs.String("smtp", "", "SMTP server host:port for notification mail (with --mail-to); password from env CAIRN_SMTP_PASSWORD")
	smtpUser := fs.String("smtp-user", "", "SMTP user (PLAIN auth, over TLS or to localhost only)")
	mailFrom := fs.String("mail-from", "", "sender of notification mail (default cairn@localhost)")
	var mailTo apMulti
	fs.Var(&mailTo, "mail-to", "recipient of notification mail (repeatable)")
	staleAfter := fs.Duration("stale-after", 36*time.Hour, "a source without a good backup for this long is reported stale")
	mount := fs.String("mount", os.Getenv("CAIRN_MOUNT"), "mount the whole restore tree read-only here (FUSE) while serving; env CAIRN_MOUNT")
	applianceMode := fs.Bool("appliance", false, "run as the appliance image: data disk, A/B updates, console banner, TLS on (system endpoints)")
	tlsMode := fs.String("tls", "", "TCP listener TLS: off, or auto (self-signed certificate made once in DATA/tls); default off, auto with --appliance")
	tlsCert := fs.String("tls-cert", "", "TLS certificate file (PEM; with --tls-key)")
	tlsKey := fs.String("tls-key", "", "TLS private key file (PEM; with --tls-cert)")
	consoles := fs.String("console", "/dev/tty1,/dev/ttyS0", "with --appliance: comma-separated terminals (or files) that show the URL, setup token and TLS fingerprint; \"-\" = none")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: cairn serve [flags]\n\nRuns the appliance in the data directory. Needs no flags on a first run.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return apUsageErr(err)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	run := appliance.Run
	if *applianceMode {
		run = appliance.RunAppliance
	}
	if *tlsMode == "" && (*tlsCert != "" || *tlsKey != "") {
		*tlsMode = "file"
	}
	return run(ctx, appliance.Config{
		DataDir: *data, Listen: *listen, DB: *db, Pool: *poolDir,
		Version: version, Logger: log, MaxJobs: *maxJobs,
		GCSchedule: *gcSched, CheckSchedule: *checkSched, CheckPercent: *checkPct,
		WebhookURL: *webhook, StaleAfter: *staleAfter, MetricsTextfile: *textfile,
		SMTPAddr: *smtpAddr, SMTPUser: *smtpUser, SMTPPassword: os.Getenv("CAIRN_SMTP_PASSWORD"),
		MailFrom: *mailFrom, MailTo: mailTo, Mount: *mount,
		TLSMode: *tlsMode, TLSCert: *tlsCert, TLSKey: *tlsKey, Consoles: apConsoles(*consoles),
	}, nil)
}

// apUsageErr turns a flag parse error into errUsage (flag already printed
// the reason and the usage) or passes -h through.
func apUsageErr(err error) error {
	if err == flag.ErrHelp {
		return err
	}
	return errUsage
}

// apConsoles splits --console ("-" = none).
func apConsoles(v string) []string {
	var out []string
	for _, c := range strings.Split(v, ",") {
		if c = strings.TrimSpace(c); c != "" && c != "-" {
			out = append(out, c)
		}
	}
	return out
}
