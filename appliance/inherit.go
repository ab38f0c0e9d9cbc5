package appliance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
)

// Settings inherit: global defaults, then the host's groups (templates,
// in name order, the first that sets a key wins), then the host itself.
// The inherited keys are the schedule and the retention policy: a host
// without its own schedule runs on its group's (or the global one), and a
// host without its own retention keeps what its group (or the global
// default) says.

// Template keys.
const (
	tplSchedule = "schedule" // cron
	tplJitter   = "jitter"   // Go duration
	tplBlackout = "blackout" // windows separated by ';'
)

var keepKeys = []string{"keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"}

func templateKeys() []string {
	return append([]string{tplSchedule, tplJitter, tplBlackout}, keepKeys...)
}

const settingDefaults = "defaults"

// validateTemplate checks template settings before they are stored.
func validateTemplate(m map[string]string) error {
	known := map[string]bool{}
	for _, k := range templateKeys() {
		known[k] = true
	}
	for k, v := range m {
		switch {
		case !known[k]:
			return badRequest("setting %q: known keys are %s", k, strings.Join(templateKeys(), ", "))
		case k == tplSchedule:
			if err := validateCron(v); err != nil {
				return badRequest("schedule: %v", err)
			}
		case k == tplJitter:
			if d, err := time.ParseDuration(v); err != nil || d < 0 {
				return badRequest("jitter %q: want a duration such as 15m", v)
			}
		case k == tplBlackout:
			if err := validateBlackout(splitBlackout(v)); err != nil {
				return badRequest("blackout: %v", err)
			}
		default:
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				return badRequest("%s %q: want a count ≥ 0", k, v)
			}
		}
	}
	return nil
}

func splitBlackout(v string) []string {
	var out []string
	for _, w := range strings.Split(v, ";") {
		if w = strings.TrimSpace(w); w != "" {
			out = append(out, w)
		}
	}
	return out
}

// EffectiveValue is one inherited setting and where it comes from:
// "host", "group:NAME", "global", or "" when nothing sets it.
type EffectiveValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	From  string `json:"from"`
}

func (s *Server) defaults(ctx context.Context) (map[string]string, error) {
	v, ok, err := s.cat.Setting(ctx, settingDefaults)
	if err != nil || !ok {
		return map[string]string{}, err
	}
	m := map[string]string{}
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		return nil, fmt.Errorf("global defaults: %w", err)
	}
	return m, nil
}

// effective resolves a host's inherited settings.
func (s *Server) effective(ctx context.Context, h *catalog.Host) (map[string]EffectiveValue, error) {
	out := map[string]EffectiveValue{}
	def, err := s.defaults(ctx)
	if err != nil {
		return nil, err
	}
	groups, err := s.cat.Groups(ctx)
	if err != nil {
		return nil, err
	}
	gset := map[string]map[string]string{}
	for _, g := range groups {
		gset[g.Name] = g.Settings
	}
	mine := sortedCopy(h.Groups)
	own := map[string]string{}
	scheds, err := s.cat.Schedules(ctx, h.ID)
	if err != nil {
		return nil, err
	}
	for _, sc := range scheds {
		if sc.Source == "" {
			own[tplSchedule] = sc.Cron
			if sc.Jitter > 0 {
				own[tplJitter] = sc.Jitter.String()
			}
			if len(sc.Blackout) > 0 {
				own[tplBlackout] = strings.Join(sc.Blackout, ";")
			}
		}
	}
	hasOwnSchedule := len(scheds) > 0
	r, err := s.cat.Retention(ctx, h.ID)
	if err != nil {
		return nil, err
	}
	if !r.IsZero() {
		for i, v := range []int{r.Last, r.Hourly, r.Daily, r.Weekly, r.Monthly, r.Yearly} {
			own[keepKeys[i]] = strconv.Itoa(v)
		}
	}
	for _, k := range templateKeys() {
		// A host with its own schedule or retention owns the whole group
		// of keys: half-inherited schedules would surprise.
		ownsGroup := (k == tplSchedule || k == tplJitter || k == tplBlackout) && hasOwnSchedule ||
			strings.HasPrefix(k, "keep_") && !r.IsZero()
		if ownsGroup {
			if v, ok := own[k]; ok {
				out[k] = EffectiveValue{Key: k, Value: v, From: "host"}
			}
			continue
		}
		found := false
		for _, g := range mine {
			if v, ok := gset[g][k]; ok {
				out[k] = EffectiveValue{Key: k, Value: v, From: "group:" + g}
				found = true
				break
			}
		}
		if !found {
			if v, ok := def[k]; ok {
				out[k] = EffectiveValue{Key: k, Value: v, From: "global"}
			}
		}
	}
	return out, nil
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

// effectiveRetention is the policy that applies to a host.
func (s *Server) effectiveRetention(ctx context.Context, h *catalog.Host) (catalog.Retention, error) {
	eff, err := s.effective(ctx, h)
	if err != nil {
		return catalog.Retention{}, err
	}
	var vals [6]int
	for i, k := range keepKeys {
		if v, ok := eff[k]; ok {
			vals[i], _ = strconv.Atoi(v.Value)
		}
	}
	return catalog.Retention{Last: vals[0], Hourly: vals[1], Daily: vals[2], Weekly: vals[3], Monthly: vals[4], Yearly: vals[5]}, nil
}

func (s *Server) handleHostEffective(r *http.Request, p *principal) (any, error) {
	h, err := s.visibleHost(r.Context(), p, r.PathValue("host"))
	if err != nil {
		return nil, err
	}
	eff, err := s.effective(r.Context(), h)
	if err != nil {
		return nil, err
	}
	out := []EffectiveValue{}
	for _, k := range templateKeys() {
		if v, ok := eff[k]; ok {
			out = append(out, v)
		} else {
			out = append(out, EffectiveValue{Key: k})
		}
	}
	return out, nil
}

// SettingsBody carries template settings (a group's or the global
// defaults).
type SettingsBody struct {
	Settings map[string]string `json:"settings"`
}

func (s *Server) handleGroupPut(r *http.Request, p *principal) (any, error) {
	var in SettingsBody
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := validateTemplate(in.Settings); err != nil {
		return nil, err
	}
	if err := s.cat.SetGroupSettings(r.Context(), r.PathValue("name"), in.Settings); err != nil {
		return nil, err
	}
	s.schedulesChanged(r.Context())
	return GroupBody{Name: r.PathValue("name"), Settings: nonNil(in.Settings)}, nil
}

func (s *Server) handleDefaultsGet(r *http.Request, p *principal) (any, error) {
	d, err := s.defaults(r.Context())
	if err != nil {
		return nil, err
	}
	return SettingsBody{Settings: d}, nil
}

func (s *Server) handleDefaultsPut(r *http.Request, p *principal) (any, error) {
	var in SettingsBody
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := validateTemplate(in.Settings); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(nonNil(in.Settings))
	if err := s.cat.SetSetting(r.Context(), settingDefaults, string(b)); err != nil {
		return nil, err
	}
	s.schedulesChanged(r.Context())
	return SettingsBody{Settings: nonNil(in.Settings)}, nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
