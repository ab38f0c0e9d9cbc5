package torture

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// faultProxy sits between cairn and a real S3 server and breaks a share
// of the requests in the ways real object stores and networks do, with
// real S3 error bodies so minio-go parses them as the service's own.
type faultProxy struct {
	target *url.URL
	rp     *httputil.ReverseProxy
	mu     sync.Mutex
	rng    *rand.Rand
	rate   float64         // share of requests that get a fault
	kinds  map[string]bool // enabled faults
	paths  []string        // when set, only requests whose path contains one of these get faults
	counts map[string]*atomic.Int64
}

var faultKinds = []string{"503", "slowdown", "reset", "short-read", "corrupt-read", "lost-put", "corrupt-put"}

func newFaultProxy(t *testing.T, endpoint string) (*faultProxy, string) {
	u, _ := url.Parse("http://" + endpoint)
	fp := &faultProxy{target: u, rp: httputil.NewSingleHostReverseProxy(u), rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5)),
		kinds: map[string]bool{}, counts: map[string]*atomic.Int64{}}
	for _, k := range faultKinds {
		fp.counts[k] = &atomic.Int64{}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: fp}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return fp, l.Addr().String()
}

// set enables faults at rate (0 turns them off).
func (fp *faultProxy) set(rate float64, kinds ...string) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.rate, fp.kinds, fp.paths = rate, map[string]bool{}, nil
	for _, k := range kinds {
		fp.kinds[k] = true
	}
}

// setPaths is set with faults only for paths containing one of paths.
func (fp *faultProxy) setPaths(rate float64, paths []string, kinds ...string) {
	fp.set(rate, kinds...)
	fp.mu.Lock()
	fp.paths = paths
	fp.mu.Unlock()
}

func (fp *faultProxy) pick(r *http.Request) string {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	// Bucket-level requests (the connectivity check when a pool is
	// opened, listings) get faults too: opening is retried like the rest.
	if fp.rng.Float64() >= fp.rate {
		return ""
	}
	if len(fp.paths) > 0 {
		hit := false
		for _, p := range fp.paths {
			hit = hit || strings.Contains(r.URL.Path, p)
		}
		if !hit {
			return ""
		}
	}
	var ok []string
	for _, k := range faultKinds {
		if !fp.kinds[k] {
			continue
		}
		switch k {
		case "short-read", "corrupt-read":
			if r.Method != "GET" || r.URL.Query().Has("list-type") || strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 0 {
				continue
			}
		case "lost-put", "corrupt-put":
			if r.Method != "PUT" || r.Header.Get("X-Amz-Copy-Source") != "" {
				continue
			}
		}
		ok = append(ok, k)
	}
	if len(ok) == 0 {
		return ""
	}
	return ok[fp.rng.IntN(len(ok))]
}

func s3Error(w http.ResponseWriter, code int, s3code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(code)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><RequestId>fault</RequestId></Error>`, s3code, msg)
}

// bodyRecorder captures a proxied answer so it can be altered.
type bodyRecorder struct {
	h    http.Header
	code int
	buf  bytes.Buffer
}

func (b *bodyRecorder) Header() http.Header         { return b.h }
func (b *bodyRecorder) WriteHeader(c int)           { b.code = c }
func (b *bodyRecorder) Write(p []byte) (int, error) { return b.buf.Write(p) }

func (fp *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind := fp.pick(r)
	if kind != "" {
		fp.counts[kind].Add(1)
	}
	switch kind {
	case "503":
		s3Error(w, 503, "ServiceUnavailable", "Please reduce your request rate.")
		return
	case "slowdown":
		s3Error(w, 503, "SlowDown", "Please reduce your request rate.")
		return
	case "reset":
		// The server took too long and the connection died: no answer.
		time.Sleep(200 * time.Millisecond)
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				if tc, ok := c.(*net.TCPConn); ok {
					tc.SetLinger(0) // RST
				}
				c.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case "lost-put":
		// Acknowledged but never stored (eventual consistency gone wrong).
		io.Copy(io.Discard, r.Body)
		w.Header().Set("ETag", `"00000000000000000000000000000000"`)
		w.WriteHeader(200)
		return
	case "corrupt-put":
		b, _ := io.ReadAll(r.Body)
		if len(b) > 0 {
			b[len(b)/2] ^= 0x40
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		fp.rp.ServeHTTP(w, r)
		return
	case "short-read", "corrupt-read":
		rec := &bodyRecorder{h: http.Header{}, code: 200}
		fp.rp.ServeHTTP(rec, r)
		body := rec.buf.Bytes()
		for k, v := range rec.h {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		if rec.code != 200 && rec.code != 206 || len(body) < 2 {
			w.WriteHeader(rec.code)
			w.Write(body)
			return
		}
		w.WriteHeader(rec.code)
		if kind == "corrupt-read" {
			body = bytes.Clone(body)
			body[len(body)/2] ^= 0x01
			w.Write(body)
			return
		}
		w.Write(body[:len(body)/2]) // then the handler returns: the client sees a short body
		panic(http.ErrAbortHandler)
	}
	fp.rp.ServeHTTP(w, r)
}

// TestS3Faults runs snapshot, check and restore of the real binary against
// a real S3 server through the fault proxy: 503 ServiceUnavailable,
// SlowDown, dropped connections, short and corrupted reads, lost and
// corrupted writes. Every fault is retried or fails the command cleanly;
// none is accepted silently: with faults off afterwards the pool checks
// clean and every restored file has the source's digest, and restores
// under read faults either succeed exactly or fail.
func TestS3Faults(t *testing.T) {
	s3 := testenv.S3(t)
	fp, addr := newFaultProxy(t, s3.Endpoint)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	writeSource(t, src, 0, 3, scale(t, 40, 200))
	poolURL := fmt.Sprintf("s3://%s/%s/torture?insecure=1&retries=12&retry_base=5ms&verify=1", addr, s3.Bucket)
	env := []string{"CAIRN_S3_ACCESS_KEY=" + s3.AccessKey, "CAIRN_S3_SECRET_KEY=" + s3.SecretKey}
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return cliEnv(t, env, args...)
	}
	if out, errOut, code := run("pool", "init", "--pool", poolURL); code != 0 {
		t.Fatalf("pool init: %s%s", out, errOut)
	}
	// A body corrupted on its way in is refused by the server (its SigV4
	// payload hash no longer matches): the snapshot fails cleanly, naming
	// the storage, and nothing corrupt is left behind in the pool.
	fp.set(0.5, "corrupt-put")
	if _, errOut, code := run("snapshot", "create", "--pool", poolURL, "--host", "h", src); code == 0 || !strings.Contains(errOut, "s3://") {
		t.Fatalf("snapshot with corrupted uploads: exit %d: %s", code, errOut)
	}
	fp.set(0)
	if out, errOut, code := run("pool", "check", "--pool", poolURL, "--read-data"); code != 0 {
		t.Fatalf("check after corrupted uploads: %s%s", out, errOut)
	}
	rounds := scale(t, 2, 10)
	var ids []string
	rereadSeen := false
	for round := range rounds {
		// Writes under every fault but the read corruptions (which the
		// reads of dedup checks would report as corrupt objects).
		fp.set(0.15, "503", "slowdown", "reset", "short-read", "lost-put")
		writeSource(t, src, round+1, 3, scale(t, 40, 200))
		want := treeDigest(t, src)
		out, errOut, code := run("snapshot", "create", "--pool", poolURL, "--host", "h", src)
		if code != 0 {
			// A clean failure is allowed, but it must say what failed.
			if !strings.Contains(errOut, "s3://") {
				t.Fatalf("round %d: snapshot failed without naming the storage: %s", round, errOut)
			}
			t.Logf("round %d: snapshot failed cleanly: %s", round, lastLines(errOut, 1))
			continue
		}
		id := strings.TrimSpace(out)
		ids = append(ids, id)
		// Faults off: the pool is sound and the snapshot exact.
		fp.set(0)
		if out, errOut, code := run("pool", "check", "--pool", poolURL, "--read-data"); code != 0 {
			t.Fatalf("round %d: check after faulty writes: %s%s", round, out, errOut)
		}
		dst := filepath.Join(tmp, fmt.Sprintf("r%d", round))
		if _, errOut, code := run("restore", "--pool", poolURL, id, "--to", dst); code != 0 {
			t.Fatalf("round %d: restore: %s", round, errOut)
		}
		if d := diffTrees(want, treeDigest(t, dst)); d != "" {
			t.Fatalf("round %d: restored tree differs:\n%s", round, d)
		}
		// Transient read faults: retried, the restore is exact.
		fp.set(0.15, "503", "slowdown", "reset", "short-read")
		dst1 := filepath.Join(tmp, fmt.Sprintf("t%d", round))
		if _, errOut, code := run("restore", "--pool", poolURL, id, "--to", dst1); code != 0 {
			t.Fatalf("round %d: restore under transient read faults: %s", round, withoutRetries(errOut))
		}
		if d := diffTrees(want, treeDigest(t, dst1)); d != "" {
			t.Fatalf("round %d: restore under transient read faults differs:\n%s", round, d)
		}
		// Bytes corrupted on the way back: caught by the digest check, so
		// the restore either succeeds exactly or fails; no file ever holds
		// wrong content.
		fp.set(0.05, "corrupt-read")
		dst2 := filepath.Join(tmp, fmt.Sprintf("f%d", round))
		_, errOut, code = run("restore", "--pool", poolURL, id, "--to", dst2)
		got := map[string]string{}
		if _, err := os.Stat(dst2); err == nil {
			got = treeDigest(t, dst2)
		}
		for k, g := range got {
			if strings.HasPrefix(g, "file") && want[k] != g {
				t.Errorf("round %d: restore under read corruption wrote wrong content for %s (exit %d: %s)", round, k, code, lastLines(errOut, 1))
			}
		}
		if code == 0 && diffTrees(want, got) != "" {
			t.Errorf("round %d: restore under read corruption succeeded but differs:\n%s", round, diffTrees(want, got))
		}
		t.Logf("round %d: snapshot %s exact; restore under read corruption: exit %d %s", round, id, code, lastLines(errOut, 1))

		// check --read-data while objects and manifests read back wrong
		// or short now and then (the stored bytes are fine): every
		// damaged read is re-read afresh, so the check passes and nothing
		// good is quarantined.
		before := fp.counts["corrupt-read"].Load()
		fp.setPaths(0.1, []string{"/objects/", "/snapshots/"}, "corrupt-read", "short-read", "503", "reset")
		out, errOut, code = run("pool", "check", "--pool", poolURL, "--read-data")
		fp.set(0)
		if code != 0 {
			t.Fatalf("round %d: check under read corruption failed (a good object declared corrupt?): %s%s", round, out, withoutRetries(errOut))
		}
		if q, _ := os.ReadDir(filepath.Join(s3.Dir, s3.Bucket, "torture", "quarantine")); len(q) != 0 {
			t.Fatalf("round %d: check under read corruption quarantined %d good objects: %s", round, len(q), out)
		}
		t.Logf("round %d: check under read corruption (%d damaged reads): %s", round, fp.counts["corrupt-read"].Load()-before, lastLines(out, 1))
		if strings.Contains(out, "read back wrong, then verified on a fresh read") {
			rereadSeen = true
		}
	}
	if len(ids) > 0 && !rereadSeen {
		t.Error("no check under read corruption ever re-read a damaged object: the test proves nothing about re-reads")
	}
	if len(ids) == 0 {
		t.Fatal("no snapshot got through the faults")
	}
	fp.set(0)
	for _, k := range faultKinds {
		t.Logf("fault %s injected %d times", k, fp.counts[k].Load())
		if fp.counts[k].Load() == 0 {
			t.Errorf("fault %s was never injected: the test proves nothing about it", k)
		}
	}
	if out, errOut, code := run("pool", "check", "--pool", poolURL, "--read-data"); code != 0 {
		t.Fatalf("final check: %s%s", out, errOut)
	}
}

// withoutRetries drops the retry notices from a command's stderr.
func withoutRetries(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, "WARN storage retry") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
