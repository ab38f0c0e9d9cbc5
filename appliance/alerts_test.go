package appliance

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
)

const alertsDir = "../contrib/prometheus"

// TestAlertRules validates the shipped alert rules with promtool, runs
// their unit tests (cairn-alerts_test.yml), and checks that every metric
// they use is one /metrics serves.
func TestAlertRules(t *testing.T) {
	testenv.Need(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "cairn-alerts.yml"},
		{"test", "rules", "cairn-alerts_test.yml"},
	} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = alertsDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	rules, err := os.ReadFile(filepath.Join(alertsDir, "cairn-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	resetFake(t)
	releaseFake()
	e := newEnv(t, Config{})
	e.addHost("h", nil)
	e.waitJob(e.backup("h").ID)
	var j JobBody
	e.must("socket", "POST", "/api/v1/pool/check", CheckParams{}, &j)
	e.waitJob(j.ID)
	metrics := e.do("socket", "GET", "/metrics", nil).Body.String()
	names := regexp.MustCompile(`\bcairn_[a-z_]+\b`).FindAllString(string(rules), -1)
	if len(names) < 6 {
		t.Fatalf("only %d metric references in the rules", len(names))
	}
	for _, n := range names {
		if !strings.Contains(metrics, "# TYPE "+n+" ") {
			t.Errorf("the rules use %s, which /metrics does not serve", n)
		}
	}
}
