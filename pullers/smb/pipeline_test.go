package smb_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/internal/pipetest"
	"github.com/cairn-backup/cairn/pullers/pullertest"
	"github.com/cairn-backup/cairn/pullers/smb"
)

func hasError(m *pool.Manifest, prefix, substr string) bool {
	for _, e := range m.Errors {
		if strings.HasPrefix(e, prefix) && strings.Contains(e, substr) {
			return true
		}
	}
	return false
}

func checkPool(t *testing.T, p *pool.Pool) {
	t.Helper()
	rep, err := p.Check(context.Background(), pool.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Errorf("pool check: %v %s", err, rep.String())
	}
}

// TestPipeline: many small files and a few large ones (larger than a
// file's buffer window) from Samba, fetched ahead: every digest matches
// the source; a file deleted while the batch around it is in flight is
// one per-file error; the incremental pull reuses every file; a pull with
// one worker and no skip gives the very same tree; a directory with more
// names than MaxEntries keeps the first MaxEntries.
func TestPipeline(t *testing.T) {
	s := testenv.Samba(t)
	dir := filepath.Join(s.Dir, "pipe")
	want := pipetest.Tree(t, dir, 300, []int{5 << 20, 3<<20 + 17, 1})
	src := source(s, "pipe")
	p := pullertest.NewPool(t)
	pl := smb.New()
	pl.MaxInFlight = 2 << 20

	const trigger, victim = "d02/f002", "d02/f102" // the victim is 10 files later in the same directory
	var once sync.Once
	m1, p1 := pullertest.Pull(t, p, pl, src, nil, func(pr pullers.Progress) {
		if pr.Path == trigger {
			once.Do(func() {
				if err := os.Remove(filepath.Join(dir, victim)); err != nil {
					t.Error(err)
				}
			})
		}
	})
	pipetest.Compare(t, want, pipetest.Sums(t, p, m1), victim)
	if m1.Status != pool.StatusPartial || m1.ErrorCount != 1 || !hasError(m1, victim+": ", "vanished during backup") || p1.Errors != 1 {
		t.Errorf("status %s, errors %q; want one for %s", m1.Status, m1.Errors, victim)
	}
	delete(want, victim)

	m2, p2 := pullertest.Pull(t, p, smb.New(), src, pullertest.PoolPrevious{Pool: p, Root: m1.Root}, nil)
	pipetest.Compare(t, want, pipetest.Sums(t, p, m2))
	nonEmpty := 0
	for rel := range want {
		if fi, err := os.Stat(filepath.Join(dir, rel)); err == nil && fi.Size() > 0 {
			nonEmpty++
		}
	}
	if p2.Skipped != int64(nonEmpty) || m2.ErrorCount != 0 {
		t.Errorf("incremental: skipped %d, want %d; errors %q", p2.Skipped, nonEmpty, m2.Errors)
	}

	one := smb.New()
	one.Workers = 1
	full := source(s, "pipe")
	full.Options["full"] = "true"
	m3, p3 := pullertest.Pull(t, p, one, full, pullertest.PoolPrevious{Pool: p, Root: m2.Root}, nil)
	if p3.Skipped != 0 || m3.Root != m2.Root {
		t.Errorf("one worker, full read: skipped %d, root %s; want 0 and the pipelined pull's %s", p3.Skipped, m3.Root, m2.Root)
	}

	few := smb.New()
	few.MaxEntries = 10
	m4, _ := pullertest.Pull(t, p, few, source(s, "pipe/d03"), nil, nil)
	if m4.Files != 10 || !hasError(m4, ".: ", "more than 10 names in one directory; kept the first 10") || !strings.Contains(m4.Errors[0], "/pipe/d03") {
		t.Errorf("MaxEntries 10: %d files, errors %q", m4.Files, m4.Errors)
	}
	checkPool(t, p)
}

// TestPipelineCancel: cancelling while a batch of files is in flight ends
// the pull promptly with the context's error.
func TestPipelineCancel(t *testing.T) {
	s := testenv.Samba(t)
	pipetest.Tree(t, filepath.Join(s.Dir, "pipe"), 400, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := pullertest.NewPool(t).NewWriter(ctx, pool.SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	var last atomic.Int64
	err = smb.New().Pull(ctx, &pullers.Job{Source: source(s, "pipe"), Sink: w, Progress: func(pr pullers.Progress) {
		last.Store(pr.Files)
		if pr.Files == 100 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := last.Load(); n < 100 || n > 101 {
		t.Errorf("%d entries stored after the cancel at 100", n)
	}
}

// countConn counts the bytes read from the server.
type countConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// meterSink counts the bytes the sink has read and how many more the
// puller had taken from the connection by then.
type meterSink struct {
	*pool.Writer
	received *atomic.Int64
	consumed atomic.Int64
	maxAhead atomic.Int64
}

func (s *meterSink) Add(ctx context.Context, p string, e pool.Entry, r io.Reader) error {
	if r != nil {
		time.Sleep(100 * time.Millisecond) // a slow sink: time for the fetches to run ahead, were they unbounded
		r = &meterReader{s: s, r: r}
	}
	return s.Writer.Add(ctx, p, e, r)
}

type meterReader struct {
	s *meterSink
	r io.Reader
}

func (m *meterReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	c := m.s.consumed.Add(int64(n))
	if ahead := m.s.received.Load() - c; ahead > m.s.maxAhead.Load() {
		m.s.maxAhead.Store(ahead)
	}
	return n, err
}

// TestPipelineMemoryBound: with files far larger than the cap on
// buffered bytes and a slow sink, the puller never takes more from the
// connection than the cap plus the reads in flight beyond what the sink
// has read.
func TestPipelineMemoryBound(t *testing.T) {
	s := testenv.Samba(t)
	want := map[string][32]byte{}
	dir := filepath.Join(s.Dir, "big")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		data := pipetest.Data(i, 12<<20)
		name := fmt.Sprintf("big%d", i)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		want[name] = sha256.Sum256(data)
	}
	var received atomic.Int64
	pl := smb.New()
	pl.Workers, pl.MaxInFlight = 2, 256<<10
	pl.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countConn{c, &received}, nil
	}
	p := pullertest.NewPool(t)
	ctx := context.Background()
	w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	sink := &meterSink{Writer: w, received: &received}
	if err := pl.Pull(ctx, &pullers.Job{Source: source(s, "big"), Sink: sink}); err != nil {
		w.Abort()
		t.Fatal(err)
	}
	m, err := w.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pipetest.Compare(t, want, pipetest.Sums(t, p, m))
	// The cap, plus per worker 16 reads of 64 KiB, plus the login and
	// the listings and SMB headers.
	const bound = 256<<10 + 2*16*64<<10 + 1<<20
	t.Logf("the puller read at most %d bytes ahead of the sink (bound %d, files %d)", sink.maxAhead.Load(), bound, 12<<20)
	if got := sink.maxAhead.Load(); got > bound {
		t.Errorf("the puller read %d bytes ahead of the sink; want at most %d", got, bound)
	}
}
