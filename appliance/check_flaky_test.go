package appliance

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// The check job's result and the stored check summary carry the pool
// check's flaky count (objects that read back wrong once, then verified).
func TestCheckResultFlaky(t *testing.T) {
	sum := summarize(pool.CheckReport{Objects: 9, ReadObjects: 9, Flaky: 3}, time.Now())
	if b, _ := json.Marshal(sum); sum.Flaky != 3 || !strings.Contains(string(b), `"flaky":3`) {
		t.Fatalf("summary: %s", b)
	}
	e := newEnv(t, Config{})
	var j JobBody
	e.must("socket", "POST", "/api/v1/pool/check", CheckParams{ReadData: true}, &j)
	j = e.jobOK(j)
	var prog struct{ Result map[string]any }
	if err := json.Unmarshal(j.Progress, &prog); err != nil {
		t.Fatal(err)
	}
	if f, ok := prog.Result["flaky"]; !ok || f != float64(0) || prog.Result["ok"] != true {
		t.Fatalf("check job result: %s", j.Progress)
	}
}
