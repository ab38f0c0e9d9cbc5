package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

// cairnBin is the real binary, built once by TestMain with a test version
// stamp. Tests of every verb drive it.
var cairnBin string

const testVersion = "v0.0.0-test"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cairn-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cairnBin = filepath.Join(dir, "cairn")
	build := exec.Command("go", "build", "-o", cairnBin, "-ldflags", "-X main.version="+testVersion, ".")
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

// lockedBuffer is a bytes.Buffer safe to read while a process writes it.
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
	t      *testing.T
	cmd    *exec.Cmd
	data   string
	addr   string // 127.0.0.1:port
	stderr *lockedBuffer
	done   chan struct{}
	err    error // of Wait, once done is closed
}

func freePort(t *testing.T) string {
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
func startServe(t *testing.T, data string, extra ...string) *serveProc {
	t.Helper()
	p := startServeNoWait(t, data, extra...)
	deadline := time.Now().Add(30 * time.Second)
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
			t.Fatalf("cairn serve did not answer /healthz within 30s:\n%s", p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startServeNoWait(t *testing.T, data string, extra ...string) *serveProc {
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
	return p
}

// stop sends sig and waits for the exit; it returns the exit code.
func (p *serveProc) stop(sig os.Signal) int {
	p.t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("cairn serve did not exit within 30s of %v:\n%s", sig, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// getJSON GETs url over client and decodes a 200 answer into v.
func getJSON(t *testing.T, client *http.Client, url string, v any) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
}

func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

func TestServeLifecycle(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data") // does not exist yet: serve creates it
	p := startServe(t, data)

	var health struct{ Status, Storage string }
	getJSON(t, http.DefaultClient, "http://"+p.addr+"/healthz", &health)
	if health.Status != "ok" || health.Storage != "ok" {
		t.Fatalf("healthz = %+v", health)
	}
	var st struct {
		Version   string `json:"version"`
		PoolID    string `json:"pool_id"`
		Location  string `json:"pool_location"`
		Catalog   string `json:"catalog"`
		SetupDone bool   `json:"setup_done"`
	}
	getJSON(t, http.DefaultClient, "http://"+p.addr+"/api/v1/status", &st)
	if st.Version != testVersion || st.Catalog != "sqlite" || st.SetupDone {
		t.Fatalf("status = %+v", st)
	}
	ident, err := os.ReadFile(filepath.Join(data, "pool", "cairn-pool.json"))
	if err != nil {
		t.Fatalf("pool identity: %v", err)
	}
	if len(st.PoolID) < 32 || !strings.Contains(string(ident), st.PoolID) {
		t.Fatalf("status pool id %q is not the one in the pool identity file %s", st.PoolID, ident)
	}
	if st.Location != filepath.Join(data, "pool") {
		t.Fatalf("pool location %q, want %q", st.Location, filepath.Join(data, "pool"))
	}
	for name, mode := range map[string]os.FileMode{"cairn.sock": 0o600, "secret.key": 0o600, "catalog.db": 0} {
		fi, err := os.Stat(filepath.Join(data, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if mode != 0 && fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	// The socket answers too, and grants admin to root.
	sock := filepath.Join(data, "cairn.sock")
	var who struct{ Name, Role string }
	if os.Getuid() == 0 {
		getJSON(t, unixClient(sock), "http://cairn/api/v1/whoami", &who)
		if who.Role != "admin" {
			t.Fatalf("whoami over the socket = %+v", who)
		}
	}
	// TCP without credentials: 401 on anything but health and status.
	resp, err := http.Get("http://" + p.addr + "/api/v1/hosts")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("GET /api/v1/hosts without a token: %s, want 401", resp.Status)
	}

	// A second serve on the same data dir refuses, naming the holder.
	sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	second := exec.CommandContext(sctx, cairnBin, "serve", "--data", data, "--listen", freePort(t))
	out, err := second.CombinedOutput()
	if err == nil {
		t.Fatalf("second serve succeeded:\n%s", out)
	}
	want := fmt.Sprintf("locked by pid %d", p.cmd.Process.Pid)
	if !strings.Contains(string(out), want) {
		t.Fatalf("second serve message %q does not contain %q", out, want)
	}
	if second.ProcessState.ExitCode() == 0 {
		t.Fatal("second serve exit code 0")
	}

	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, p.stderr)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket still there after shutdown: %v", err)
	}

	// A restart opens the same pool; SIGINT also stops cleanly.
	p2 := startServe(t, data)
	var st2 struct {
		PoolID string `json:"pool_id"`
	}
	getJSON(t, http.DefaultClient, "http://"+p2.addr+"/api/v1/status", &st2)
	if st2.PoolID != st.PoolID {
		t.Fatalf("pool id changed across restart: %s → %s", st.PoolID, st2.PoolID)
	}
	if code := p2.stop(os.Interrupt); code != 0 {
		t.Fatalf("exit code %d after SIGINT:\n%s", code, p2.stderr)
	}

	// Wrong storage: the catalog expects that pool; a missing one is a
	// clear error, never a silent new pool.
	if err := os.RemoveAll(filepath.Join(data, "pool")); err != nil {
		t.Fatal(err)
	}
	p3 := startServeNoWait(t, data)
	<-p3.done
	if p3.cmd.ProcessState.ExitCode() == 0 || !strings.Contains(p3.stderr.String(), "wrong or missing storage") ||
		!strings.Contains(p3.stderr.String(), st.PoolID) {
		t.Fatalf("serve with the pool gone: exit %d, output:\n%s", p3.cmd.ProcessState.ExitCode(), p3.stderr)
	}
}

func TestServeDataFromEnv(t *testing.T) {
	data := filepath.Join(t.TempDir(), "envdata")
	addr := freePort(t)
	cmd := exec.Command(cairnBin, "serve", "--listen", addr)
	cmd.Env = append(os.Environ(), "CAIRN_DATA="+data)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(data, "cairn.sock")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no socket in $CAIRN_DATA after 30s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("serve did not exit within a minute of SIGTERM:\n%s", out.String())
	}
}
