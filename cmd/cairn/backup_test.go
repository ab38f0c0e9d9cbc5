package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/cairn-backup/cairn/internal/testenv"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cairnCLI runs the binary with CAIRN_DATA=data and returns stdout,
// stderr and the exit code.
func cairnCLI(t *testing.T, data string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cairnBin, args...)
	cmd.Env = append(os.Environ(), "CAIRN_DATA="+data, "CAIRN_PROGRESS=none", "CAIRN_POOL=", "CAIRN_SERVER=", "CAIRN_TOKEN=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("cairn %v: %v", args, err)
		}
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// mustCLI runs the binary and fails the test on a non-zero exit.
func mustCLI(t *testing.T, data string, args ...string) string {
	t.Helper()
	out, errOut, code := cairnCLI(t, data, args...)
	if code != 0 {
		t.Fatalf("cairn %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// makeTree writes a small but varied source tree: nested directories,
// empty, small, compressible and multi-chunk random files, a symlink and
// unusual modes.
func makeTree(t *testing.T, root string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	files := map[string][]byte{
		"README":                  []byte("hello cairn\n"),
		"empty":                   {},
		"etc/app.conf":            bytes.Repeat([]byte("key = value\n"), 2000),
		"etc/deep/er/still/x.txt": []byte("deep"),
		"var/data.bin":            random(3<<20 + 12345), // several chunks
		"var/small.bin":           random(4096),
		"name with spaces.txt":    []byte("spaces"),
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "var/small.bin"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("etc/app.conf", filepath.Join(root, "conf-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "emptydir"), 0o750); err != nil {
		t.Fatal(err)
	}
}

// treeDigest describes every entry under root: type, permissions, sha256
// of file contents and symlink targets.
func treeDigest(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "symlink " + target
		case d.IsDir():
			out[rel] = fmt.Sprintf("dir %v", info.Mode().Perm())
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %v %s", info.Mode().Perm(), hex.EncodeToString(h.Sum(nil)))
		default:
			out[rel] = "other " + info.Mode().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	delete(out, ".") // the restore target's own mode is ours to choose
	return out
}

func compareTrees(t *testing.T, want, got map[string]string) {
	t.Helper()
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("restored tree lacks %s (%s)", k, w)
		} else if g != w {
			t.Errorf("%s: restored %q, source %q", k, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("restored tree has extra %s (%s)", k, g)
		}
	}
}

type e2eSnapshot struct {
	ID       string `json:"id"`
	Host     string `json:"host"`
	Source   string `json:"source"`
	Status   string `json:"status"`
	Files    int64  `json:"files"`
	Bytes    int64  `json:"bytes"`
	BytesNew int64  `json:"bytes_new"`
	Finished string `json:"finished"`
}

// TestApplianceEndToEnd is issue 4's "done means": serve, host add with
// the local method, backup run --wait, backup ls --json, /metrics, and a
// restore that gives back an identical tree.
func TestApplianceEndToEnd(t *testing.T) {
	testenv.NeedRoot(t, "the unix socket grants admin to root (or the server's own uid); run as root")
	tmp := t.TempDir()
	src, data := filepath.Join(tmp, "src"), filepath.Join(tmp, "data")
	makeTree(t, src)
	want := treeDigest(t, src)
	p := startServe(t, data)

	out := mustCLI(t, data, "host", "add", "web1", "--method", "local", "--path", src, "--source", "files", "--schedule", "0 2 * * *")
	if !strings.Contains(out, "added host web1") {
		t.Fatalf("host add said %q", out)
	}
	var hosts []struct {
		Name    string
		Sources []struct{ Name, Method, Path string }
	}
	if err := json.Unmarshal([]byte(mustCLI(t, data, "host", "ls", "--json")), &hosts); err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 || hosts[0].Name != "web1" || len(hosts[0].Sources) != 1 ||
		hosts[0].Sources[0].Method != "local" || hosts[0].Sources[0].Path != src {
		t.Fatalf("host ls --json = %+v", hosts)
	}

	mustCLI(t, data, "backup", "run", "web1", "--wait")
	var snaps []e2eSnapshot
	if err := json.Unmarshal([]byte(mustCLI(t, data, "backup", "ls", "--json")), &snaps); err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 1 {
		t.Fatalf("backup ls --json: %d snapshots, want 1: %+v", len(snaps), snaps)
	}
	s1 := snaps[0]
	var wantBytes int64
	var wantFiles int64
	for _, d := range want {
		if strings.HasPrefix(d, "file ") {
			wantFiles++
		}
	}
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if d.Type().IsRegular() {
			fi, _ := d.Info()
			wantBytes += fi.Size()
		}
		return nil
	})
	if s1.Host != "web1" || s1.Source != "files" || s1.Status != "complete" || s1.Bytes != wantBytes || s1.Files < wantFiles {
		t.Fatalf("snapshot %+v: want host web1, source files, complete, %d bytes, ≥ %d files", s1, wantBytes, wantFiles)
	}

	// /metrics shows the success timestamp (over the socket: root is admin).
	resp, err := unixClient(filepath.Join(data, "cairn.sock")).Get("http://cairn/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	m := regexp.MustCompile(`(?m)^cairn_backup_last_success_timestamp_seconds\{host="web1",source="files"\} (\S+)$`).FindSubmatch(metrics)
	if m == nil {
		t.Fatalf("/metrics has no success timestamp for web1/files:\n%s", metrics)
	}
	ts, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil || ts <= 0 {
		t.Fatalf("success timestamp %q", m[1])
	}
	if !bytes.Contains(metrics, []byte(`cairn_backup_last_success{host="web1",source="files"} 1`)) {
		t.Fatalf("/metrics: last status of web1/files is not success:\n%s", metrics)
	}

	if out := mustCLI(t, data, "host", "show", "web1", "--effective"); !regexp.MustCompile(`schedule +0 2 \* \* \* +host`).MatchString(out) {
		t.Fatalf("host show --effective:\n%s", out)
	}
	if out := mustCLI(t, data, "retention", "preview", "web1"); !strings.Contains(out, "keep everything") || !strings.Contains(out, s1.ID) {
		t.Fatalf("retention preview: %s", out)
	}

	// Full restore: an identical tree.
	restored := filepath.Join(tmp, "restored")
	mustCLI(t, data, "restore", "web1/"+s1.ID, "--to", restored)
	compareTrees(t, want, treeDigest(t, restored))

	// A second backup reuses everything: nothing new is stored.
	mustCLI(t, data, "backup", "run", "web1", "--wait")
	snaps = nil
	if err := json.Unmarshal([]byte(mustCLI(t, data, "backup", "ls", "web1", "--json")), &snaps); err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 2 || snaps[1].Status != "complete" || snaps[1].Bytes != wantBytes {
		t.Fatalf("after a second backup: %+v", snaps)
	}
	if snaps[1].BytesNew > 64<<10 {
		t.Errorf("the unchanged second backup stored %d new bytes", snaps[1].BytesNew)
	}

	// latest/SOURCE/sub-path restores a subtree.
	sub := filepath.Join(tmp, "sub")
	mustCLI(t, data, "restore", "web1/latest/files/etc", "--to", sub)
	wantSub := map[string]string{}
	for k, v := range want {
		if rel, ok := strings.CutPrefix(k, "etc/"); ok {
			wantSub[rel] = v
		}
	}
	compareTrees(t, wantSub, treeDigest(t, sub))

	// A restore never overwrites: a non-empty target is refused.
	_, errOut, code := cairnCLI(t, data, "restore", "web1/"+s1.ID, "--to", restored)
	if code == 0 || !strings.Contains(errOut, "not empty") {
		t.Fatalf("restore onto a non-empty dir: exit %d, %q", code, errOut)
	}

	var jobs []struct{ Kind, State string }
	if err := json.Unmarshal([]byte(mustCLI(t, data, "job", "ls", "--json")), &jobs); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, j := range jobs {
		if j.State != "done" {
			t.Errorf("job %+v did not end done", j)
		}
		kinds[j.Kind]++
	}
	if kinds["backup"] != 2 || kinds["restore"] != 2 {
		t.Errorf("jobs by kind %v, want 2 backups and 2 restores", kinds)
	}

	// The catalog's snapshot index can be rebuilt from the pool alone.
	out = mustCLI(t, data, "catalog", "rebuild", "--json")
	var rb struct{ Snapshots int }
	if err := json.Unmarshal([]byte(out), &rb); err != nil || rb.Snapshots != 2 {
		t.Fatalf("catalog rebuild: %s (%v)", out, err)
	}
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exit %d:\n%s", code, p.stderr)
	}
}

// TestApplianceBadInput: every mistake exits non-zero with one clear line.
func TestApplianceBadInput(t *testing.T) {
	testenv.NeedRoot(t, "needs root for the socket")
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	src := filepath.Join(tmp, "src")
	os.MkdirAll(src, 0o755)

	// No appliance running: a clear pointer to cairn serve.
	_, errOut, code := cairnCLI(t, data, "host", "ls")
	if code == 0 || !strings.Contains(errOut, "no appliance running") {
		t.Fatalf("host ls without serve: exit %d, %q", code, errOut)
	}
	startServe(t, data)
	mustCLI(t, data, "host", "add", "ok1", "--method", "local", "--path", src)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"host", "add", "h1", "--method", "local", "--path", src, "--schedule", "0 2 * *"}, "want 5 fields"},
		{[]string{"host", "add", "h1", "--method", "local", "--path", src, "--schedule", "0 25 * * *"}, "cron"},
		{[]string{"host", "add", "h1", "--method", "nosuch", "--path", src}, `unknown source method "nosuch"`},
		{[]string{"host", "add", "h1", "--path", src}, "--method"},
		{[]string{"host", "add", "bad/name", "--method", "local", "--path", src}, "host name"},
		{[]string{"host", "add", "ok1", "--method", "local", "--path", src}, "already exists"},
		{[]string{"host", "add", "h1", "--method", "local", "--path", "relative/dir"}, "must be absolute"},
		{[]string{"host", "show", "nohost"}, "host nohost: not found"},
		{[]string{"backup", "run", "nohost"}, "host nohost: not found"},
		{[]string{"backup", "ls", "nohost"}, "host nohost: not found"},
		{[]string{"job", "cancel", "abc"}, "not a job ID"},
		{[]string{"job", "cancel", "9999"}, "job 9999: not found"},
		{[]string{"host", "frobnicate"}, "unknown subcommand"},
		{[]string{"restore", "ok1/latest/src", "--to", filepath.Join(tmp, "r")}, "no complete snapshot of ok1/src"},
		{[]string{"user", "add", "bob", "--role", "admin"}, "--password-file"},
	}
	for _, c := range cases {
		out, errOut, code := cairnCLI(t, data, c.args...)
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		if code == 0 || !strings.Contains(errOut, c.want) || len(lines) != 1 {
			t.Errorf("cairn %s: exit %d, stderr %q (stdout %q); want non-zero and one line containing %q",
				strings.Join(c.args, " "), code, errOut, out, c.want)
		}
	}
	// Maintenance mode refuses new backups with its reason.
	mustCLI(t, data, "maintenance", "on", "--reason", "disk swap")
	_, errOut, code = cairnCLI(t, data, "backup", "run", "ok1")
	if code == 0 || !strings.Contains(errOut, "maintenance mode is on (disk swap)") {
		t.Fatalf("backup in maintenance: exit %d %q", code, errOut)
	}
	if out := mustCLI(t, data, "maintenance", "status"); !strings.Contains(out, "disk swap") {
		t.Fatalf("maintenance status: %q", out)
	}
	mustCLI(t, data, "maintenance", "off")
	// Nothing of the failed adds was stored.
	var hosts []struct{ Name string }
	json.Unmarshal([]byte(mustCLI(t, data, "host", "ls", "--json")), &hosts)
	if len(hosts) != 1 || hosts[0].Name != "ok1" {
		t.Fatalf("hosts after failed adds: %+v", hosts)
	}
}

// The API over TCP needs a token; with a token the CLI works remotely.
func TestApplianceTokenOverTCP(t *testing.T) {
	testenv.NeedRoot(t, "needs root for the socket")
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	p := startServe(t, data)
	pw := filepath.Join(tmp, "pw")
	os.WriteFile(pw, []byte("correct horse battery\n"), 0o600)
	mustCLI(t, data, "user", "add", "alice", "--role", "operator", "--password-file", pw)
	tok := strings.TrimSpace(mustCLI(t, data, "token", "create", "ci", "--user", "alice"))
	if !strings.HasPrefix(tok, "cairn_") {
		t.Fatalf("token create printed %q", tok)
	}
	server := "http://" + p.addr
	// Without a token: 401 with one clear line.
	_, errOut, code := cairnCLI(t, data, "host", "ls", "--server", server)
	if code == 0 || !strings.Contains(errOut, "authentication required") {
		t.Fatalf("host ls without token: exit %d %q", code, errOut)
	}
	mustCLI(t, data, "host", "ls", "--server", server, "--token", tok)
	// An operator may not manage users.
	_, errOut, code = cairnCLI(t, data, "user", "ls", "--server", server, "--token", tok)
	if code == 0 || !strings.Contains(errOut, "needs the admin role") {
		t.Fatalf("user ls as operator: exit %d %q", code, errOut)
	}
	var st struct {
		SetupDone bool `json:"setup_done"`
	}
	getJSON(t, http.DefaultClient, server+"/api/v1/status", &st)
	if st.SetupDone {
		t.Fatal("setup_done with no admin user")
	}
	mustCLI(t, data, "user", "add", "root", "--role", "admin", "--password-file", pw)
	getJSON(t, http.DefaultClient, server+"/api/v1/status", &st)
	if !st.SetupDone {
		t.Fatal("setup_done false with an admin user")
	}
	// Revoking the token locks it out.
	var toks []struct{ ID int64 }
	json.Unmarshal([]byte(mustCLI(t, data, "token", "ls", "--json")), &toks)
	if len(toks) != 1 {
		t.Fatalf("token ls: %+v", toks)
	}
	mustCLI(t, data, "token", "rm", strconv.FormatInt(toks[0].ID, 10))
	_, errOut, code = cairnCLI(t, data, "host", "ls", "--server", server, "--token", tok)
	if code == 0 || !strings.Contains(errOut, "invalid or revoked token") {
		t.Fatalf("host ls with a revoked token: exit %d %q", code, errOut)
	}
}

// TestApplianceCrashDuringBackup is issue 4's crash test: kill -9 of
// `cairn serve` in the middle of a backup; after a restart the job is run
// again and the earlier snapshot is intact.
func TestApplianceCrashDuringBackup(t *testing.T) {
	testenv.NeedRoot(t, "needs root for the socket")
	tmp := t.TempDir()
	src, data := filepath.Join(tmp, "src"), filepath.Join(tmp, "data")
	makeTree(t, src)
	first := treeDigest(t, src)
	p := startServe(t, data)
	mustCLI(t, data, "host", "add", "web1", "--method", "local", "--path", src, "--source", "files")
	mustCLI(t, data, "backup", "run", "web1", "--wait")
	var snaps []e2eSnapshot
	json.Unmarshal([]byte(mustCLI(t, data, "backup", "ls", "--json")), &snaps)
	if len(snaps) != 1 {
		t.Fatalf("first backup: %+v", snaps)
	}
	s1 := snaps[0]

	// Enough files that the second backup is still running when killed.
	for d := range 20 {
		dir := filepath.Join(src, "many", fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range 200 {
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
	deadline := time.Now().Add(time.Minute)
	for {
		var j struct {
			State    string
			Progress struct{ Files int64 }
		}
		getJSON(t, client, fmt.Sprintf("http://cairn/api/v1/jobs/%d", job.ID), &j)
		if j.State == "running" && j.Progress.Files > 20 {
			break
		}
		if j.State != "queued" && j.State != "running" || time.Now().After(deadline) {
			t.Fatalf("job %d is %s before it could be killed mid-way (files %d)", job.ID, j.State, j.Progress.Files)
		}
		time.Sleep(time.Millisecond)
	}
	p.cmd.Process.Kill()
	<-p.done

	// Restart: the job is marked interrupted and run again to the end.
	startServe(t, data)
	var jobs []struct {
		ID      int64  `json:"id"`
		State   string `json:"state"`
		RetryOf int64  `json:"retry_of"`
	}
	deadline = time.Now().Add(2 * time.Minute)
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
	if jobs[0].RetryOf != job.ID || jobs[1].ID != job.ID || jobs[1].State != "interrupted" {
		t.Fatalf("jobs after the crash: %+v (killed job %d)", jobs, job.ID)
	}
	snaps = nil
	json.Unmarshal([]byte(mustCLI(t, data, "backup", "ls", "--json")), &snaps)
	if len(snaps) != 2 || snaps[0].ID != s1.ID || snaps[0].Status != "complete" || snaps[1].Status != "complete" || snaps[1].Files < 4000 {
		t.Fatalf("snapshots after the crash: %+v", snaps)
	}
	// The earlier snapshot is intact, and so is the new one.
	r1 := filepath.Join(tmp, "r1")
	mustCLI(t, data, "restore", "web1/"+s1.ID, "--to", r1)
	compareTrees(t, first, treeDigest(t, r1))
	r2 := filepath.Join(tmp, "r2")
	mustCLI(t, data, "restore", "web1/"+snaps[1].ID, "--to", r2)
	compareTrees(t, treeDigest(t, src), treeDigest(t, r2))
	out := mustCLI(t, data, "pool", "check")
	if !strings.Contains(out, "no errors") {
		t.Fatalf("pool check after the crash: %s", out)
	}
}

// TestApplianceHostVerbs: edit, enable/disable, sources and rm through the
// CLI, checked with --json.
func TestApplianceHostVerbs(t *testing.T) {
	testenv.NeedRoot(t, "needs root for the socket")
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "srv", "b")
	os.MkdirAll(a, 0o755)
	os.MkdirAll(b, 0o755)
	startServe(t, data)
	type hostJSON struct {
		Name      string
		Enabled   bool
		Address   string
		Sources   []struct{ Name, Path string }
		Schedules []struct{ Cron, Jitter string }
		Retention struct {
			Last  int `json:"keep_last"`
			Daily int `json:"keep_daily"`
		}
	}
	show := func() hostJSON {
		var h hostJSON
		if err := json.Unmarshal([]byte(mustCLI(t, data, "host", "show", "h", "--json")), &h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	mustCLI(t, data, "group", "add", "web", "keep_daily=7")
	mustCLI(t, data, "group", "defaults", "schedule=0 3 * * *")
	if _, errOut, code := cairnCLI(t, data, "group", "set", "web", "schedule=bogus"); code == 0 || !strings.Contains(errOut, "schedule") {
		t.Fatalf("bad group schedule: %d %q", code, errOut)
	}
	if out := mustCLI(t, data, "group", "ls"); !strings.Contains(out, "keep_daily=7") {
		t.Fatalf("group ls:\n%s", out)
	}
	mustCLI(t, data, "host", "add", "h", "--method", "local", "--path", a, "--address", "h.example", "--group", "web")
	eff := mustCLI(t, data, "host", "show", "h", "--effective")
	if !regexp.MustCompile(`schedule +0 3 \* \* \* +global`).MatchString(eff) || !regexp.MustCompile(`keep_daily +7 +group:web`).MatchString(eff) {
		t.Fatalf("effective settings:\n%s", eff)
	}
	mustCLI(t, data, "host", "edit", "h", "--schedule", "@daily", "--jitter", "30m", "--keep-last", "3", "--keep-daily", "7")
	h := show()
	if h.Address != "h.example" || len(h.Schedules) != 1 || h.Schedules[0].Cron != "@daily" || h.Schedules[0].Jitter != "30m0s" ||
		h.Retention.Last != 3 || h.Retention.Daily != 7 || len(h.Sources) != 1 || h.Sources[0].Name != "a" {
		t.Fatalf("after edit: %+v", h)
	}
	mustCLI(t, data, "host", "edit", "h", "--method", "local", "--path", b)
	if h = show(); len(h.Sources) != 2 || h.Sources[1].Name != "b" || h.Sources[1].Path != b {
		t.Fatalf("after adding a source: %+v", h)
	}
	mustCLI(t, data, "host", "edit", "h", "--remove-source", "a", "--no-schedule")
	if h = show(); len(h.Sources) != 1 || h.Sources[0].Name != "b" || len(h.Schedules) != 0 {
		t.Fatalf("after removing a source and the schedule: %+v", h)
	}
	mustCLI(t, data, "host", "disable", "h")
	if h = show(); h.Enabled {
		t.Fatal("still enabled")
	}
	if out := mustCLI(t, data, "host", "ls"); !regexp.MustCompile(`(?m)^h +no `).MatchString(out) {
		t.Fatalf("host ls:\n%s", out)
	}
	mustCLI(t, data, "host", "enable", "h")
	if h = show(); !h.Enabled {
		t.Fatal("still disabled")
	}
	mustCLI(t, data, "host", "rm", "h")
	if _, errOut, code := cairnCLI(t, data, "host", "show", "h"); code == 0 || !strings.Contains(errOut, "host h: not found") {
		t.Fatalf("show after rm: %d %q", code, errOut)
	}
}
