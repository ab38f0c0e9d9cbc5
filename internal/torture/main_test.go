package torture

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cairnBin is the real binary, built once by TestMain.
var cairnBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cairn-torture-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cairnBin = filepath.Join(dir, "cairn")
	build := exec.Command("go", "build", "-o", cairnBin, "github.com/cairn-backup/cairn/cmd/cairn")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building cairn:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tortureTime is TORTURE_TIME: 0 in the fast suite (make test), the time
// budget of the long one (make torture).
func tortureTime(t testing.TB) time.Duration {
	v := os.Getenv("TORTURE_TIME")
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("TORTURE_TIME=%q: want a positive duration such as 10m", v)
	}
	return d
}

// scale picks the fast or the long figure.
func scale(t testing.TB, fast, long int) int {
	if tortureTime(t) > 0 {
		return long
	}
	return fast
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serveProc is a running `cairn serve`.
type serveProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	data   string
	addr   string
	stderr *lockedBuffer
	done   chan struct{}
	err    error
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// startServe starts the binary on data and waits until /healthz answers.
func startServe(t testing.TB, data string, extra ...string) *serveProc {
	t.Helper()
	p := &serveProc{t: t, data: data, addr: freePort(t), stderr: &lockedBuffer{}, done: make(chan struct{})}
	args := append([]string{"serve", "--data", data, "--listen", p.addr}, extra...)
	p.cmd = exec.Command(cairnBin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	p.cmd.Env = append(os.Environ(), "CAIRN_DATA=")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + p.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("cairn serve exited early (%v):\n%s", p.err, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("cairn serve did not answer /healthz within 60s:\n%s", p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *serveProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// cli runs the binary with CAIRN_DATA=data.
func cli(t testing.TB, data string, args ...string) (string, string, int) {
	t.Helper()
	return cliEnv(t, []string{"CAIRN_DATA=" + data}, args...)
}

// cliEnv runs the binary with extra environment variables.
func cliEnv(t testing.TB, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cairnBin, args...)
	cmd.Env = append(append(os.Environ(), "CAIRN_DATA=", "CAIRN_PROGRESS=none", "CAIRN_POOL=", "CAIRN_SERVER=", "CAIRN_TOKEN="), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("cairn %v: %v", args, err)
		}
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func mustCLI(t testing.TB, data string, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, data, args...)
	if code != 0 {
		t.Fatalf("cairn %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// apiClient talks to serve over its unix socket (admin as the server's
// own uid).
func apiClient(data string) *http.Client {
	clientsMu.Lock()
	defer clientsMu.Unlock()
	if c, ok := clients[data]; ok {
		return c
	}
	sock := filepath.Join(data, "cairn.sock")
	c := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	clients[data] = c
	return c
}

var (
	clientsMu sync.Mutex
	clients   = map[string]*http.Client{}
)

// api sends a JSON request over the socket and decodes the answer into
// out (when not nil). It returns the status code.
func api(t testing.TB, data, method, path string, body, out any) int {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://cairn"+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := apiClient(data).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	if resp.StatusCode >= 300 && out != nil {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode
}

type job struct {
	ID       int64  `json:"id"`
	Kind     string `json:"kind"`
	Host     string `json:"host"`
	State    string `json:"state"`
	Error    string `json:"error"`
	RetryOf  int64  `json:"retry_of"`
	Progress struct {
		Phase string `json:"phase"`
		Files int64  `json:"files"`
		Bytes int64  `json:"bytes"`
	} `json:"progress"`
}

type snapshot struct {
	ID     string `json:"id"`
	Host   string `json:"host"`
	Source string `json:"source"`
	Root   string `json:"root"`
	Status string `json:"status"`
	Files  int64  `json:"files"`
	Bytes  int64  `json:"bytes"`
	Errors int64  `json:"errors"`
	JobID  int64  `json:"job_id"`
}

func getJob(t testing.TB, data string, id int64) job {
	t.Helper()
	var j job
	api(t, data, "GET", fmt.Sprintf("/api/v1/jobs/%d", id), nil, &j)
	return j
}

// waitJob polls a job until it ends.
func waitJob(t testing.TB, data string, id int64, limit time.Duration) job {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		j := getJob(t, data, id)
		switch j.State {
		case "done", "failed", "partial", "interrupted", "canceled", "cancelled":
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d still %s after %v (phase %q)", id, j.State, limit, j.Progress.Phase)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitIdle waits until no job is queued or running.
func waitIdle(t testing.TB, data string, limit time.Duration) []job {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var jobs []job
		api(t, data, "GET", "/api/v1/jobs", nil, &jobs)
		busy := ""
		for _, j := range jobs {
			if j.State == "queued" || j.State == "running" {
				busy = fmt.Sprintf("job %d (%s %s) is %s, phase %q", j.ID, j.Kind, j.Host, j.State, j.Progress.Phase)
			}
		}
		if busy == "" {
			return jobs
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not idle after %v: %s", limit, busy)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func snapshots(t testing.TB, data string) []snapshot {
	t.Helper()
	var ss []snapshot
	api(t, data, "GET", "/api/v1/snapshots", nil, &ss)
	return ss
}

// treeDigest describes every entry under root: type, permissions and the
// sha256 of file contents and link targets.
func treeDigest(t testing.TB, root string) map[string]string {
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
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			out[rel] = fmt.Sprintf("file %v %s", info.Mode().Perm(), hex.EncodeToString(h[:]))
		default:
			out[rel] = "other " + info.Mode().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	delete(out, ".")
	return out
}

// diffTrees returns a description of the first differences, "" if none.
func diffTrees(want, got map[string]string) string {
	var out []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			out = append(out, fmt.Sprintf("missing %s (%s)", k, w))
		} else if g != w {
			out = append(out, fmt.Sprintf("%s: got %q, want %q", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("extra %s (%s)", k, g))
		}
	}
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("… %d more", len(out)-10))
	}
	return strings.Join(out, "\n")
}
