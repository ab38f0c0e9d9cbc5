package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path"
	"regexp"
	"strings"

	"github.com/cairn-backup/cairn/appliance"
)

func init() {
	register(&command{name: "host", short: "manage the hosts the appliance backs up (add|ls|show|edit|rm|enable|disable|test|onboard)", run: runHost})
}

func runHost(ctx context.Context, args []string) error {
	return apSub(ctx, "host", args, map[string]func(context.Context, []string) error{
		"add": hostAdd, "ls": hostLs, "show": hostShow, "edit": hostEdit, "rm": hostRm,
		"enable":  func(ctx context.Context, a []string) error { return hostEnable(ctx, a, true) },
		"disable": func(ctx context.Context, a []string) error { return hostEnable(ctx, a, false) },
		"test":    hostTest, "onboard": hostOnboard,
	}, []string{"add", "ls", "show", "edit", "rm", "enable", "disable", "test", "onboard"})
}

// hostFlags are the settings `host add` and `host edit` share.
type hostFlags struct {
	address, schedule, jitter           string
	source, method, srcPath             string
	excludes, groups, blackout          apMulti
	options, secrets, secretFiles       apKV
	keepLast, keepHourly, keepDaily     int
	keepWeekly, keepMonthly, keepYearly int
	set                                 map[string]bool
}

func (h *hostFlags) register(fs *flag.FlagSet) {
	h.options, h.secrets, h.secretFiles = apKV{}, apKV{}, apKV{}
	fs.StringVar(&h.address, "address", "", "how to reach the host (DNS name or IP)")
	fs.StringVar(&h.schedule, "schedule", "", `backup schedule in cron syntax, e.g. "0 2 * * *" ("" in edit: keep)`)
	fs.StringVar(&h.jitter, "jitter", "", "random delay added to each scheduled start, e.g. 30m")
	fs.Var(&h.blackout, "blackout", `window when scheduled backups must not start, e.g. "Mon-Fri 08:00-18:00" (repeatable)`)
	fs.StringVar(&h.source, "source", "", "source name (default: from the path, e.g. /srv/data → data)")
	fs.StringVar(&h.method, "method", "", "how to pull the source: local, sftp, rsync, smb, ftp, tar, dbdump…")
	fs.StringVar(&h.srcPath, "path", "", "what to back up on the host (directory, share, module…)")
	fs.Var(&h.excludes, "exclude", "glob to skip, relative to the path (repeatable)")
	fs.Var(h.options, "option", "method option KEY=VALUE (repeatable)")
	fs.Var(h.options, "opt", "same as --option")
	fs.Var(h.secrets, "secret", "credential KEY=VALUE, stored encrypted (repeatable; prefer --secret-file)")
	fs.Var(h.secretFiles, "secret-file", "credential KEY=FILE: read the value from FILE (repeatable)")
	fs.Var(&h.groups, "group", "host group (repeatable)")
	fs.IntVar(&h.keepLast, "keep-last", 0, "retention: keep the last N snapshots")
	fs.IntVar(&h.keepHourly, "keep-hourly", 0, "retention: keep N hourly snapshots")
	fs.IntVar(&h.keepDaily, "keep-daily", 0, "retention: keep N daily snapshots")
	fs.IntVar(&h.keepWeekly, "keep-weekly", 0, "retention: keep N weekly snapshots")
	fs.IntVar(&h.keepMonthly, "keep-monthly", 0, "retention: keep N monthly snapshots")
	fs.IntVar(&h.keepYearly, "keep-yearly", 0, "retention: keep N yearly snapshots")
}

var apSourceNameRE = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// defaultSourceName derives a source name from its path.
func defaultSourceName(p string) string {
	b := path.Base(strings.TrimRight(p, "/"))
	b = strings.Trim(apSourceNameRE.ReplaceAllString(b, "-"), "-.")
	if b == "" || b == "/" {
		return "root"
	}
	return b
}

// input turns the flags into an API request; create says all defaults
// apply (host add), otherwise only flags given change something.
func (h *hostFlags) input(name string, create bool) (*appliance.HostInput, error) {
	in := &appliance.HostInput{}
	if create {
		in.Name = &name
	}
	if h.set["address"] || create {
		in.Address = &h.address
	}
	if h.set["group"] {
		g := []string(h.groups)
		in.Groups = &g
	}
	if h.set["schedule"] || h.set["jitter"] || h.set["blackout"] {
		if h.schedule == "" {
			return nil, fmt.Errorf("--jitter and --blackout need --schedule")
		}
		in.Schedules = &[]appliance.ScheduleBody{{Cron: h.schedule, Jitter: h.jitter, Blackout: h.blackout}}
	}
	keep := appliance.RetentionBody{Last: h.keepLast, Hourly: h.keepHourly, Daily: h.keepDaily,
		Weekly: h.keepWeekly, Monthly: h.keepMonthly, Yearly: h.keepYearly}
	for _, f := range []string{"keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly"} {
		if h.set[f] {
			in.Retention = &keep
		}
	}
	srcFlags := h.set["source"] || h.set["method"] || h.set["path"] || h.set["exclude"] || h.set["option"] || h.set["opt"] ||
		h.set["secret"] || h.set["secret-file"]
	if create && (h.method == "" || h.srcPath == "") {
		return nil, fmt.Errorf("host add needs --method and --path (the first source)")
	}
	if srcFlags {
		if h.method == "" || h.srcPath == "" {
			return nil, fmt.Errorf("a source needs both --method and --path")
		}
		secret := map[string]string{}
		for k, v := range h.secrets {
			secret[k] = v
		}
		for k, file := range h.secretFiles {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("--secret-file %s: %w", k, err)
			}
			secret[k] = strings.TrimRight(string(b), "\r\n")
		}
		name := h.source
		if name == "" {
			name = defaultSourceName(h.srcPath)
		}
		in.Sources = []appliance.SourceInput{{Name: name, Method: h.method, Path: h.srcPath,
			Excludes: h.excludes, Options: h.options, Secret: secret}}
	}
	return in, nil
}

func hostAdd(ctx context.Context, args []string) error {
	var c apConn
	var h hostFlags
	disabled := false
	fs := apFlagSet("host add", "host add NAME --method METHOD --path PATH [--source NAME] [--schedule CRON] [flags]")
	c.register(fs)
	h.register(fs)
	fs.BoolVar(&disabled, "disabled", false, "add the host disabled (no scheduled backups)")
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("host add: want exactly one host NAME, got %d arguments", len(pos))
	}
	h.set = apSetFlags(fs)
	in, err := h.input(pos[0], true)
	if err != nil {
		return err
	}
	if disabled {
		f := false
		in.Enabled = &f
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var out appliance.HostBody
	if err := cl.do(ctx, "POST", "/api/v1/hosts", in, &out); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(out)
	}
	fmt.Printf("added host %s with source %s (%s %s)\n", out.Name, out.Sources[0].Name, out.Sources[0].Method, out.Sources[0].Path)
	return nil
}

func apSetFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

func hostEdit(ctx context.Context, args []string) error {
	var c apConn
	var h hostFlags
	var rmSource string
	var clearSchedule bool
	fs := apFlagSet("host edit", "host edit NAME [--address A] [--schedule CRON] [--source NAME --method M --path P] [--remove-source NAME] [flags]")
	c.register(fs)
	h.register(fs)
	fs.StringVar(&rmSource, "remove-source", "", "remove this source")
	fs.BoolVar(&clearSchedule, "no-schedule", false, "remove the host's schedule (manual backups only)")
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("host edit: want exactly one host NAME")
	}
	h.set = apSetFlags(fs)
	in, err := h.input(pos[0], false)
	if err != nil {
		return err
	}
	if clearSchedule {
		in.Schedules = &[]appliance.ScheduleBody{}
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	name := apEsc(pos[0])
	var out appliance.HostBody
	if err := cl.do(ctx, "PATCH", "/api/v1/hosts/"+name, in, &out); err != nil {
		return err
	}
	if rmSource != "" {
		if err := cl.do(ctx, "DELETE", "/api/v1/hosts/"+name+"/sources/"+apEsc(rmSource), nil, nil); err != nil {
			return err
		}
		if err := cl.do(ctx, "GET", "/api/v1/hosts/"+name, nil, &out); err != nil {
			return err
		}
	}
	if c.json {
		return apPrintJSON(out)
	}
	fmt.Printf("updated host %s\n", out.Name)
	return nil
}

func hostLs(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("host ls", "host ls [--json]")
	c.register(fs)
	if _, err := apParse(fs, args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var hosts []appliance.HostBody
	if err := cl.do(ctx, "GET", "/api/v1/hosts", nil, &hosts); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(hosts)
	}
	var rows [][]string
	for _, h := range hosts {
		var srcs, sched []string
		for _, s := range h.Sources {
			srcs = append(srcs, s.Name+"("+s.Method+")")
		}
		for _, s := range h.Schedules {
			sched = append(sched, s.Cron)
		}
		en := "yes"
		if !h.Enabled {
			en = "no"
		}
		rows = append(rows, []string{h.Name, en, apOr(h.Address, "-"), strings.Join(srcs, ","), apOr(strings.Join(sched, ";"), "manual")})
	}
	apTable([]string{"HOST", "ENABLED", "ADDRESS", "SOURCES", "SCHEDULE"}, rows)
	return nil
}

func apOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func hostShow(ctx context.Context, args []string) error {
	var c apConn
	var effective bool
	fs := apFlagSet("host show", "host show NAME [--effective] [--json]")
	c.register(fs)
	fs.BoolVar(&effective, "effective", false, "show the inherited settings and where each comes from (host, group, global)")
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("host show: want exactly one host NAME")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	if effective {
		var vs []appliance.EffectiveValue
		if err := cl.do(ctx, "GET", "/api/v1/hosts/"+apEsc(pos[0])+"/effective", nil, &vs); err != nil {
			return err
		}
		if c.json {
			return apPrintJSON(vs)
		}
		var rows [][]string
		for _, v := range vs {
			rows = append(rows, []string{v.Key, apOr(v.Value, "-"), apOr(v.From, "(unset)")})
		}
		apTable([]string{"SETTING", "VALUE", "FROM"}, rows)
		return nil
	}
	var h appliance.HostBody
	if err := cl.do(ctx, "GET", "/api/v1/hosts/"+apEsc(pos[0]), nil, &h); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(h)
	}
	fmt.Printf("host:      %s\nenabled:   %v\naddress:   %s\ngroups:    %s\ncreated:   %s\n",
		h.Name, h.Enabled, apOr(h.Address, "-"), apOr(strings.Join(h.Groups, ", "), "-"), apTime(h.Created))
	if len(h.Schedules) == 0 {
		fmt.Println("schedule:  manual only")
	}
	for _, s := range h.Schedules {
		extra := ""
		if s.Jitter != "" {
			extra += " jitter " + s.Jitter
		}
		if len(s.Blackout) > 0 {
			extra += " blackout " + strings.Join(s.Blackout, ", ")
		}
		fmt.Printf("schedule:  %s%s\n", s.Cron, extra)
	}
	r := h.Retention
	if r == (appliance.RetentionBody{}) {
		fmt.Println("retention: keep everything")
	} else {
		fmt.Printf("retention: last %d, hourly %d, daily %d, weekly %d, monthly %d, yearly %d\n",
			r.Last, r.Hourly, r.Daily, r.Weekly, r.Monthly, r.Yearly)
	}
	fmt.Println("sources:")
	var rows [][]string
	for _, s := range h.Sources {
		rows = append(rows, []string{"  " + s.Name, s.Method, s.Path, apOr(strings.Join(s.Excludes, ","), "-"),
			apOr(strings.Join(s.SecretKeys, ","), "-")})
	}
	apTable([]string{"  NAME", "METHOD", "PATH", "EXCLUDES", "CREDENTIALS"}, rows)
	return nil
}

func hostRm(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("host rm", "host rm NAME")
	c.register(fs)
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("host rm: want exactly one host NAME")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	if err := cl.do(ctx, "DELETE", "/api/v1/hosts/"+apEsc(pos[0]), nil, nil); err != nil {
		return err
	}
	if !c.json {
		fmt.Printf("removed host %s (its snapshots stay until retention or GC removes them)\n", pos[0])
	}
	return nil
}

func hostEnable(ctx context.Context, args []string, on bool) error {
	var c apConn
	verb := map[bool]string{true: "enable", false: "disable"}[on]
	fs := apFlagSet("host "+verb, "host "+verb+" NAME")
	c.register(fs)
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("host %s: want exactly one host NAME", verb)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var out appliance.HostBody
	if err := cl.do(ctx, "PATCH", "/api/v1/hosts/"+apEsc(pos[0]), appliance.HostInput{Enabled: &on}, &out); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(out)
	}
	fmt.Printf("host %s %sd\n", out.Name, verb)
	return nil
}
