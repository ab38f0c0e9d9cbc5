package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/pullers"
	"golang.org/x/crypto/ssh"
)

// validName is what host, source, user and group names may be: they appear
// as path elements of the restore tree and in URLs.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func checkName(kind, name string) error {
	if !validName.MatchString(name) {
		return badRequest("%s name %q: use letters, digits, '.', '_' and '-' (starting with a letter or digit, at most 128)", kind, name)
	}
	return nil
}

// secretPurpose binds sealed source secrets to their column.
const secretPurpose = "cairn source secret v1"

// HostBody is a host as the API shows it. Secrets never appear: a source
// only says which secret keys it has.
type HostBody struct {
	Name      string            `json:"name"`
	Address   string            `json:"address"`
	Enabled   bool              `json:"enabled"`
	Groups    []string          `json:"groups"`
	Settings  map[string]string `json:"settings"`
	Sources   []SourceBody      `json:"sources"`
	Schedules []ScheduleBody    `json:"schedules"`
	Retention RetentionBody     `json:"retention"`
	Created   time.Time         `json:"created"`
}

// SourceBody is a source as the API shows it.
type SourceBody struct {
	Name       string            `json:"name"`
	Method     string            `json:"method"`
	Path       string            `json:"path"`
	Excludes   []string          `json:"excludes"`
	Options    map[string]string `json:"options"`
	SecretKeys []string          `json:"secret_keys"` // names of the stored credentials, never values
}

// SourceInput creates or replaces a source. Secret is write-only.
type SourceInput struct {
	Name     string            `json:"name"`
	Method   string            `json:"method"`
	Path     string            `json:"path"`
	Excludes []string          `json:"excludes,omitempty"`
	Options  map[string]string `json:"options,omitempty"`
	Secret   map[string]string `json:"secret,omitempty"`
}

// ScheduleBody is one schedule of a host.
type ScheduleBody struct {
	Source   string   `json:"source,omitempty"` // "" = every source
	Cron     string   `json:"cron"`
	Jitter   string   `json:"jitter,omitempty"` // Go duration, e.g. "15m"
	Blackout []string `json:"blackout,omitempty"`
}

// RetentionBody is a host's keep policy.
type RetentionBody struct {
	Last    int `json:"keep_last,omitempty"`
	Hourly  int `json:"keep_hourly,omitempty"`
	Daily   int `json:"keep_daily,omitempty"`
	Weekly  int `json:"keep_weekly,omitempty"`
	Monthly int `json:"keep_monthly,omitempty"`
	Yearly  int `json:"keep_yearly,omitempty"`
}

// HostInput creates a host (POST) or changes one (PATCH: only the fields
// given change; sources given are upserted by name).
type HostInput struct {
	Name      *string            `json:"name,omitempty"`
	Address   *string            `json:"address,omitempty"`
	Enabled   *bool              `json:"enabled,omitempty"`
	Groups    *[]string          `json:"groups,omitempty"`
	Settings  *map[string]string `json:"settings,omitempty"`
	Sources   []SourceInput      `json:"sources,omitempty"`
	Schedules *[]ScheduleBody    `json:"schedules,omitempty"`
	Retention *RetentionBody     `json:"retention,omitempty"`
}

func (s *Server) hostBody(ctx context.Context, h *catalog.Host) (*HostBody, error) {
	b := &HostBody{Name: h.Name, Address: h.Address, Enabled: h.Enabled, Groups: h.Groups, Settings: h.Settings,
		Created: h.Created, Sources: []SourceBody{}, Schedules: []ScheduleBody{}}
	if b.Groups == nil {
		b.Groups = []string{}
	}
	srcs, err := s.cat.Sources(ctx, h.ID)
	if err != nil {
		return nil, err
	}
	for _, src := range srcs {
		sb := SourceBody{Name: src.Name, Method: src.Method, Path: src.Path, Excludes: src.Excludes, Options: src.Options, SecretKeys: []string{}}
		if src.Secret != nil {
			sec, err := s.openSecret(src.Secret)
			if err != nil {
				return nil, fmt.Errorf("host %s source %s: %w", h.Name, src.Name, err)
			}
			for k := range sec {
				sb.SecretKeys = append(sb.SecretKeys, k)
			}
			sort.Strings(sb.SecretKeys)
		}
		b.Sources = append(b.Sources, sb)
	}
	scheds, err := s.cat.Schedules(ctx, h.ID)
	if err != nil {
		return nil, err
	}
	for _, sc := range scheds {
		sb := ScheduleBody{Source: sc.Source, Cron: sc.Cron, Blackout: sc.Blackout}
		if sc.Jitter > 0 {
			sb.Jitter = sc.Jitter.String()
		}
		b.Schedules = append(b.Schedules, sb)
	}
	r, err := s.cat.Retention(ctx, h.ID)
	if err != nil {
		return nil, err
	}
	b.Retention = RetentionBody(r)
	return b, nil
}

func (s *Server) openSecret(sealed []byte) (map[string]string, error) {
	plain, err := s.box.Open(secretPurpose, sealed)
	if err != nil {
		return nil, err
	}
	var m map[string]string
	if err := json.Unmarshal(plain, &m); err != nil {
		return nil, fmt.Errorf("stored secret: %w", err)
	}
	return m, nil
}

func (s *Server) sealSecret(m map[string]string) ([]byte, error) {
	if len(m) == 0 {
		return nil, nil
	}
	plain, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return s.box.Seal(secretPurpose, plain)
}

// validateSource checks a source before it is stored.
func validateSource(in *SourceInput) error {
	if err := checkName("source", in.Name); err != nil {
		return err
	}
	if in.Method == "" {
		return badRequest("source %s: method is required (known: %s)", in.Name, strings.Join(pullers.Methods(), ", "))
	}
	if _, err := pullers.Get(in.Method); err != nil {
		return badRequest("source %s: %v", in.Name, err)
	}
	if in.Path == "" {
		return badRequest("source %s: path is required", in.Name)
	}
	if in.Method == "local" && !strings.HasPrefix(in.Path, "/") {
		return badRequest("source %s: local path %q must be absolute", in.Name, in.Path)
	}
	if in.Options["pre"] != "" || in.Options["post"] != "" {
		if in.Options["ssh_host_key"] == "" {
			return badRequest("source %s: pre/post commands need the option ssh_host_key (the host's public key)", in.Name)
		}
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(in.Options["ssh_host_key"])); err != nil {
			return badRequest("source %s: ssh_host_key: %v", in.Name, err)
		}
		if in.Secret["ssh_key"] == "" && in.Secret["ssh_password"] == "" && in.Method != MethodImageSSH { // image-ssh: on its own connection
			return badRequest("source %s: pre/post commands need the credential ssh_key or ssh_password", in.Name)
		}
	}
	for _, k := range requiredOptions[in.Method] {
		if strings.TrimSpace(in.Options[k]) == "" {
			return badRequest("source %s: method %s needs the option %q", in.Name, in.Method, k)
		}
	}
	for _, k := range requiredSecrets[in.Method] {
		if in.Secret[k] == "" {
			return badRequest("source %s: method %s needs the credential %q", in.Name, in.Method, k)
		}
	}
	return validateSourceOptions(in) // validate.go
}

// requiredSecrets lists the credentials a method cannot work without.
// Methods that accept alternatives (a key or a password) check at pull time.
var requiredSecrets = map[string][]string{
	"smb": {"password"},
}

// requiredOptions lists the options a method cannot work without.
var requiredOptions = map[string][]string{
	"sftp": {"user"},
	"smb":  {"share", "user"},
}

func (s *Server) validateSchedule(sc ScheduleBody) (catalog.Schedule, error) {
	out := catalog.Schedule{Source: sc.Source, Cron: strings.TrimSpace(sc.Cron), Blackout: sc.Blackout}
	if err := validateCron(out.Cron); err != nil {
		return out, badRequest("schedule %q: %v", sc.Cron, err)
	}
	if err := validateBlackout(sc.Blackout); err != nil {
		return out, badRequest("blackout: %v", err)
	}
	if sc.Jitter != "" {
		d, err := time.ParseDuration(sc.Jitter)
		if err != nil || d < 0 {
			return out, badRequest("schedule jitter %q: want a duration such as 15m", sc.Jitter)
		}
		out.Jitter = d
	}
	return out, nil
}

func (s *Server) handleHostList(r *http.Request, p *principal) (any, error) {
	hs, err := s.cat.Hosts(r.Context())
	if err != nil {
		return nil, err
	}
	out := []*HostBody{}
	for i := range hs {
		if ok, err := s.canSeeHost(r.Context(), p, hs[i].Name); err != nil {
			return nil, err
		} else if !ok {
			continue
		}
		b, err := s.hostBody(r.Context(), &hs[i])
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// visibleHost loads a host the principal may see; others are 404 so their
// existence does not leak.
func (s *Server) visibleHost(ctx context.Context, p *principal, name string) (*catalog.Host, error) {
	if ok, err := s.canSeeHost(ctx, p, name); err != nil {
		return nil, err
	} else if !ok {
		return nil, notFound("host %s: not found", name)
	}
	h, err := s.cat.Host(ctx, name)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil, notFound("host %s: not found", name)
	}
	return h, err
}

func (s *Server) handleHostGet(r *http.Request, p *principal) (any, error) {
	h, err := s.visibleHost(r.Context(), p, r.PathValue("host"))
	if err != nil {
		return nil, err
	}
	return s.hostBody(r.Context(), h)
}

func (s *Server) handleHostCreate(r *http.Request, p *principal) (any, error) {
	var in HostInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.Name == nil {
		return nil, badRequest("host name is required")
	}
	h := &catalog.Host{Name: *in.Name, Enabled: true, Created: s.now()}
	if err := checkName("host", h.Name); err != nil {
		return nil, err
	}
	if err := s.applyHostInput(r.Context(), h, &in, true); err != nil {
		return nil, err
	}
	h2, err := s.cat.Host(r.Context(), h.Name)
	if err != nil {
		return nil, err
	}
	b, err := s.hostBody(r.Context(), h2)
	if err != nil {
		return nil, err
	}
	s.log.Info("host added", "host", h.Name, "by", p.Name)
	return created{b}, nil
}

func (s *Server) handleHostPatch(r *http.Request, p *principal) (any, error) {
	h, err := s.visibleHost(r.Context(), p, r.PathValue("host"))
	if err != nil {
		return nil, err
	}
	var in HostInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.Name != nil {
		if err := checkName("host", *in.Name); err != nil {
			return nil, err
		}
	}
	if err := s.applyHostInput(r.Context(), h, &in, false); err != nil {
		return nil, err
	}
	h2, err := s.cat.Host(r.Context(), h.Name)
	if err != nil {
		return nil, err
	}
	return s.hostBody(r.Context(), h2)
}

// applyHostInput validates everything first, then writes: bad input
// changes nothing.
func (s *Server) applyHostInput(ctx context.Context, h *catalog.Host, in *HostInput, create bool) error {
	if in.Name != nil {
		h.Name = *in.Name
	}
	if in.Address != nil {
		h.Address = *in.Address
	}
	if in.Enabled != nil {
		h.Enabled = *in.Enabled
	}
	if in.Groups != nil {
		h.Groups = *in.Groups
	}
	if in.Settings != nil {
		h.Settings = *in.Settings
	}
	if !create {
		if err := s.keepSecrets(ctx, h, in); err != nil { // api_methods.go
			return err
		}
	}
	seen := map[string]bool{}
	for i := range in.Sources {
		if err := validateSource(&in.Sources[i]); err != nil {
			return err
		}
		if seen[in.Sources[i].Name] {
			return badRequest("source %s given twice", in.Sources[i].Name)
		}
		seen[in.Sources[i].Name] = true
	}
	var scheds []catalog.Schedule
	if in.Schedules != nil {
		for _, sc := range *in.Schedules {
			c, err := s.validateSchedule(sc)
			if err != nil {
				return err
			}
			scheds = append(scheds, c)
		}
	}
	if in.Retention != nil {
		r := in.Retention
		for _, v := range []int{r.Last, r.Hourly, r.Daily, r.Weekly, r.Monthly, r.Yearly} {
			if v < 0 {
				return badRequest("retention counts must not be negative")
			}
		}
	}
	sealed := make([][]byte, len(in.Sources))
	for i := range in.Sources {
		var err error
		if sealed[i], err = s.sealSecret(in.Sources[i].Secret); err != nil {
			return err
		}
	}
	var err error
	if create {
		err = s.cat.CreateHost(ctx, h)
	} else {
		err = s.cat.UpdateHost(ctx, h)
	}
	if errors.Is(err, catalog.ErrNotFound) && in.Groups != nil {
		return badRequest("%v", err) // an unknown group
	}
	if err != nil {
		return err
	}
	for i, si := range in.Sources {
		src := &catalog.Source{HostID: h.ID, Name: si.Name, Method: si.Method, Path: si.Path,
			Excludes: si.Excludes, Options: si.Options, Secret: sealed[i]}
		if err := s.cat.PutSource(ctx, src); err != nil {
			return err
		}
	}
	if in.Schedules != nil {
		if err := s.cat.DeleteSchedules(ctx, h.ID); err != nil {
			return err
		}
		for i := range scheds {
			scheds[i].HostID = h.ID
			if err := s.cat.PutSchedule(ctx, &scheds[i]); err != nil {
				return err
			}
		}
	}
	if in.Retention != nil {
		if err := s.cat.SetRetention(ctx, h.ID, catalog.Retention(*in.Retention)); err != nil {
			return err
		}
	}
	s.schedulesChanged(ctx)
	return nil
}

func (s *Server) handleHostDelete(r *http.Request, p *principal) (any, error) {
	name := r.PathValue("host")
	if err := s.cat.DeleteHost(r.Context(), name); err != nil {
		return nil, err
	}
	s.schedulesChanged(r.Context())
	s.log.Info("host removed", "host", name, "by", p.Name)
	return nil, nil
}

func (s *Server) handleSourcePut(r *http.Request, p *principal) (any, error) {
	h, err := s.visibleHost(r.Context(), p, r.PathValue("host"))
	if err != nil {
		return nil, err
	}
	var in SourceInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.Name == "" {
		in.Name = r.PathValue("source")
	}
	if in.Name != r.PathValue("source") {
		return nil, badRequest("source name %q in the body differs from %q in the path", in.Name, r.PathValue("source"))
	}
	if err := s.applyHostInput(r.Context(), h, &HostInput{Sources: []SourceInput{in}}, false); err != nil {
		return nil, err
	}
	return s.hostBody(r.Context(), h)
}

func (s *Server) handleSourceDelete(r *http.Request, p *principal) (any, error) {
	h, err := s.visibleHost(r.Context(), p, r.PathValue("host"))
	if err != nil {
		return nil, err
	}
	if err := s.cat.DeleteSource(r.Context(), h.ID, r.PathValue("source")); err != nil {
		return nil, err
	}
	return nil, nil
}
