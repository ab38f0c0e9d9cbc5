package pool_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
)

// openProxy forwards to a real S3 server, answering the next queued
// faults instead: "503" (ServiceUnavailable), "slowdown" (SlowDown), "hang"
// (no answer until the client gives up) or "reset" (connection closed).
type openProxy struct {
	rp       *httputil.ReverseProxy
	mu       sync.Mutex
	faults   []string
	always   string // answer every request with this fault
	requests int
	done     chan struct{}
}

func newOpenProxy(t *testing.T, endpoint string) (*openProxy, string) {
	t.Helper()
	u, _ := url.Parse("http://" + endpoint)
	op := &openProxy{rp: httputil.NewSingleHostReverseProxy(u), done: make(chan struct{})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: op}
	go srv.Serve(l)
	t.Cleanup(func() { close(op.done); srv.Close() })
	return op, l.Addr().String()
}

func (op *openProxy) queue(always string, faults ...string) {
	op.mu.Lock()
	op.always, op.faults, op.requests = always, faults, 0
	op.mu.Unlock()
}

func (op *openProxy) count() int {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.requests
}

func (op *openProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op.mu.Lock()
	op.requests++
	fault := op.always
	if fault == "" && len(op.faults) > 0 {
		fault, op.faults = op.faults[0], op.faults[1:]
	}
	op.mu.Unlock()
	s3err := func(code int, s3code string) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(code)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected</Message><RequestId>x</RequestId></Error>`, s3code)
	}
	switch fault {
	case "503":
		s3err(503, "ServiceUnavailable")
	case "slowdown":
		s3err(503, "SlowDown")
	case "hang":
		select {
		case <-r.Context().Done():
		case <-op.done:
		}
	case "reset":
		panic(http.ErrAbortHandler)
	default:
		op.rp.ServeHTTP(w, r)
	}
}

// TestOpenS3Retries: opening an S3 pool is retried through 503s,
// SlowDown, dropped connections and a server that does not answer, then
// works; a store that stays unavailable fails after the retries with an
// error naming the location and the cause; refused credentials fail at
// once. Real S3 server behind a fault proxy.
func TestOpenS3Retries(t *testing.T) {
	s3 := testenv.S3(t)
	op, addr := newOpenProxy(t, s3.Endpoint)
	ctx := context.Background()
	env := func(k string) string {
		return map[string]string{"CAIRN_S3_ACCESS_KEY": s3.AccessKey, "CAIRN_S3_SECRET_KEY": s3.SecretKey}[k]
	}
	loc := fmt.Sprintf("s3://%s/%s/openretry?insecure=1", addr, s3.Bucket)

	// Transient failures at open, real default backoff: opened, and the
	// backend works through the proxy.
	for _, faults := range [][]string{
		{"503", "503", "503"},
		{"slowdown", "reset", "503", "slowdown", "503"},
	} {
		op.queue("", faults...)
		start := time.Now()
		b, err := pool.OpenBackend(ctx, loc, pool.OpenBackendOptions{Getenv: env})
		if err != nil {
			t.Fatalf("open through %v: %v", faults, err)
		}
		t.Logf("opened through %d injected faults %v in %s (%d requests)", len(faults), faults, time.Since(start).Round(time.Millisecond), op.count())
		if n := op.count(); n != len(faults)+1 {
			t.Fatalf("%d requests for %d faults, want one more", n, len(faults))
		}
		data := []byte("opened through " + strings.Join(faults, ","))
		if err := b.Put(ctx, "probe/x", bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		rc, err := b.Get(ctx, "probe/x", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back %q, %v", got, err)
		}
	}

	noSleep := pool.DecorateOptions{Sleep: func(context.Context, time.Duration) error { return nil }}
	// A server that does not answer: each attempt gives up after
	// OpenTimeout and the next one gets through.
	op.queue("", "hang", "hang")
	if _, err := pool.OpenBackend(ctx, loc, pool.OpenBackendOptions{Getenv: env, Decorate: noSleep, OpenTimeout: 300 * time.Millisecond}); err != nil {
		t.Fatalf("open after two unanswered attempts: %v", err)
	}
	if n := op.count(); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}

	// OpenS3 (the appliance's reopening of the storage chosen in setup)
	// retries the same way.
	op.queue("", "503", "slowdown")
	if _, err := pool.OpenS3(ctx, pool.S3Config{Endpoint: addr, Bucket: s3.Bucket, Prefix: "openretry", Region: s3.Region,
		AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, Insecure: true}, pool.OpenBackendOptions{Decorate: noSleep}); err != nil || op.count() != 3 {
		t.Fatalf("OpenS3 through two faults: %v (%d requests)", err, op.count())
	}

	// Unavailable for good: 1 + open_retries attempts, then a clear error.
	op.queue("503")
	_, err := pool.OpenBackend(ctx, loc+"&open_retries=4", pool.OpenBackendOptions{Getenv: env, Decorate: noSleep})
	if err == nil || !errors.Is(err, pool.ErrTransient) || !strings.Contains(err.Error(), "giving up after 5 attempts") ||
		!strings.Contains(err.Error(), "s3://"+addr+"/"+s3.Bucket) || !strings.Contains(err.Error(), "ServiceUnavailable") && !strings.Contains(err.Error(), "503") {
		t.Fatalf("open of an unavailable store: %v", err)
	}
	if n := op.count(); n != 5 {
		t.Fatalf("%d requests, want 5", n)
	}
	t.Logf("final error: %v", err)
	op.queue("hang")
	_, err = pool.OpenBackend(ctx, loc+"&open_retries=1", pool.OpenBackendOptions{Getenv: env, Decorate: noSleep, OpenTimeout: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "giving up after 2 attempts") || !strings.Contains(err.Error(), "no answer within 200ms") {
		t.Fatalf("open of a store that never answers: %v", err)
	}

	// Refused credentials are not an outage: one attempt, no retry.
	op.queue("")
	bad := fmt.Sprintf("s3://%s:wrong@%s/%s/openretry?insecure=1", s3.AccessKey, addr, s3.Bucket)
	_, err = pool.OpenBackend(ctx, bad, pool.OpenBackendOptions{Getenv: env, Decorate: noSleep})
	if err == nil || errors.Is(err, pool.ErrTransient) || strings.Contains(err.Error(), "wrong@") {
		t.Fatalf("open with a wrong secret: %v", err)
	}
	if n := op.count(); n != 1 {
		t.Fatalf("wrong secret: %d requests, want 1", n)
	}
	if _, err := pool.OpenBackend(ctx, loc+"&open_retries=x", pool.OpenBackendOptions{Getenv: env}); err == nil || !strings.Contains(err.Error(), "open_retries") {
		t.Fatalf("bad open_retries: %v", err)
	}
}
