package torture

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// metric returns the value of the first sample of name in /metrics text.
func metric(t testing.TB, text, name string) (float64, bool) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `(\{[^}]*\})? (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[2], 64)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v, true
}

func getBody(t testing.TB, data, path string) (int, []byte) {
	t.Helper()
	resp, err := apiClient(data).Get("http://cairn" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, b
}

// TestDiskFull puts the pool on a small tmpfs and backs up more than fits:
// the backup fails naming "no space left on device", the pool checks
// clean, the earlier snapshot still restores and downloads, the metrics
// show the full filesystem and the failure (the alerts' inputs), GC with
// no grace reclaims the partial objects, and once the source shrinks
// backups work again.
func TestDiskFull(t *testing.T) {
	testenv.NeedRoot(t, "mounts a small tmpfs for the pool")
	tmp := t.TempDir()
	mnt := filepath.Join(tmp, "fs")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	src, data, poolDir := filepath.Join(tmp, "src"), filepath.Join(tmp, "data"), filepath.Join(mnt, "pool")
	writeSource(t, src, 0, 3, 20) // ~3 MiB
	before := treeDigest(t, src)
	p := startServe(t, data, "--pool", poolDir)
	mustCLI(t, data, "host", "add", "h1", "--method", "local", "--path", src, "--source", "files")
	backup := func() job {
		var j struct {
			ID int64 `json:"id"`
		}
		json.Unmarshal([]byte(mustCLI(t, data, "backup", "run", "h1", "--json")), &j)
		return waitJob(t, data, j.ID, 5*time.Minute)
	}
	if j := backup(); j.State != "done" {
		t.Fatalf("first backup: %+v", j)
	}
	first := snapshots(t, data)[0]

	// 40 MiB of random data into a 24 MiB filesystem.
	big := make([]byte, 8<<20)
	for i := range 5 {
		rand.Read(big)
		if err := os.WriteFile(filepath.Join(src, "big", fmt.Sprintf("fill%d.bin", i)), big, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	j := backup()
	if j.State == "done" {
		t.Fatalf("a 40 MiB backup into 24 MiB succeeded: %+v", j)
	}
	if !strings.Contains(j.Error, "no space left on device") {
		t.Errorf("the failure does not say the disk is full: %q", j.Error)
	}
	for _, s := range snapshots(t, data) {
		if s.ID != first.ID && s.Status == "complete" {
			t.Errorf("snapshot %s of the failed backup is marked complete", s.ID)
		}
	}
	if out, errOut, code := cli(t, data, "pool", "check", "--pool", poolDir, "--read-data"); code != 0 {
		t.Fatalf("pool check on a full disk: %s%s", out, errOut)
	}
	// Restores keep working on the full disk: a download and a restore job.
	var st syscallStatfs
	statfs(t, mnt, &st)
	code, body := getBody(t, data, "/api/v1/snapshots/"+first.ID+"/file/d00/f000.txt")
	sum := sha256.Sum256(body)
	if code != 200 || "file -rw-r--r-- "+hex.EncodeToString(sum[:]) != before["d00/f000.txt"] {
		t.Fatalf("download on a full disk: %d, %q", code, body)
	}
	dst := filepath.Join(tmp, "restored")
	mustCLI(t, data, "restore", "h1/"+first.ID, "--to", dst)
	if d := diffTrees(before, treeDigest(t, dst)); d != "" {
		t.Fatalf("restore on a full disk:\n%s", d)
	}
	// The metrics behind the alerts: the filesystem is (nearly) full and
	// the last backup failed.
	_, mtext := getBody(t, data, "/metrics")
	avail, ok1 := metric(t, string(mtext), "cairn_pool_filesystem_avail_bytes")
	size, ok2 := metric(t, string(mtext), "cairn_pool_filesystem_size_bytes")
	if !ok1 || !ok2 || size < 20<<20 || avail/size >= 0.10 {
		t.Errorf("space metrics: avail %v (%v) size %v (%v): CairnPoolSpaceLow would not fire", avail, ok1, size, ok2)
	}
	if v, ok := metric(t, string(mtext), "cairn_backup_last_success"); !ok || v != 0 {
		t.Errorf("cairn_backup_last_success = %v (%v): CairnBackupFailed would not fire", v, ok)
	}
	// GC without grace reclaims what the failed backup wrote.
	out := mustCLI(t, data, "pool", "gc", "--pool", poolDir, "--grace", "0", "--json")
	var rep struct {
		Swept int `json:"Swept"`
	}
	json.Unmarshal([]byte(out), &rep)
	var after syscallStatfs
	statfs(t, mnt, &after)
	if after.avail() < st.avail()+8<<20 {
		t.Errorf("GC freed only %d bytes (%s)", after.avail()-st.avail(), strings.TrimSpace(out))
	}
	mustCLI(t, data, "pool", "check", "--pool", poolDir, "--read-data")
	// Back to normal once the data fits.
	os.RemoveAll(filepath.Join(src, "big"))
	writeSource(t, src, 1, 3, 20)
	if j := backup(); j.State != "done" {
		t.Fatalf("backup after freeing space: %+v", j)
	}
	resp, err := http.Get("http://" + p.addr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz after the disk-full episode: %v %v", resp, err)
	}
	resp.Body.Close()
	t.Logf("ENOSPC: %q; GC freed %d bytes", j.Error, after.avail()-st.avail())
}
