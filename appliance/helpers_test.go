package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// fakeMethod is a puller for tests. Options steer it:
//
//	files=N   write N small files (default 3), content from seed
//	seed=S    varies the content between runs
//	block=1   after the first file, wait for release or cancellation
//	fail=MSG  fail with MSG followed by the source's password
const fakeMethod = "apptest"

// fakeCtl lets tests see and steer the fake puller.
type fakeCtl struct {
	mu      sync.Mutex
	running map[string]int // host → pulls in progress
	total   int
	max     int
	hostDup bool
	started chan string // host, when a pull starts (buffered)
	release chan struct{}
}

var fake = &fakeCtl{running: map[string]int{}, started: make(chan string, 1000), release: make(chan struct{})}

// resetFake gives a test a fresh release channel and counters.
func resetFake(t *testing.T) {
	fake.mu.Lock()
	fake.running = map[string]int{}
	fake.total, fake.max, fake.hostDup = 0, 0, false
	fake.release = make(chan struct{})
	fake.started = make(chan string, 1000)
	fake.mu.Unlock()
}

func releaseFake() {
	fake.mu.Lock()
	defer fake.mu.Unlock()
	select {
	case <-fake.release:
	default:
		close(fake.release)
	}
}

type fakePuller struct{}

func init() {
	pullers.Register(fakeMethod, func() pullers.Puller { return fakePuller{} })
	requiredSecrets["apptest-needs-secret"] = []string{"password"}
	pullers.Register("apptest-needs-secret", func() pullers.Puller { return fakePuller{} })
}

func (fakePuller) Pull(ctx context.Context, j *pullers.Job) error {
	fake.mu.Lock()
	fake.running[j.Host]++
	fake.total++
	if fake.running[j.Host] > 1 {
		fake.hostDup = true
	}
	if fake.total > fake.max {
		fake.max = fake.total
	}
	release, started := fake.release, fake.started
	fake.mu.Unlock()
	defer func() {
		fake.mu.Lock()
		fake.running[j.Host]--
		fake.total--
		fake.mu.Unlock()
	}()
	started <- j.Host
	if msg := j.Source.Options["permfail"]; msg != "" {
		return fmt.Errorf("%s: %w", msg, pullers.ErrPermanent)
	}
	if msg := j.Source.Options["fail"]; msg != "" {
		return fmt.Errorf("%s %s", msg, j.Source.Secret["password"])
	}
	n := 3
	if v := j.Source.Options["files"]; v != "" {
		n, _ = strconv.Atoi(v)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	if err := j.Sink.Add(ctx, ".", pool.Entry{Name: ".", Type: pool.TypeDir, Mode: 0o755, ModTime: now}, nil); err != nil {
		return err
	}
	for i := range n {
		data := []byte(fmt.Sprintf("file %d of %s/%s seed %s\n", i, j.Host, j.Source.Name, j.Source.Options["seed"]))
		name := fmt.Sprintf("f%03d.txt", i)
		e := pool.Entry{Name: name, Type: pool.TypeFile, Mode: 0o644, ModTime: now, Size: int64(len(data))}
		if err := j.Sink.Add(ctx, name, e, bytes.NewReader(data)); err != nil {
			return err
		}
		if j.Progress != nil {
			j.Progress(pullers.Progress{Files: int64(i + 1), Bytes: int64(len(data)), Path: name})
		}
		if i == 0 && j.Source.Options["block"] != "" {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// testEnv is an appliance opened in a temp dir, driven in-process.
type testEnv struct {
	t    *testing.T
	s    *Server
	dir  string
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t *testing.T, cfg Config) *testEnv {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, s: s, dir: cfg.DataDir, logs: logs}
	t.Cleanup(func() { s.Close() })
	return e
}

// as says who a request comes from: "" = nobody, "socket" = root on the
// unix socket, anything else = a bearer token.
func (e *testEnv) do(as, method, path string, body any) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.doCtx(context.Background(), as, method, path, body)
}

func (e *testEnv) doCtx(ctx context.Context, as, method, path string, body any) *httptest.ResponseRecorder {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req := httptest.NewRequestWithContext(ctx, method, path, r)
	switch as {
	case "":
	case "socket":
		req = req.WithContext(context.WithValue(req.Context(), peerKey, peer{unix: true, uid: 0}))
	default:
		req.Header.Set("Authorization", "Bearer "+as)
	}
	w := httptest.NewRecorder()
	if strings.HasSuffix(path, "/events") {
		// A stream ends when its client goes: cancel at the first flush.
		ctx, cancel := context.WithCancel(req.Context())
		defer cancel()
		e.s.Handler().ServeHTTP(&cancelOnFlush{w, cancel}, req.WithContext(ctx))
		return w
	}
	e.s.Handler().ServeHTTP(w, req)
	return w
}

type cancelOnFlush struct {
	*httptest.ResponseRecorder
	cancel func()
}

func (c *cancelOnFlush) Flush() {
	c.ResponseRecorder.Flush()
	c.cancel()
}

// must does a request and decodes a 2xx JSON answer into out.
func (e *testEnv) must(as, method, path string, body, out any) {
	e.t.Helper()
	w := e.do(as, method, path, body)
	if w.Code >= 300 {
		e.t.Fatalf("%s %s: %d %s", method, path, w.Code, w.Body.String())
	}
	if out != nil {
		if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, w.Body.String())
		}
	}
}

// user makes a user with a role and groups and returns a token for it.
func (e *testEnv) user(name, role string, groups ...string) string {
	e.t.Helper()
	u := &catalog.User{Name: name, PasswordHash: "x", Role: role, Groups: groups}
	if err := e.s.cat.CreateUser(context.Background(), u); err != nil {
		e.t.Fatal(err)
	}
	tok := newToken()
	if err := e.s.cat.CreateToken(context.Background(), &catalog.Token{UserID: u.ID, Name: "t", Hash: hashToken(tok)}); err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// addHost adds a host with one fake source.
func (e *testEnv) addHost(name string, opts map[string]string, extra ...func(*HostInput)) {
	e.t.Helper()
	in := HostInput{Name: &name, Sources: []SourceInput{{Name: "data", Method: fakeMethod, Path: "/fake", Options: opts}}}
	for _, f := range extra {
		f(&in)
	}
	e.must("socket", "POST", "/api/v1/hosts", in, nil)
}

// backup queues a manual backup and returns the job.
func (e *testEnv) backup(host string) JobBody {
	e.t.Helper()
	var j JobBody
	e.must("socket", "POST", "/api/v1/hosts/"+host+"/backup", nil, &j)
	return j
}

// waitJob polls a job until it reaches a final state.
func (e *testEnv) waitJob(id int64) JobBody {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var j JobBody
		e.must("socket", "GET", fmt.Sprintf("/api/v1/jobs/%d", id), nil, &j)
		if catalog.JobFinal(j.State) {
			return j
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %d still %s after 60s", id, j.State)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
