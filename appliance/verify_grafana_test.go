package appliance

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
)

const grafanaDashboard = "../contrib/grafana/cairn.json"

type grafanaPanel struct {
	ID      int            `json:"id"`
	Type    string         `json:"type"`
	Title   string         `json:"title"`
	Panels  []grafanaPanel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// TestGrafanaDashboard: the shipped dashboard parses, covers backups,
// pool, checks, restore tests and replication, its queries are valid
// PromQL, and every metric they reference is one /metrics serves.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile(grafanaDashboard)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string         `json:"title"`
		UID        string         `json:"uid"`
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", grafanaDashboard, err)
	}
	var exprs, rows []string
	ids := map[int]bool{}
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				rows = append(rows, p.Title)
			} else if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	for _, want := range []string{"Backups", "Pool", "Checks", "Restore tests", "Replication"} {
		found := false
		for _, r := range rows {
			found = found || r == want
		}
		if !found {
			t.Errorf("no %q row in the dashboard (rows: %v)", want, rows)
		}
	}
	if len(exprs) < 20 || dash.UID == "" {
		t.Fatalf("dashboard %q: %d queries, uid %q", dash.Title, len(exprs), dash.UID)
	}
	all := strings.Join(exprs, "\n")
	for _, v := range dash.Templating.List {
		b, _ := json.Marshal(v.Query)
		all += "\n" + string(b)
	}

	// The metric names: every one must be served.
	resetFake(t)
	releaseFake()
	e := newEnv(t, noMaint())
	e.addHost("h", nil)
	e.waitJob(e.backup("h").ID)
	var j JobBody
	e.must("socket", "POST", "/api/v1/pool/check", CheckParams{ReadData: true}, &j)
	e.waitJob(j.ID)
	// Samples of every family: a target that ran, a restore test.
	e.must("socket", "POST", "/api/v1/replicas", ReplicaTargetInput{ReplicaTarget: ReplicaTarget{Name: "nas", Kind: KindPool},
		Location: filepath.Join(t.TempDir(), "nas")}, nil)
	e.waitReplicated("nas", 1)
	e.must("socket", "POST", "/api/v1/verify/restore-test", RestoreTestParams{}, nil)
	metrics := e.do("socket", "GET", "/metrics", nil).Body.String()
	served := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllStringSubmatch(metrics, -1) {
		served[m[1]] = true
	}
	used := map[string]bool{}
	for _, n := range regexp.MustCompile(`\bcairn_[a-z0-9_]+\b`).FindAllString(all, -1) {
		used[n] = true
	}
	var names []string
	for n := range used {
		names = append(names, n)
		if !served[n] {
			t.Errorf("the dashboard uses %s, which /metrics does not serve", n)
		}
	}
	sort.Strings(names)
	if len(names) < 20 {
		t.Fatalf("only %d metrics referenced: %v", len(names), names)
	}
	for _, need := range []string{"cairn_restore_test_status", "cairn_restore_test_last_timestamp_seconds", "cairn_replication_lag_seconds", "cairn_pool_check_success"} {
		if !used[need] {
			t.Errorf("the dashboard does not show %s", need)
		}
	}

	// The queries parse as PromQL: promtool checks them as recording
	// rules, with Grafana's variables filled in.
	testenv.Need(t, "promtool")
	fill := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*")
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, x := range exprs {
		q, _ := json.Marshal(fill.Replace(x))
		fmt.Fprintf(&rules, "      - record: dashboard:q%d\n        expr: %s\n", i, q)
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(f, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("promtool", "check", "rules", f).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules (the dashboard's queries): %v\n%s", err, out)
	}
	// The exposition of this metric families passes promtool's
	// lint (others' families are their business).
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(metrics)
	out, _ := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		for _, fam := range []string{"cairn_replication_", "cairn_replica_", "cairn_restore_test_", "cairn_pool_check_"} {
			if strings.Contains(line, fam) {
				t.Errorf("promtool check metrics: %s", line)
			}
		}
	}
}
