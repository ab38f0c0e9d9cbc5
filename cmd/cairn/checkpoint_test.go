package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// TestApplianceKillKeepsCheckpoint is issue 4's partial-snapshot crash
// test: kill -9 of `cairn serve` mid-backup leaves the snapshot as far as
// its last writer checkpoint, listed and labelled partial, in a pool that
// checks clean; after a restart the job runs again with the partial as
// its basis and ends with a complete snapshot identical to the source.
func TestApplianceKillKeepsCheckpoint(t *testing.T) {
	testenv.NeedRoot(t, "needs root for the socket")
	tmp := t.TempDir()
	src, data := filepath.Join(tmp, "src"), filepath.Join(tmp, "data")
	makeTree(t, src)
	p := startServe(t, data)
	mustCLI(t, data, "host", "add", "web1", "--method", "local", "--path", src, "--source", "files",
		"--option", "checkpoint_files=1000")
	// Bad checkpoint, snapshot and jump options are refused by host add
	// with one line naming them.
	for _, tc := range []struct{ opt, want string }{
		{"checkpoint_every=5ms", "checkpoint_every"},
		{"snapshot=btrfs", "btrfs_subvolume"},
		{"jump=bad host", "want [user@]host[:port]"},
	} {
		_, errOut, code := cairnCLI(t, data, "host", "add", "bad", "--method", "local", "--path", src, "--option", tc.opt)
		if code == 0 || !strings.Contains(errOut, tc.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Fatalf("host add --option %s: exit %d %q", tc.opt, code, errOut)
		}
	}
	mustCLI(t, data, "backup", "run", "web1", "--wait")
	var snaps []e2eSnapshot
	json.Unmarshal([]byte(mustCLI(t, data, "backup", "ls", "--json")), &snaps)
	if len(snaps) != 1 || snaps[0].Status != "complete" {
		t.Fatalf("first backup: %+v", snaps)
	}
	s1 := snaps[0]

	// Many files, so the second backup passes several checkpoints and is
	// still running when one is seen.
	for d := range 30 {
		dir := filepath.Join(src, "many", fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range 300 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", f)), []byte(fmt.Sprintf("%d/%d\n", d, f)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	var job struct {
		ID int64 `json:"id"`
	}
	json.Unmarshal([]byte(mustCLI(t, data, "backup", "run", "web1", "--json")), &job)
	client := unixClient(filepath.Join(data, "cairn.sock"))
	deadline := time.Now().Add(2 * time.Minute)
	var partial e2eSnapshot
	for partial.ID == "" {
		var list []e2eSnapshot
		getJSON(t, client, "http://cairn/api/v1/snapshots?host=web1", &list)
		for _, s := range list {
			if s.Status == "partial" && s.Files >= 1000 {
				partial = s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of job %d seen: %+v", job.ID, list)
		}
	}
	p.cmd.Process.Kill()
	<-p.done

	// Offline, straight on the pool: the checkpoint is a partial
	// snapshot and the pool checks clean.
	poolDir := filepath.Join(data, "pool")
	out := mustCLI(t, data, "snapshot", "ls", "--pool", poolDir, "--json")
	if !strings.Contains(out, partial.ID) || !strings.Contains(out, `"partial"`) {
		t.Fatalf("snapshot ls after the kill lacks the partial %s:\n%s", partial.ID, out)
	}
	out = mustCLI(t, data, "pool", "check", "--pool", poolDir, "--read-data")
	if !strings.Contains(out, "no errors") {
		t.Fatalf("pool check after the kill: %s", out)
	}
	// Everything in the partial is exactly as in the source.
	rp := filepath.Join(tmp, "rp")
	mustCLI(t, data, "restore", "--pool", poolDir, partial.ID, "--to", rp)
	want, got := treeDigest(t, src), treeDigest(t, rp)
	for k, g := range got {
		if want[k] != g {
			t.Errorf("partial snapshot: %s is %q, source %q", k, g, want[k])
		}
	}
	if len(got) < 1000 || len(got) >= len(want) {
		t.Fatalf("partial snapshot holds %d of %d entries", len(got), len(want))
	}

	// Restart: the job runs again, with the partial as its basis.
	p = startServe(t, data)
	var jobs []struct {
		ID       int64  `json:"id"`
		State    string `json:"state"`
		RetryOf  int64  `json:"retry_of"`
		Progress struct {
			Files, Skipped int64
		} `json:"progress"`
	}
	deadline = time.Now().Add(3 * time.Minute)
	for {
		getJSON(t, client, "http://cairn/api/v1/jobs?host=web1", &jobs)
		if len(jobs) == 3 && jobs[0].State == "done" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no completed re-run: %+v", jobs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if jobs[0].RetryOf != job.ID || jobs[1].State != "interrupted" {
		t.Fatalf("jobs after the kill: %+v (killed job %d)", jobs, job.ID)
	}
	t.Logf("killed with a checkpoint of %d files (%d entries restored); the re-run skipped %d of %d files", partial.Files, len(got), jobs[0].Progress.Skipped, jobs[0].Progress.Files)
	if jobs[0].Progress.Skipped < partial.Files-10 {
		t.Errorf("the re-run skipped %d unchanged files; the partial it should build on has %d", jobs[0].Progress.Skipped, partial.Files)
	}
	snaps = nil
	json.Unmarshal([]byte(mustCLI(t, data, "backup", "ls", "--json")), &snaps)
	if len(snaps) != 3 || snaps[0].ID != s1.ID || snaps[1].ID != partial.ID || snaps[1].Status != "partial" || snaps[2].Status != "complete" {
		t.Fatalf("snapshots after the re-run: %+v", snaps)
	}
	r2 := filepath.Join(tmp, "r2")
	mustCLI(t, data, "restore", "web1/"+snaps[2].ID, "--to", r2)
	compareTrees(t, treeDigest(t, src), treeDigest(t, r2))
	p.stop(syscall.SIGTERM)
	out = mustCLI(t, data, "pool", "check", "--pool", poolDir)
	if !strings.Contains(out, "no errors") {
		t.Fatalf("pool check after the re-run: %s", out)
	}
}
