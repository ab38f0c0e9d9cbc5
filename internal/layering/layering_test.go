// Package layering checks the import rules of ARCHITECTURE.md: layers point
// down, pool imports nothing of the module, images only pool, and so on.
package layering

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/cairn-backup/cairn"

// rules maps a top-level area to the module areas it may import (besides
// itself and internal helpers beneath itself).
var rules = map[string][]string{
	"pool":             {},
	"images":           {"pool"},
	"pullers":          {"pool"},
	"fusefs":           {"pool"},
	"appliance":        {"pool", "images", "pullers", "fusefs"},
	"iso":              {},
	"cmd":              {"pool", "images", "pullers", "fusefs", "appliance"},
	"internal/testenv": {},
}

// area returns the rule key for a package path inside the module.
func area(pkg string) string {
	rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
	if strings.HasPrefix(rel, "internal/") {
		parts := strings.SplitN(rel, "/", 3)
		return "internal/" + parts[1]
	}
	return strings.SplitN(rel, "/", 2)[0]
}

// violations returns one line per forbidden import in imports, a map from
// package path to its direct imports.
func violations(imports map[string][]string) []string {
	var out []string
	for pkg, imps := range imports {
		from := area(pkg)
		allowed, ruled := rules[from]
		if !ruled {
			continue // other internal helpers (bench, layering) may import anything
		}
		for _, imp := range imps {
			if !strings.HasPrefix(imp, module+"/") && imp != module {
				continue
			}
			to := area(imp)
			if to == from {
				continue
			}
			// internal/testenv may be imported by tests of anyone; not here (non-test imports only).
			ok := false
			for _, a := range allowed {
				if to == a {
					ok = true
				}
			}
			if !ok {
				out = append(out, fmt.Sprintf("%s imports %s (%s may import only %v)", pkg, imp, from, allowed))
			}
		}
	}
	return out
}

func TestLayering(t *testing.T) {
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		imports[p.ImportPath] = p.Imports
	}
	if len(imports) < 5 {
		t.Fatalf("go list found only %d packages", len(imports))
	}
	for _, v := range violations(imports) {
		t.Error(v)
	}
}

// TestLayeringDetects proves the check can fail: a fixture where pool
// imports appliance and images imports pullers must be reported.
func TestLayeringDetects(t *testing.T) {
	fixture := map[string][]string{
		module + "/pool":                 {"io", module + "/appliance"},
		module + "/images":               {module + "/pool", module + "/pullers/sftp"},
		module + "/fusefs":               {module + "/pool"},
		module + "/pool/internal/chunk":  {module + "/pool"},
		module + "/pullers/local":        {module + "/pool", module + "/pullers"},
		module + "/appliance":            {module + "/pool", module + "/pullers/local"},
		module + "/internal/testenv":     {"os"},
		module + "/cmd/cairn":            {module + "/appliance"},
		module + "/fusefs/internal/node": {module + "/appliance"},
	}
	got := violations(fixture)
	if len(got) != 3 {
		t.Fatalf("want 3 violations (pool→appliance, images→pullers, fusefs→appliance), got %d: %v", len(got), got)
	}
}
