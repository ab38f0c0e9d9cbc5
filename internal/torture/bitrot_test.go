package torture

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// objectFiles lists the pool's object files.
func objectFiles(t testing.TB, poolDir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(poolDir, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBitRot flips one byte in each of several random objects (file
// contents, chunks and trees alike) of an appliance's pool: pool check
// names every flipped object and the snapshots that use them, restores
// of the damaged files fail loudly instead of returning wrong bytes, and
// the next backup of the unchanged source heals the pool, after which the
// old snapshot restores exactly again.
func TestBitRot(t *testing.T) {
	tmp := t.TempDir()
	src, data := filepath.Join(tmp, "src"), filepath.Join(tmp, "data")
	poolDir := filepath.Join(data, "pool")
	writeSource(t, src, 0, 4, 30)
	want := treeDigest(t, src)
	startServe(t, data)
	mustCLI(t, data, "host", "add", "h1", "--method", "local", "--path", src, "--source", "files")
	var j struct {
		ID int64 `json:"id"`
	}
	json.Unmarshal([]byte(mustCLI(t, data, "backup", "run", "h1", "--json")), &j)
	if got := waitJob(t, data, j.ID, 5*time.Minute); got.State != "done" {
		t.Fatalf("backup: %+v", got)
	}
	snap := snapshots(t, data)[0]
	mustCLI(t, data, "pool", "check", "--pool", poolDir, "--read-data")

	rounds := scale(t, 4, 10)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	for round := range rounds {
		objs := objectFiles(t, poolDir)
		flips := min(len(objs), 3+rng.IntN(5))
		flipped := map[string]bool{}
		for _, i := range rng.Perm(len(objs))[:flips] {
			b, err := os.ReadFile(objs[i])
			if err != nil {
				t.Fatal(err)
			}
			b[rng.IntN(len(b))] ^= byte(1 << rng.IntN(8))
			if err := os.WriteFile(objs[i], b, 0o600); err != nil {
				t.Fatal(err)
			}
			flipped[filepath.Base(objs[i])] = true
		}
		var rep struct {
			OK       bool     `json:"ok"`
			Corrupt  []string `json:"corrupt"`
			Missing  []string `json:"missing"`
			Affected []struct {
				Snapshot string `json:"snapshot"`
				Path     string `json:"path"`
			} `json:"affected"`
		}
		out, errOut, code := cli(t, data, "pool", "check", "--pool", poolDir, "--read-data", "--json")
		if code == 0 {
			t.Fatalf("round %d: check passed with %d flipped objects:\n%s", round, flips, out)
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("round %d: check --json: %v\n%s\n%s", round, err, out, errOut)
		}
		found := map[string]bool{}
		for _, d := range rep.Corrupt {
			found[d] = true
		}
		for d := range flipped {
			if !found[d] {
				t.Errorf("round %d: flipped object %s not reported corrupt (report: %v)", round, d, rep.Corrupt)
			}
		}
		if len(rep.Corrupt) != len(flipped) {
			t.Errorf("round %d: %d corrupt reported, %d flipped", round, len(rep.Corrupt), len(flipped))
		}
		named := false
		for _, a := range rep.Affected {
			named = named || a.Snapshot == snap.ID
		}
		if !named {
			t.Errorf("round %d: the report does not name snapshot %s: %+v", round, snap.ID, rep.Affected)
		}
		if !strings.Contains(errOut, "used by snapshot") {
			t.Errorf("round %d: the error line does not name the snapshot: %q", round, errOut)
		}
		// No wrong bytes come out of a damaged snapshot: the restore fails,
		// or restores only files identical to the source.
		bad := filepath.Join(tmp, fmt.Sprintf("bad%d", round))
		_, rErr, rCode := cli(t, data, "restore", "h1/"+snap.ID, "--to", bad)
		got := map[string]string{}
		if _, err := os.Stat(bad); err == nil {
			got = treeDigest(t, bad)
		}
		for k, g := range got {
			if w, ok := want[k]; ok && strings.HasPrefix(g, "file") && g != w {
				t.Errorf("round %d: damaged snapshot restored wrong content for %s: %s, want %s (restore exit %d: %s)", round, k, g, w, rCode, rErr)
			}
		}
		if rCode == 0 && diffTrees(want, got) != "" {
			t.Errorf("round %d: restore of a damaged snapshot succeeded incompletely: %s", round, diffTrees(want, got))
		}
		_ = rErr
		// Heal: a backup of the unchanged source stores the content again.
		json.Unmarshal([]byte(mustCLI(t, data, "backup", "run", "h1", "--json")), &j)
		if got := waitJob(t, data, j.ID, 5*time.Minute); got.State != "done" {
			t.Fatalf("round %d: healing backup: %+v", round, got)
		}
		if out, errOut, code := cli(t, data, "pool", "check", "--pool", poolDir, "--read-data"); code != 0 {
			t.Fatalf("round %d: check after the healing backup: %s%s", round, out, errOut)
		}
		healed := filepath.Join(tmp, fmt.Sprintf("healed%d", round))
		mustCLI(t, data, "restore", "h1/"+snap.ID, "--to", healed)
		if d := diffTrees(want, treeDigest(t, healed)); d != "" {
			t.Fatalf("round %d: the old snapshot after healing:\n%s", round, d)
		}
		t.Logf("round %d: %d flipped objects found, named %s, healed", round, flips, snap.ID)
	}
}
