package iso

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUpdateAB runs the appliance's A/B update with real binaries, no VM:
// slot A is cairn as the image ships it, started the way the systemd unit
// does (`serve --appliance`, restarted after every exit). An uploaded
// binary that dies at start is rolled back to A on the next start; a good
// one runs as slot B, passes its health check and stays.
func TestUpdateAB(t *testing.T) {
	root := repoRoot(t)
	bins := t.TempDir()
	build := func(version, out string) {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", out, "./cmd/cairn")
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", version, err, b)
		}
	}
	slotA, good := filepath.Join(bins, "cairn-a"), filepath.Join(bins, "cairn-good")
	build("ab-a", slotA)
	build("ab-good", good)
	// The bad update passes the upload check (a static ELF that answers
	// `version`) and then fails to start.
	badSrc := filepath.Join(bins, "bad.go")
	os.WriteFile(badSrc, []byte(`package main

import ("fmt"; "os")

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("cairn ab-bad")
		return
	}
	fmt.Fprintln(os.Stderr, "bad update: cannot start")
	os.Exit(3)
}
`), 0o644)
	bad := filepath.Join(bins, "cairn-bad")
	cmd := exec.Command("go", "build", "-o", bad, badSrc)
	cmd.Dir, cmd.Env = bins, append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the bad update: %v\n%s", err, b)
	}

	// Updates live on the data disk: the data dir must be on persistent
	// storage (not tmpfs), as /var/tmp is.
	data, err := os.MkdirTemp("/var/tmp", "cairn-ab-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	port := freePort(t)
	start := func() *applianceProc { return startProc(t, slotA, data, port) }

	a := start()
	a.waitHealthy(t)
	sys := a.system(t)
	if sys.Version != "ab-a" || sys.Update.RunningSlot != "A" || sys.Update.Status != "none" {
		t.Fatalf("first start: %+v", sys)
	}
	up := a.upload(t, bad, 200)
	if up.Status != "pending" || up.Version != "ab-bad" {
		t.Fatalf("upload of the bad binary: %+v", up)
	}
	a.stop(t)

	// Next start: A starts B, which dies.
	b := start()
	if code := b.wait(t); code == 0 {
		t.Fatal("the bad update exited 0")
	}
	if st := readState(t, data); st["status"] != "trying" {
		t.Fatalf("after the bad start: state %v", st)
	}
	// The start after that (systemd restarts the unit): rollback to A.
	c := start()
	c.waitHealthy(t)
	sys = c.system(t)
	if sys.Version != "ab-a" || sys.Update.RunningSlot != "A" || sys.Update.Status != "rolled_back" ||
		!strings.Contains(sys.Update.LastError, "ab-bad") {
		t.Fatalf("after the rollback: %+v", sys)
	}
	if !strings.Contains(c.log.String(), "rolled back to slot A") {
		t.Errorf("rollback not logged:\n%s", c.log.String())
	}

	// A good update runs as slot B and stays.
	up = c.upload(t, good, 200)
	if up.Status != "pending" || up.Version != "ab-good" {
		t.Fatalf("upload of the good binary: %+v", up)
	}
	c.stop(t)
	d := start()
	d.waitHealthy(t)
	deadline := time.Now().Add(time.Minute)
	for sys = d.system(t); sys.Update.Status != "good" && time.Now().Before(deadline); sys = d.system(t) {
		time.Sleep(100 * time.Millisecond)
	}
	if sys.Version != "ab-good" || sys.Update.RunningSlot != "B" || sys.Update.Status != "good" {
		t.Fatalf("good update: %+v", sys)
	}
	d.stop(t)
	e := start()
	e.waitHealthy(t)
	if sys = e.system(t); sys.Version != "ab-good" || sys.Update.RunningSlot != "B" {
		t.Fatalf("start after the good update: %+v", sys)
	}
	// Garbage is refused with a reason and changes nothing.
	junk := filepath.Join(bins, "junk")
	os.WriteFile(junk, []byte("not a binary"), 0o644)
	e.upload(t, junk, 400)
	if sys = e.system(t); sys.Update.Status != "good" || sys.Update.Version != "ab-good" {
		t.Fatalf("after a refused upload: %+v", sys)
	}
	e.stop(t)
}

type systemBody struct {
	Version string `json:"version"`
	Update  struct {
		RunningSlot string `json:"running_slot"`
		Status      string `json:"status"`
		Version     string `json:"version"`
		LastError   string `json:"last_error"`
	} `json:"update"`
}

type applianceProc struct {
	cmd    *exec.Cmd
	data   string
	port   int
	log    *bytes.Buffer
	exited chan int
	unix   *http.Client
}

func startProc(t *testing.T, bin, data string, port int) *applianceProc {
	t.Helper()
	p := &applianceProc{data: data, port: port, log: &bytes.Buffer{}, exited: make(chan int, 1)}
	p.cmd = exec.Command(bin, "serve", "--appliance", "--data", data, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--console", filepath.Join(data, "console.txt"))
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.Env = os.Environ()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		p.exited <- p.cmd.ProcessState.ExitCode()
	}()
	p.unix = &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(data, "cairn.sock"))
		}}}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("cairn log:\n%s", p.log.String())
		}
	})
	return p
}

func (p *applianceProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-p.exited:
		return code
	case <-time.After(2 * time.Minute):
		t.Fatal("cairn did not exit")
	}
	return 0
}

func (p *applianceProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("cairn exited %d after SIGTERM\n%s", code, p.log.String())
	}
}

// waitHealthy waits for /healthz over TLS on the TCP port.
func (p *applianceProc) waitHealthy(t *testing.T) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case code := <-p.exited:
			t.Fatalf("cairn exited %d\n%s", code, p.log.String())
		default:
		}
		resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/healthz", p.port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not healthy after 2m: %v\n%s", err, p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *applianceProc) system(t *testing.T) systemBody {
	t.Helper()
	var b systemBody
	resp, err := p.unix.Get("http://cairn/api/v1/system")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(raw, &b) != nil {
		t.Fatalf("GET /api/v1/system: %d %s", resp.StatusCode, raw)
	}
	return b
}

type uploadBody struct {
	Status  string `json:"status"`
	Version string `json:"version"`
}

func (p *applianceProc) upload(t *testing.T, bin string, want int) uploadBody {
	t.Helper()
	f, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	resp, err := p.unix.Post("http://cairn/api/v1/system/update", "application/octet-stream", f)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("upload %s: %d %s, want %d", filepath.Base(bin), resp.StatusCode, raw, want)
	}
	var b uploadBody
	json.Unmarshal(raw, &b)
	return b
}

func readState(t *testing.T, data string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "system", "update.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
