package torture

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeSource makes or changes a source tree: many small files (so a
// backup runs long enough to be killed part-way), some multi-chunk random
// files, a symlink. Round r changes a share of the files and adds new ones.
func writeSource(t testing.TB, root string, r int, dirs, perDir int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(r), 7))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for d := range dirs {
		dir := filepath.Join(root, fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range perDir {
			p := filepath.Join(dir, fmt.Sprintf("f%03d.txt", f))
			if r > 0 && rng.IntN(10) != 0 {
				continue // keep 90% of the files between rounds
			}
			data := fmt.Appendf(nil, "round %d dir %d file %d %x\n", r, d, f, random(rng.IntN(2048)))
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	big := filepath.Join(root, "big", fmt.Sprintf("r%03d.bin", r))
	if err := os.MkdirAll(filepath.Dir(big), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, random(2<<20+rng.IntN(1<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	if r == 0 {
		if err := os.Symlink("d00/f000.txt", filepath.Join(root, "link")); err != nil {
			t.Fatal(err)
		}
	}
}

// crashBook remembers what each complete snapshot held.
type crashBook struct {
	roots map[string]string            // snapshot id → root digest
	trees map[string]map[string]string // snapshot id → restored tree digest
}

// verifyAfterCrash checks the invariants of the package doc. It returns
// the snapshots now listed.
func (b *crashBook) verify(t *testing.T, data, tmp string, rng *rand.Rand, iter int) []snapshot {
	t.Helper()
	ss := snapshots(t, data)
	// The catalog agrees with the pool: the same snapshot IDs, the same
	// roots.
	var manifests []struct {
		ID     string `json:"id"`
		Root   string `json:"root"`
		Status string `json:"status"`
	}
	out := mustCLI(t, data, "snapshot", "ls", "--pool", filepath.Join(data, "pool"), "--json")
	if err := json.Unmarshal([]byte(out), &manifests); err != nil {
		t.Fatalf("iteration %d: snapshot ls: %v\n%s", iter, err, out)
	}
	inPool := map[string]string{}
	for _, m := range manifests {
		inPool[m.ID] = m.Root
	}
	inCat := map[string]string{}
	for _, s := range ss {
		inCat[s.ID] = s.Root
		if r, ok := inPool[s.ID]; !ok {
			t.Errorf("iteration %d: catalog lists snapshot %s (%s), which has no manifest in the pool", iter, s.ID, s.Status)
		} else if r != s.Root {
			t.Errorf("iteration %d: snapshot %s: catalog root %s, pool root %s", iter, s.ID, s.Root, r)
		}
	}
	for id := range inPool {
		if _, ok := inCat[id]; !ok {
			t.Errorf("iteration %d: pool manifest %s is not in the catalog", iter, id)
		}
	}
	// Every complete snapshot known before keeps its root.
	for _, s := range ss {
		if want, ok := b.roots[s.ID]; ok && want != s.Root {
			t.Errorf("iteration %d: snapshot %s changed root: %s, was %s", iter, s.ID, s.Root, want)
		}
	}
	// pool check re-reads and re-hashes every object.
	if out, errOut, code := cli(t, data, "pool", "check", "--pool", filepath.Join(data, "pool"), "--read-data"); code != 0 {
		t.Fatalf("iteration %d: pool check: exit %d\n%s%s", iter, code, out, errOut)
	}
	// Restore the newest complete snapshot and one older one at random
	// and compare with what they held when they were made.
	var complete []snapshot
	for _, s := range ss {
		if s.Status == "complete" {
			complete = append(complete, s)
		}
	}
	if len(complete) == 0 {
		t.Fatalf("iteration %d: no complete snapshot left", iter)
	}
	// Oldest first: the newest is the last.
	pick := []snapshot{complete[len(complete)-1]}
	if len(complete) > 1 {
		pick = append(pick, complete[rng.IntN(len(complete)-1)])
	}
	for _, s := range pick {
		want, ok := b.trees[s.ID]
		if !ok {
			continue
		}
		dst := filepath.Join(tmp, fmt.Sprintf("verify-%d-%s", iter, s.ID))
		mustCLI(t, data, "restore", s.Host+"/"+s.ID, "--to", dst)
		if d := diffTrees(want, treeDigest(t, dst)); d != "" {
			t.Errorf("iteration %d: snapshot %s restores differently:\n%s", iter, s.ID, d)
		}
		os.RemoveAll(dst)
	}
	return ss
}

// record notes new complete snapshots: root and, for the newest, the
// source tree it was taken from (the source does not change while a
// backup runs in this test).
func (b *crashBook) record(t *testing.T, ss []snapshot, src map[string]string) {
	for _, s := range ss {
		if s.Status != "complete" {
			continue
		}
		if _, ok := b.roots[s.ID]; !ok {
			b.roots[s.ID] = s.Root
			b.trees[s.ID] = src
		}
	}
}

// TestCrashLoop kills `cairn serve` with SIGKILL at random points of
// backups, GC, retention and replication, restarts it and checks after
// each restart that the pool checks clean, the catalog agrees with the
// pool, earlier snapshots are intact, the interrupted job completes when
// re-run, and the replica catches up, checks clean and holds every
// complete snapshot with its root.
func TestCrashLoop(t *testing.T) {
	tmp := t.TempDir()
	src, data := filepath.Join(tmp, "src"), filepath.Join(tmp, "data")
	dirs, perDir := 10, scale(t, 100, 200)
	writeSource(t, src, 0, dirs, perDir)
	p := startServe(t, data)
	mustCLI(t, data, "host", "add", "h1", "--method", "local", "--path", src, "--source", "files", "--keep-last", "3")
	begin := time.Now()
	var first struct {
		ID int64 `json:"id"`
	}
	json.Unmarshal([]byte(mustCLI(t, data, "backup", "run", "h1", "--json")), &first)
	if j := waitJob(t, data, first.ID, 5*time.Minute); j.State != "done" {
		t.Fatalf("first backup: %+v", j)
	}
	full := time.Since(begin)
	// Every complete snapshot is copied to a second pool as it commits.
	replica := filepath.Join(tmp, "replica")
	api(t, data, "POST", "/api/v1/replicas", map[string]any{"name": "r1", "kind": "pool", "location": replica}, &struct{}{})
	book := &crashBook{roots: map[string]string{}, trees: map[string]map[string]string{}}
	srcTree := treeDigest(t, src)
	book.record(t, snapshots(t, data), srcTree)

	iters := scale(t, 5, 50)
	budget := tortureTime(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	t.Logf("random kill points; a full backup took %v; %d iterations", full, iters)
	phases := []string{"backup", "gc", "retention", "replication"}
	for i := 1; ; i++ {
		if i > iters && (budget == 0 || time.Since(begin) > budget/2) {
			break
		}
		phase := phases[(i-1)%len(phases)]
		writeSource(t, src, i, dirs, perDir)
		srcTree = treeDigest(t, src)
		var killed int64
		switch phase {
		case "backup":
			var j struct {
				ID int64 `json:"id"`
			}
			json.Unmarshal([]byte(mustCLI(t, data, "backup", "run", "h1", "--json")), &j)
			killed = j.ID
			// A random point of the pull: after a random number of files
			// (some kills land after the end, which must be harmless too).
			target := rng.Int64N(int64(dirs*perDir + 2))
			deadline := time.Now().Add(5 * time.Minute)
			for {
				g := getJob(t, data, j.ID)
				if g.State == "running" && g.Progress.Files >= target || g.State != "running" && g.State != "queued" || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Millisecond)
			}
		case "gc":
			// Make garbage: back up, then delete the oldest snapshot.
			var j struct {
				ID int64 `json:"id"`
			}
			json.Unmarshal([]byte(mustCLI(t, data, "backup", "run", "h1", "--json")), &j)
			if got := waitJob(t, data, j.ID, 5*time.Minute); got.State != "done" {
				t.Fatalf("iteration %d: backup before gc: %+v", i, got)
			}
			book.record(t, snapshots(t, data), srcTree)
			ss := snapshots(t, data)
			if len(ss) > 1 {
				api(t, data, "DELETE", "/api/v1/snapshots/"+ss[0].ID, nil, nil) // the oldest
			}
			var g struct {
				ID int64 `json:"id"`
			}
			api(t, data, "POST", "/api/v1/pool/gc", map[string]any{}, &g)
			killed = g.ID
			time.Sleep(time.Duration(rng.Int64N(int64(50 * time.Millisecond))))
		case "retention":
			// Retention runs at the end of a backup job: wait until the
			// pulls are done, then kill within a few milliseconds.
			var j struct {
				ID int64 `json:"id"`
			}
			json.Unmarshal([]byte(mustCLI(t, data, "backup", "run", "h1", "--json")), &j)
			killed = j.ID
			deadline := time.Now().Add(5 * time.Minute)
			for {
				g := getJob(t, data, j.ID)
				if g.Progress.Phase == "done" || g.State != "running" && g.State != "queued" || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			time.Sleep(time.Duration(rng.Int64N(int64(5 * time.Millisecond))))
		case "replication":
			// A backup commits, which starts its copy to the replica: kill
			// while the copy runs.
			var j struct {
				ID int64 `json:"id"`
			}
			json.Unmarshal([]byte(mustCLI(t, data, "backup", "run", "h1", "--json")), &j)
			killed = j.ID
			if got := waitJob(t, data, j.ID, 5*time.Minute); got.State != "done" {
				t.Fatalf("iteration %d: backup before replication: %+v", i, got)
			}
			deadline := time.Now().Add(time.Minute)
			for time.Now().Before(deadline) {
				var rs []struct {
					Running bool `json:"running"`
				}
				api(t, data, "GET", "/api/v1/replicas", nil, &rs)
				if len(rs) == 1 && rs[0].Running {
					t.Logf("iteration %d: the copy to the replica is running", i)
					break
				}
				time.Sleep(time.Millisecond)
			}
			time.Sleep(time.Duration(rng.Int64N(int64(20 * time.Millisecond))))
		}
		before := getJob(t, data, killed).State
		p.kill()
		p = startServe(t, data)
		jobs := waitIdle(t, data, 5*time.Minute)
		// The killed job either had ended, or it is interrupted and its
		// re-run completed.
		if before == "running" || before == "queued" {
			var rerun *job
			for k := range jobs {
				if jobs[k].RetryOf == killed {
					rerun = &jobs[k]
				}
			}
			switch {
			case rerun != nil && rerun.State != "done":
				t.Fatalf("iteration %d (%s): re-run of job %d: %+v", i, phase, killed, *rerun)
			case rerun == nil:
				if st := getJob(t, data, killed).State; st != "done" {
					t.Fatalf("iteration %d (%s): killed job %d is %s and was not re-run", i, phase, killed, st)
				}
			}
		}
		ss := book.verify(t, data, tmp, rng, i)
		book.record(t, ss, srcTree)
		verifyReplica(t, data, replica, book, i)
		t.Logf("iteration %d: killed %s (job %d, was %s); %d snapshots, all checks pass", i, phase, killed, before, len(ss))
		if t.Failed() {
			t.Fatalf("stopping after iteration %d; serve log:\n%s", i, lastLines(p.stderr.String(), 40))
		}
	}
	// A final GC after all the crashes leaves a pool that still checks.
	var g struct {
		ID int64 `json:"id"`
	}
	api(t, data, "POST", "/api/v1/pool/gc", map[string]any{}, &g)
	if j := waitJob(t, data, g.ID, 5*time.Minute); j.State != "done" {
		t.Fatalf("final gc: %+v", j)
	}
	book.verify(t, data, tmp, rng, -1)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// verifyReplica waits for the replica to catch up after a restart, then
// checks it: it checks clean, and holds every complete snapshot of the
// source with the root the source recorded.
func verifyReplica(t *testing.T, data, replica string, book *crashBook, iter int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	want := map[string]string{}
	for _, s := range snapshots(t, data) {
		if s.Status == "complete" {
			want[s.ID] = s.Root
		}
	}
	for {
		var ms []struct {
			ID   string `json:"id"`
			Root string `json:"root"`
		}
		out, errOut, code := cli(t, data, "snapshot", "ls", "--pool", replica, "--json")
		have := map[string]string{}
		if code == 0 && json.Unmarshal([]byte(out), &ms) == nil {
			for _, m := range ms {
				have[m.ID] = m.Root
			}
		}
		missing := ""
		for id, root := range want {
			if r, ok := have[id]; !ok {
				missing = id
			} else if r != root {
				t.Fatalf("iteration %d: replica snapshot %s has root %s, the source %s", iter, id, r, root)
			}
		}
		for id, r := range have {
			if w, ok := book.roots[id]; ok && w != r {
				t.Fatalf("iteration %d: replica snapshot %s has root %s, recorded %s", iter, id, r, w)
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("iteration %d: replica still lacks snapshot %s (%s)", iter, missing, errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, errOut, code := cli(t, data, "pool", "check", "--pool", replica, "--read-data"); code != 0 {
		t.Fatalf("iteration %d: replica check: %s%s", iter, out, errOut)
	}
}
