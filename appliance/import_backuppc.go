package appliance

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/appliance/internal/backuppc"
)

// importBackupPCRoutes: POST /api/v1/import/backuppc[?dry_run=true] with
// BackupPC 4's config directory as a tar (or multipart/form-data, one
// file per part named by its path) creates the equivalent hosts (admin).
func (s *Server) importBackupPCRoutes() []route {
	return []route{
		{method: "POST", pattern: "/api/v1/import/backuppc", minRole: roleAdmin, json: s.handleImportBackupPC},
	}
}

// maxBackupPCUpload bounds the config files sent to the import.
const maxBackupPCUpload = 32 << 20

// BackupPCNote is one thing the import did not carry over, or carried
// over only approximately. Host is empty for config.pl settings that
// apply to every host.
type BackupPCNote struct {
	Host    string `json:"host,omitempty"`
	Setting string `json:"setting"`
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Value   string `json:"value,omitempty"` // never for credentials
	Reason  string `json:"reason"`
}

func (n BackupPCNote) String() string {
	var b strings.Builder
	if n.File != "" && n.Line > 0 {
		fmt.Fprintf(&b, "%s:%d: ", n.File, n.Line)
	} else if n.File != "" {
		fmt.Fprintf(&b, "%s: ", n.File)
	}
	if n.Host != "" {
		fmt.Fprintf(&b, "host %s: ", n.Host)
	}
	b.WriteString(n.Setting)
	if n.Value != "" {
		b.WriteString(" = " + n.Value)
	}
	b.WriteString(": " + n.Reason)
	return b.String()
}

// BackupPCHostPlan is a host as the import creates it. Sources show
// their secret keys, never the values.
type BackupPCHostPlan struct {
	Name      string         `json:"name"`
	Address   string         `json:"address"`
	Enabled   bool           `json:"enabled"`
	Sources   []SourceBody   `json:"sources"`
	Schedules []ScheduleBody `json:"schedules"`
	Retention RetentionBody  `json:"retention"`
	Status    string         `json:"status"` // "created", "planned", "skipped: …", "failed: …"

	input HostInput
}

// BackupPCImport is the import's answer: what was (or would be, with
// dry_run) created, and every setting that was not mapped.
type BackupPCImport struct {
	DryRun         bool               `json:"dry_run"`
	Hosts          []BackupPCHostPlan `json:"hosts"`
	Unmapped       []BackupPCNote     `json:"unmapped"`
	Approximations []BackupPCNote     `json:"approximations"`
	ParseErrors    []string           `json:"parse_errors"`
}

func (s *Server) handleImportBackupPC(r *http.Request, p *principal) (any, error) {
	files, err := readBackupPCUpload(r)
	if err != nil {
		return nil, err
	}
	res, err := PlanBackupPCImport(files)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	res.DryRun = r.URL.Query().Get("dry_run") == "true" || r.URL.Query().Get("dry_run") == "1"
	if !res.DryRun {
		s.applyBackupPCImport(r.Context(), res)
		s.log.Info("BackupPC config imported", "hosts", len(res.Hosts), "unmapped", len(res.Unmapped), "by", p.Name)
	}
	return res, nil
}

// readBackupPCUpload reads the files of a tar or multipart body, by
// cleaned relative path.
func readBackupPCUpload(r *http.Request) (map[string][]byte, error) {
	body := http.MaxBytesReader(nil, r.Body, maxBackupPCUpload)
	files := map[string][]byte{}
	add := func(name string, rd io.Reader) error {
		name = path.Clean(strings.TrimPrefix(name, "./"))
		if name == "." || strings.HasPrefix(name, "/") || strings.HasPrefix(name, "../") || name == ".." {
			return badRequest("BackupPC upload: file name %q must be relative to the config directory", name)
		}
		data, err := io.ReadAll(rd)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return badRequest("BackupPC upload: more than %d bytes", maxBackupPCUpload)
			}
			return badRequest("BackupPC upload: %s: %v", name, err)
		}
		files[name] = data
		return nil
	}
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, badRequest("BackupPC upload: multipart: %v", err)
			}
			name := part.FileName()
			if name == "" {
				name = part.FormName()
			}
			if err := add(name, part); err != nil {
				return nil, err
			}
		}
		return files, nil
	}
	tr := tar.NewReader(body)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, badRequest("BackupPC upload: more than %d bytes", maxBackupPCUpload)
			}
			return nil, badRequest("BackupPC upload: want a tar of the config directory (or multipart/form-data): %v", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if err := add(h.Name, tr); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// backuppcMapped are the settings the import reads; every other setting
// found is reported as unmapped.
var backuppcMapped = map[string]bool{
	"XferMethod": true, "RsyncShareName": true, "SmbShareName": true, "TarShareName": true, "FtpShareName": true,
	"BackupFilesExclude": true, "BackupFilesOnly": true, "FullPeriod": true, "IncrPeriod": true, "FullKeepCnt": true, "IncrKeepCnt": true,
	"BlackoutPeriods": true, "ClientNameAlias": true, "RsyncdUserName": true, "RsyncdPasswd": true,
	"RsyncdClientPort": true, "SmbShareUserName": true, "SmbSharePasswd": true, "FtpUserName": true,
	"FtpPasswd": true, "FtpPortNumber": true, "WakeupSchedule": true,
}

// backuppcSecret are settings whose values never appear in the output.
var backuppcSecret = map[string]bool{"RsyncdPasswd": true, "SmbSharePasswd": true, "FtpPasswd": true}

// backuppcDefaults are BackupPC 4's built-in values, used when neither
// config.pl nor the host's file sets them.
var backuppcDefaults = map[string]float64{"FullPeriod": 6.97, "IncrPeriod": 0.97, "FullKeepCnt": 1, "IncrKeepCnt": 6}

type bpcSetting struct {
	backuppc.Setting
	file string
}

// PlanBackupPCImport maps BackupPC 4's config files (paths relative to
// its config directory: hosts, config.pl, pc/HOST.pl or HOST.pl) to Cairn
// hosts. It never runs Perl; see package appliance/internal/backuppc.
func PlanBackupPCImport(files map[string][]byte) (*BackupPCImport, error) {
	res := &BackupPCImport{Hosts: []BackupPCHostPlan{}, Unmapped: []BackupPCNote{}, Approximations: []BackupPCNote{}, ParseErrors: []string{}}
	hostsData, ok := files["hosts"]
	if !ok {
		return nil, errors.New("BackupPC config: no hosts file (want the config directory, e.g. /etc/backuppc, with hosts and config.pl)")
	}
	hosts, herrs, err := backuppc.ParseHosts("hosts", hostsData)
	if err != nil {
		return nil, err
	}
	for _, e := range herrs {
		res.ParseErrors = append(res.ParseErrors, e.Error())
	}
	parse := func(name string) (*backuppc.File, error) {
		data, ok := files[name]
		if !ok {
			return nil, nil
		}
		f, err := backuppc.Parse(name, data)
		if err != nil {
			return nil, err
		}
		for _, e := range f.Errors {
			res.ParseErrors = append(res.ParseErrors, e.Error())
		}
		return f, nil
	}
	global, err := parse("config.pl")
	if err != nil {
		return nil, err
	}
	if global == nil {
		res.Approximations = append(res.Approximations, BackupPCNote{Setting: "config.pl", Reason: "not given: BackupPC's built-in defaults are used"})
		global = &backuppc.File{Name: "config.pl"}
	}
	for _, st := range global.Settings {
		if !backuppcMapped[st.Name] && isLast(global, st) {
			res.Unmapped = append(res.Unmapped, bpcNote("", bpcSetting{st, "config.pl"}, "no Cairn equivalent"))
		}
	}
	known := map[string]bool{"hosts": true, "config.pl": true}
	for _, hl := range hosts {
		plan := BackupPCHostPlan{Name: hl.Host}
		eff := map[string]bpcSetting{}
		for _, st := range global.Settings {
			eff[st.Name] = bpcSetting{st, "config.pl"}
		}
		for _, name := range []string{"pc/" + hl.Host + ".pl", hl.Host + ".pl"} {
			if _, ok := files[name]; !ok || strings.Contains(hl.Host, "/") {
				continue
			}
			known[name] = true
			f, err := parse(name)
			if err != nil {
				return nil, err
			}
			for _, st := range f.Settings {
				eff[st.Name] = bpcSetting{st, name}
				if !backuppcMapped[st.Name] && isLast(f, st) {
					res.Unmapped = append(res.Unmapped, bpcNote(hl.Host, bpcSetting{st, name}, "no Cairn equivalent"))
				}
			}
			break
		}
		note := func(list *[]BackupPCNote, setting string, reason string) {
			n := BackupPCNote{Host: hl.Host, Setting: setting, Reason: reason}
			if st, ok := eff[setting]; ok {
				n = bpcNote(hl.Host, st, reason)
			}
			*list = append(*list, n)
		}
		if err := checkName("host", hl.Host); err != nil {
			plan.Status = "skipped: " + err.Error()
			res.Hosts = append(res.Hosts, plan)
			continue
		}
		if hl.DHCP {
			res.Unmapped = append(res.Unmapped, BackupPCNote{Host: hl.Host, Setting: "hosts:dhcp", File: "hosts", Line: hl.Line, Value: "1",
				Reason: "Cairn reaches a host by its address or name; BackupPC's NetBIOS lookup of DHCP hosts is not done"})
		}
		if hl.User != "" || len(hl.MoreUsers) > 0 {
			res.Unmapped = append(res.Unmapped, BackupPCNote{Host: hl.Host, Setting: "hosts:user", File: "hosts", Line: hl.Line,
				Value: strings.Join(append([]string{hl.User}, hl.MoreUsers...), ","), Reason: "give these users access through a Cairn group"})
		}
		mapBackupPCHost(&plan, eff, note, res)
		res.Hosts = append(res.Hosts, plan)
	}
	var extra []string
	for name := range files {
		if !known[name] && strings.HasSuffix(name, ".pl") {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	for _, name := range extra {
		res.Unmapped = append(res.Unmapped, BackupPCNote{Setting: name, File: name, Reason: "a per-host file for a host not in the hosts file; not read"})
	}
	return res, nil
}

func isLast(f *backuppc.File, st backuppc.Setting) bool {
	last, _ := f.Get(st.Name)
	return last.Line == st.Line
}

func bpcNote(host string, st bpcSetting, reason string) BackupPCNote {
	n := BackupPCNote{Host: host, Setting: st.Name, File: st.file, Line: st.Line, Reason: reason}
	if backuppcSecret[st.Name] {
		n.Value = "(secret)"
	} else {
		n.Value = st.Value.String()
		if r := []rune(n.Value); len(r) > 120 {
			n.Value = string(r[:120]) + "…"
		}
	}
	return n
}

var bpcUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// sourceName turns a share into a source name: "/" is "root", "/home/a"
// is "home_a", "C$" is "C".
func sourceName(share string, used map[string]bool) string {
	n := strings.Trim(bpcUnsafe.ReplaceAllString(strings.Trim(share, "/"), "_"), "_.-")
	if n == "" {
		n = "root"
	}
	if len(n) > 100 {
		n = n[:100]
	}
	base := n
	for i := 2; used[n]; i++ {
		n = fmt.Sprintf("%s-%d", base, i)
	}
	used[n] = true
	return n
}

func mapBackupPCHost(plan *BackupPCHostPlan, eff map[string]bpcSetting, note func(*[]BackupPCNote, string, string), res *BackupPCImport) {
	str := func(name string) string {
		if st, ok := eff[name]; ok && st.Value.Kind == backuppc.Scalar {
			return st.Value.S
		}
		return ""
	}
	num := func(name string) float64 {
		if st, ok := eff[name]; ok {
			if f, ok := st.Value.Float(); ok {
				return f
			}
			if st.Value.Kind != backuppc.Undef {
				note(&res.Unmapped, name, "not a number; BackupPC's default is used")
			}
		}
		return backuppcDefaults[name]
	}
	plan.Enabled = true
	in := HostInput{Name: &plan.Name}
	if st, ok := eff["ClientNameAlias"]; ok {
		if al, ok := st.Value.Strings(); ok && len(al) > 0 {
			plan.Address = al[0]
			if len(al) > 1 {
				note(&res.Approximations, "ClientNameAlias", "only the first alias is used as the address")
			}
		}
	}
	in.Address = &plan.Address

	method := str("XferMethod")
	if method == "" {
		method = "smb"
	}
	var shareSetting string
	var base SourceInput
	base.Options = map[string]string{}
	switch method {
	case "rsync":
		shareSetting = "RsyncShareName"
		base.Method, base.Options["transport"], base.Options["user"] = "rsync", "ssh", "root"
		note(&res.Approximations, "XferMethod", "rsync over SSH as root, as BackupPC's default RsyncSshArgs; BackupPC's SSH key is not imported: give each source the credential private_key, or install Cairn's key (cairn host onboard)")
	case "rsyncd":
		shareSetting = "RsyncShareName"
		base.Method, base.Options["transport"] = "rsync", "daemon"
		if u := str("RsyncdUserName"); u != "" {
			base.Options["user"] = u
		}
		if pw := str("RsyncdPasswd"); pw != "" {
			base.Secret = map[string]string{"password": pw}
		}
		if p := num("RsyncdClientPort"); p > 0 && p != 873 {
			base.Options["port"] = strconv.Itoa(int(p))
		}
	case "smb":
		shareSetting = "SmbShareName"
		base.Method = "smb"
		base.Options["user"] = str("SmbShareUserName")
		if pw := str("SmbSharePasswd"); pw != "" {
			base.Secret = map[string]string{"password": pw}
		}
	case "tar":
		shareSetting = "TarShareName"
		base.Method, base.Options["user"] = "tar", "root"
		note(&res.Approximations, "XferMethod", "tar over SSH as root, as BackupPC's default TarClientCmd; BackupPC's SSH key is not imported: give each source the credential private_key")
	case "ftp":
		shareSetting = "FtpShareName"
		base.Method = "ftp"
		base.Options["user"] = str("FtpUserName")
		if pw := str("FtpPasswd"); pw != "" {
			base.Secret = map[string]string{"password": pw}
		}
		if p := num("FtpPortNumber"); p > 0 && p != 21 {
			base.Options["port"] = strconv.Itoa(int(p))
		}
	default:
		note(&res.Unmapped, "XferMethod", fmt.Sprintf("transfer method %q has no Cairn equivalent; the host gets no sources", method))
	}
	used := map[string]bool{}
	if shareSetting != "" {
		shares, ok := eff[shareSetting].Value.Strings()
		if st, has := eff[shareSetting]; !has || !ok || len(shares) == 0 {
			if has && !ok {
				note(&res.Unmapped, shareSetting, "not a share name or list of names")
			}
			shares = []string{"/"}
			if method == "smb" {
				shares = []string{"C$"}
			}
			if !has || st.Value.Kind == backuppc.Undef {
				note(&res.Approximations, shareSetting, fmt.Sprintf("not set: BackupPC's default %q is used", shares[0]))
			}
		}
		excl := backuppcExcludes(eff["BackupFilesExclude"].Value)
		if st, ok := eff["BackupFilesOnly"]; ok && st.Value.Kind != backuppc.Undef {
			note(&res.Unmapped, "BackupFilesOnly", "Cairn sources have excludes only; add a source per included directory")
		}
		for _, sh := range shares {
			src := SourceInput{Name: sourceName(sh, used), Method: base.Method, Options: map[string]string{}, Secret: base.Secret}
			for k, v := range base.Options {
				if v != "" {
					src.Options[k] = v
				}
			}
			switch method {
			case "rsyncd":
				mod, rest, _ := strings.Cut(strings.TrimPrefix(sh, "/"), "/")
				src.Options["module"] = mod
				src.Path = "/" + rest
			case "smb":
				src.Options["share"] = sh
				src.Path = "/"
			default:
				src.Path = sh
			}
			src.Excludes = append(append([]string(nil), excl["*"]...), excl[sh]...)
			in.Sources = append(in.Sources, src)
		}
		if _, ok := eff["BackupFilesExclude"]; ok {
			for k := range excl {
				if k != "*" && !slicesContains(shares, k) {
					note(&res.Unmapped, "BackupFilesExclude", fmt.Sprintf("excludes for share %q, which the host does not back up", k))
				}
			}
		}
	}

	// Schedule and retention.
	full, incr := num("FullPeriod"), num("IncrPeriod")
	switch {
	case full <= -2:
		plan.Enabled = false
		note(&res.Approximations, "FullPeriod", "backups disabled: the host is created disabled")
	case full < 0:
		note(&res.Approximations, "FullPeriod", "no automatic backups: the host gets no schedule (backups run on demand)")
	default:
		period := full
		if incr > 0 && incr < full {
			period = incr
		}
		cron, exact := backuppcCron(period, backuppcWakeHour(eff["WakeupSchedule"].Value))
		sc := ScheduleBody{Cron: cron, Blackout: backuppcBlackouts(eff["BlackoutPeriods"], note, res)}
		if !exact {
			note(&res.Approximations, "IncrPeriod", fmt.Sprintf("a backup every %g days is scheduled as %q", period, cron))
		}
		plan.Schedules = append(plan.Schedules, sc)
		if _, ok := eff["FullPeriod"]; ok && full > 0 {
			note(&res.Approximations, "FullPeriod", "Cairn takes no separate full backups: every snapshot is complete, and unchanged files are found by size and mtime")
		}
	}
	var ret RetentionBody
	var approx []string
	addKeep := func(n int, days float64) {
		if n <= 0 || days <= 0 {
			return
		}
		buckets := []struct {
			days float64
			dst  *int
			name string
		}{{1.0 / 24, &ret.Hourly, "hourly"}, {1, &ret.Daily, "daily"}, {7, &ret.Weekly, "weekly"}, {365.25 / 12, &ret.Monthly, "monthly"}, {365.25, &ret.Yearly, "yearly"}}
		best, bestD := 0, math.Inf(1)
		for i, b := range buckets {
			if d := math.Abs(math.Log(days / b.days)); d < bestD {
				best, bestD = i, d
			}
		}
		b := buckets[best]
		k := int(math.Ceil(float64(n)*days/b.days - 0.05))
		if k < n && days >= b.days*0.75 {
			k = n
		}
		*b.dst += k
		if r := days / b.days; r < 0.75 || r > 1.34 {
			approx = append(approx, fmt.Sprintf("%d every %g days kept as %s %d", n, days, b.name, k))
		}
	}
	if incr > 0 && (full <= 0 || incr < full) {
		addKeep(int(num("IncrKeepCnt")), incr)
	}
	if len(approx) > 0 {
		note(&res.Approximations, "IncrKeepCnt", "keep counts mapped to periods: "+strings.Join(approx, "; "))
		approx = nil
	}
	if full > 0 {
		if st, ok := eff["FullKeepCnt"]; ok && st.Value.Kind == backuppc.Array {
			for i, e := range st.Value.List {
				if n, ok := e.Float(); ok {
					addKeep(int(n), full*math.Pow(2, float64(i)))
				}
			}
		} else {
			addKeep(int(num("FullKeepCnt")), full)
		}
	}
	if len(approx) > 0 {
		note(&res.Approximations, "FullKeepCnt", "keep counts mapped to periods: "+strings.Join(approx, "; "))
	}
	plan.Retention = ret
	in.Retention = &plan.Retention
	in.Schedules = &plan.Schedules
	if plan.Schedules == nil {
		plan.Schedules = []ScheduleBody{}
	}
	in.Enabled = &plan.Enabled
	plan.Sources = []SourceBody{}
	valid := in.Sources[:0]
	for _, src := range in.Sources {
		if err := validateSource(&src); err != nil {
			note(&res.Unmapped, shareSetting, fmt.Sprintf("source %s not created: %v", src.Name, err))
			continue
		}
		valid = append(valid, src)
	}
	in.Sources = valid
	for _, src := range in.Sources {
		sb := SourceBody{Name: src.Name, Method: src.Method, Path: src.Path, Excludes: src.Excludes, Options: src.Options, SecretKeys: []string{}}
		if sb.Excludes == nil {
			sb.Excludes = []string{}
		}
		for k := range src.Secret {
			sb.SecretKeys = append(sb.SecretKeys, k)
		}
		sort.Strings(sb.SecretKeys)
		plan.Sources = append(plan.Sources, sb)
	}
	plan.Status = "planned"
	plan.input = in
}

func slicesContains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// backuppcExcludes reads BackupFilesExclude: a list for every share
// (key "*"), or a hash of share => list.
func backuppcExcludes(v backuppc.Value) map[string][]string {
	out := map[string][]string{}
	switch v.Kind {
	case backuppc.Scalar, backuppc.Array:
		out["*"], _ = v.Strings()
	case backuppc.Hash:
		for i, k := range v.Keys {
			out[k], _ = v.List[i].Strings()
		}
	}
	return out
}

// backuppcWakeHour is the first hour of WakeupSchedule, in minutes after
// midnight (BackupPC's default wakes at 1:00 first).
func backuppcWakeHour(v backuppc.Value) int {
	if v.Kind == backuppc.Array && len(v.List) > 0 {
		if h, ok := v.List[0].Float(); ok && h >= 0 && h < 24 {
			return int(math.Round(h * 60))
		}
	}
	return 60
}

// backuppcCron turns a period in days into a cron expression starting at
// the minute of day at; exact is false when the period was rounded.
func backuppcCron(days float64, at int) (cron string, exact bool) {
	h, m := at/60, at%60
	if days < 0.75 {
		hours := max(1, int(math.Round(days*24)))
		if hours >= 12 {
			hours = 12
		}
		return fmt.Sprintf("%d */%d * * *", m, hours), math.Abs(days*24-float64(hours)) < 0.5
	}
	n := int(math.Round(days))
	switch {
	case n <= 1:
		return fmt.Sprintf("%d %d * * *", m, h), days < 1.25
	case n == 7:
		return fmt.Sprintf("%d %d * * 0", m, h), true
	case n < 28:
		return fmt.Sprintf("%d %d */%d * *", m, h, n), false
	default:
		return fmt.Sprintf("%d %d 1 * *", m, h), false
	}
}

var dayAbbrev = []string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

// backuppcBlackouts maps BlackoutPeriods ({hourBegin, hourEnd, weekDays})
// to blackout windows; a window crossing midnight starts on its weekdays,
// as in BackupPC.
func backuppcBlackouts(st bpcSetting, note func(*[]BackupPCNote, string, string), res *BackupPCImport) []string {
	if st.Value.Kind == backuppc.Undef {
		return nil
	}
	if st.Value.Kind != backuppc.Array {
		note(&res.Unmapped, "BlackoutPeriods", "not a list of periods")
		return nil
	}
	var out []string
	for _, p := range st.Value.List {
		hb, ok1 := p.Get("hourBegin")
		he, ok2 := p.Get("hourEnd")
		wd, ok3 := p.Get("weekDays")
		b, okb := hb.Float()
		e, oke := he.Float()
		days, okd := wd.Strings()
		if !ok1 || !ok2 || !ok3 || !okb || !oke || !okd || b < 0 || b > 24 || e < 0 || e > 24 {
			note(&res.Unmapped, "BlackoutPeriods", fmt.Sprintf("period %s: want hourBegin, hourEnd (0-24) and weekDays", p.String()))
			continue
		}
		var names []string
		seen := map[int]bool{}
		bad := false
		for _, d := range days {
			n, err := strconv.Atoi(strings.TrimSpace(d))
			if err != nil || n < 0 || n > 6 {
				bad = true
				break
			}
			if !seen[n] {
				seen[n] = true
				names = append(names, dayAbbrev[n])
			}
		}
		if bad || len(names) == 0 {
			note(&res.Unmapped, "BlackoutPeriods", fmt.Sprintf("period %s: weekDays must be 0 (Sunday) to 6", p.String()))
			continue
		}
		bm, em := int(math.Round(b*60)), int(math.Round(e*60))
		if bm == em {
			continue // an empty period blacks out nothing in BackupPC
		}
		if bm == 24*60 {
			bm = 0
		}
		out = append(out, fmt.Sprintf("%s %02d:%02d-%02d:%02d", strings.Join(names, ","), bm/60, bm%60, em/60, em%60))
	}
	if len(out) > 0 {
		note(&res.Approximations, "BlackoutPeriods", "blackouts always apply in Cairn; BackupPC applies them only to hosts that answered pings BlackoutGoodCnt times")
	}
	return out
}

// applyBackupPCImport creates the planned hosts. A host that exists is
// left alone; a host the catalog refuses is reported and the rest go on.
func (s *Server) applyBackupPCImport(ctx context.Context, res *BackupPCImport) {
	for i := range res.Hosts {
		plan := &res.Hosts[i]
		if plan.Status != "planned" {
			continue
		}
		if _, err := s.cat.Host(ctx, plan.Name); err == nil {
			plan.Status = "skipped: a host of this name exists; it was not changed"
			continue
		} else if !errors.Is(err, catalog.ErrNotFound) {
			plan.Status = "failed: " + err.Error()
			continue
		}
		h := &catalog.Host{Name: plan.Name, Enabled: plan.Enabled, Address: plan.Address, Created: s.now()}
		in := plan.input
		if err := s.applyHostInput(ctx, h, &in, true); err != nil {
			plan.Status = "failed: " + err.Error()
			continue
		}
		plan.Status = "created"
	}
}
