package torture

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// TestStorageAlertRules validates contrib/prometheus/cairn-storage-alerts.yml
// (the disk-full alerts whose inputs TestDiskFull checks) and runs its
// promtool unit tests.
func TestStorageAlertRules(t *testing.T) {
	testenv.Need(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "cairn-storage-alerts.yml"},
		{"test", "rules", "cairn-storage-alerts_test.yml"},
	} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = "../../contrib/prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
