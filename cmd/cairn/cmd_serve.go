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
	imagesLoc := fs.String("images", "", "block-image pool: a directory or s3://… (default DATA/images); env CAIRN_IMAGES")
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
	fs.String("config", "", "read settings from this file of CAIRN_NAME=value lines (names as the env variables below); env CAIRN_CONFIG")
	keyFile := fs.String("secret-key-file", "", "key that seals host credentials (default DATA/secret.key); every instance of a fleet needs the same one")
	clustered := fs.Bool("cluster", false, "share the job queue with other instances on the same --db postgres://… and --pool s3://…")
	instanceID := fs.String("instance-id", "", "name of this instance in the cluster (default hostname-random)")
	advertise := fs.String("advertise", "", "address of this instance shown in `cairn instance ls` (default the --listen address)")
	instanceJobs := fs.Int("instance-jobs", 0, "backups this instance runs at once (default --max-jobs, which is the cluster-wide limit; -1: none)")
	heartbeat := fs.Duration("heartbeat", 5*time.Second, "how often an instance renews its registration and job leases")
	leaseTimeout := fs.Duration("lease-timeout", 30*time.Second, "a job whose instance has not renewed its lease for this long runs again elsewhere")
	poll := fs.Duration("poll", time.Second, "how often an idle instance looks for queued jobs of other instances")
	stagingDir := fs.String("staging", "", "local staging cache for an s3:// pool: backups write here at disk speed, uploads drain in the background")
	stagingMax := fs.Int64("staging-max-mib", 1024, "size cap of the staging cache in MiB; when it is full, backups slow to the upload rate")
	stagingRate := fs.Float64("staging-rate-mib", 0, "upload rate limit of the staging cache in MiB/s (0 = none)")
	stagingUp := fs.Int("staging-uploaders", 4, "concurrent uploads of the staging cache")
	applianceMode := fs.Bool("appliance", false, "run as the appliance image: data disk, A/B updates, console banner, TLS on (system endpoints)")
	tlsMode := fs.String("tls", "", "TCP listener TLS: off, or auto (self-signed certificate made once in DATA/tls); default off, auto with --appliance")
	tlsCert := fs.String("tls-cert", "", "TLS certificate file (PEM; with --tls-key)")
	tlsKey := fs.String("tls-key", "", "TLS private key file (PEM; with --tls-cert)")
	consoles := fs.String("console", "/dev/tty1,/dev/ttyS0", "with --appliance: comma-separated terminals (or files) that show the URL, setup token and TLS fingerprint; \"-\" = none")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: cairn serve [flags]\n\nRuns the appliance in the data directory. Needs no flags on a first run.\n\n")
		fs.PrintDefaults()
	}
	if err := serveEnv(fs, args); err != nil {
		return err
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
		DataDir: *data, Listen: *listen, DB: *db, Pool: *poolDir, Images: *imagesLoc,
		Version: version, Logger: log, MaxJobs: *maxJobs,
		GCSchedule: *gcSched, CheckSchedule: *checkSched, CheckPercent: *checkPct,
		WebhookURL: *webhook, StaleAfter: *staleAfter, MetricsTextfile: *textfile,
		SMTPAddr: *smtpAddr, SMTPUser: *smtpUser, SMTPPassword: os.Getenv("CAIRN_SMTP_PASSWORD"),
		MailFrom: *mailFrom, MailTo: mailTo, Mount: *mount,
		SecretKeyFile: *keyFile,
		Cluster: appliance.ClusterConfig{Enabled: *clustered, InstanceID: *instanceID, Advertise: *advertise,
			InstanceJobs: *instanceJobs, Heartbeat: *heartbeat, LeaseTimeout: *leaseTimeout, Poll: *poll,
			Staging: appliance.StagingConfig{Dir: *stagingDir, MaxBytes: *stagingMax << 20, Uploaders: *stagingUp, Rate: *stagingRate * (1 << 20)}},
		TLSMode: *tlsMode, TLSCert: *tlsCert, TLSKey: *tlsKey, Consoles: apConsoles(*consoles),
	}, nil)
}

// serveEnv gives every serve flag --some-name the value of the
// environment variable CAIRN_SOME_NAME when set, or else of that name in
// the config file (--config or CAIRN_CONFIG: CAIRN_NAME=value lines, #
// comments), so a fleet shares one file or one environment. Flags on the
// command line win. Other CAIRN_ names of the file (CAIRN_S3_ACCESS_KEY,
// CAIRN_S3_SECRET_KEY, CAIRN_SMTP_PASSWORD) go to the environment.
func serveEnv(fs *flag.FlagSet, args []string) error {
	envName := func(flagName string) string {
		return "CAIRN_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
	}
	known := map[string]bool{"CAIRN_CONFIG": true, "CAIRN_S3_ACCESS_KEY": true, "CAIRN_S3_SECRET_KEY": true, "CAIRN_SMTP_PASSWORD": true}
	fs.VisitAll(func(f *flag.Flag) { known[envName(f.Name)] = true })
	path := os.Getenv("CAIRN_CONFIG")
	for i, a := range args {
		switch {
		case (a == "--config" || a == "-config") && i+1 < len(args):
			path = args[i+1]
		case strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config="):
			_, path, _ = strings.Cut(a, "=")
		}
	}
	file := map[string]string{}
	if path != "" {
		var err error
		if file, err = readServeConfig(path, known); err != nil {
			return err
		}
	}
	// Credentials read from the environment elsewhere (the S3 backend,
	// SMTP) go there; flags take the rest.
	for _, k := range []string{"CAIRN_S3_ACCESS_KEY", "CAIRN_S3_SECRET_KEY", "CAIRN_SMTP_PASSWORD"} {
		if os.Getenv(k) == "" && file[k] != "" {
			os.Setenv(k, file[k])
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		v := os.Getenv(name)
		if v == "" {
			v = file[name]
		}
		if v == "" || f.Name == "config" || err != nil {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("%s=%q (--%s): %v", name, v, f.Name, e)
		}
	})
	return err
}

// readServeConfig reads a file of CAIRN_NAME=value lines. A file that
// holds a secret must not be readable by group or others.
func readServeConfig(path string, known map[string]bool) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	out := map[string]string{}
	secret := false
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("config %s line %d: want CAIRN_NAME=value", path, n+1)
		}
		if !known[k] {
			return nil, fmt.Errorf("config %s line %d: %s is not a setting of cairn serve (names are CAIRN_ plus the flag name, e.g. CAIRN_MAX_JOBS)", path, n+1, k)
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		} else if i := strings.Index(v, " #"); i >= 0 {
			v = strings.TrimSpace(v[:i]) // a comment after an unquoted value
		}
		if strings.Contains(k, "SECRET") || strings.Contains(k, "PASSWORD") || strings.Contains(k, "DB") && strings.Contains(v, "@") {
			secret = true
		}
		out[k] = v
	}
	if secret {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("config %s: holds secrets but mode %o lets others read it; chmod 600 it", path, st.Mode().Perm())
		}
	}
	return out, nil
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
