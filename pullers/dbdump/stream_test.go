package dbdump

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// bigDumpRows is enough rows for a ~70 MB dump: several times the pool
// writer's in-flight budget (16 MiB) and its chunking buffer (8 MiB).
const bigDumpRows = 1_400_000

func bigDumpLine(i int) string {
	return fmt.Sprintf("INSERT INTO t VALUES (%d, 'row %d padding');\n", i, i*7)
}

// TestDumpStreamsWithoutSpool: a dump far bigger than the writer's memory
// budgets streams into the pool with its content intact, and while the
// tool runs neither the spool/credentials dir nor TMPDIR holds more than
// the tiny credential file.
func TestDumpStreamsWithoutSpool(t *testing.T) {
	bin, spool, tmp, side := t.TempDir(), t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "du")
	t.Setenv("TMPDIR", tmp)
	script := fmt.Sprintf(`#!/bin/sh
awk 'BEGIN { for (i = 0; i < %d; i++) { printf "INSERT INTO t VALUES (%%d, '\''row %%d padding'\'');\n", i, i*7; if (i == %d) { system("du -sb %s %s > %s") } } }'
`, bigDumpRows, bigDumpRows-10, spool, tmp, side)
	must(t, os.WriteFile(filepath.Join(bin, "pg_dump"), []byte(script), 0o755))
	p := newPool(t)
	m, err := pull(t, p, NewPostgres(), pullers.Source{Options: map[string]string{
		"databases": "appdb", "globals": "false", "bin_dir": bin, "spool_dir": spool}})
	must(t, err)

	want := sha256.New()
	var size int64
	for i := range bigDumpRows {
		n, _ := io.WriteString(want, bigDumpLine(i))
		size += int64(n)
	}
	f, err := p.SnapshotFS(context.Background(), m).Open("appdb.sql")
	must(t, err)
	defer f.Close()
	got := sha256.New()
	n, err := io.Copy(got, f)
	must(t, err)
	if n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("stored dump: %d bytes, sha256 %x; the tool wrote %d bytes, sha256 %x", n, got.Sum(nil), size, want.Sum(nil))
	}
	if size < 60<<20 {
		t.Fatalf("the dump is only %d bytes; the test proves nothing", size)
	}
	du, err := os.ReadFile(side)
	must(t, err)
	for _, line := range strings.Split(strings.TrimSpace(string(du)), "\n") {
		fields := strings.Fields(line)
		used, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil || used > 1<<20 {
			t.Errorf("while the dump ran, %s held %s bytes: a spool?", fields[1], fields[0])
		}
	}
	if len(du) == 0 {
		t.Fatal("the fake tool did not measure the dirs")
	}
}

// TestFailingBigDumpKeepsNothing: a tool that has streamed megabytes and
// then fails leaves no entry; the error is the tool's.
func TestFailingBigDumpKeepsNothing(t *testing.T) {
	bin := t.TempDir()
	must(t, os.WriteFile(filepath.Join(bin, "pg_dump"), []byte("#!/bin/sh\nhead -c 12000000 /dev/zero | tr '\\0' x\necho 'pg_dump: error: server closed the connection' >&2\nexit 1\n"), 0o755))
	p := newPool(t)
	ctx := context.Background()
	w, err := p.NewWriter(ctx, poolMeta())
	must(t, err)
	must(t, w.Add(ctx, ".", pool.Entry{Type: pool.TypeDir, Mode: 0o700}, nil))
	err = NewPostgres().Pull(ctx, &pullers.Job{Host: "h", Sink: &entrySink{w}, Source: pullers.Source{
		Options: map[string]string{"databases": "appdb", "globals": "false", "bin_dir": bin}}})
	if err == nil || !strings.Contains(err.Error(), "server closed the connection") || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("Pull = %v", err)
	}
	m, err := w.Finish(ctx)
	must(t, err)
	if m.Files != 0 {
		t.Fatalf("a failed dump reached the snapshot: %+v", m)
	}
	if _, err := p.Lookup(ctx, m.Root, "appdb.sql"); err == nil {
		t.Fatal("appdb.sql stored after its tool failed")
	}
}

// entrySink is a StreamSink that ignores the root the puller adds (the
// test added it first, so it can finish the snapshot after a failure).
type entrySink struct{ w *pool.Writer }

func (s *entrySink) Add(ctx context.Context, path string, e pool.Entry, r io.Reader) error {
	if path == "." {
		return nil
	}
	return s.w.Add(ctx, path, e, r)
}
func (s *entrySink) RecordError(path string, err error) { s.w.RecordError(path, err) }
func (s *entrySink) AddStream(ctx context.Context, path string, e pool.Entry, r io.Reader) (int64, error) {
	return s.w.AddStream(ctx, path, e, r)
}

// TestDumpNeedsStreamSink: a sink that cannot take streams gets a clear
// error, not a spool.
func TestDumpNeedsStreamSink(t *testing.T) {
	bin := t.TempDir()
	must(t, os.WriteFile(filepath.Join(bin, "pg_dump"), []byte("#!/bin/sh\necho dump\n"), 0o755))
	p := newPool(t)
	ctx := context.Background()
	w, err := p.NewWriter(ctx, poolMeta())
	must(t, err)
	defer w.Abort()
	err = NewPostgres().Pull(ctx, &pullers.Job{Host: "h", Sink: struct{ pullers.Sink }{w}, Source: pullers.Source{
		Options: map[string]string{"databases": "appdb", "globals": "false", "bin_dir": bin}}})
	if err == nil || !strings.Contains(err.Error(), "cannot store a stream of unknown size") {
		t.Fatalf("Pull = %v", err)
	}
}

// TestDumpToolWritesInBlocks: a dump tool runs under stdbuf with a
// pipeSize stdout buffer (stdio would write a pipe 4 KiB at a time), and
// its content and failures are still its own.
func TestDumpToolWritesInBlocks(t *testing.T) {
	testenv.Need(t, "stdbuf")
	if stdbuf() == "" {
		t.Fatal("stdbuf is installed but does not work")
	}
	bin := t.TempDir()
	must(t, os.WriteFile(filepath.Join(bin, "pg_dump"), []byte("#!/bin/sh\necho \"buffer=$_STDBUF_O\"\n"), 0o755))
	p := newPool(t)
	src := pullers.Source{Options: map[string]string{"databases": "appdb", "globals": "false", "bin_dir": bin}}
	m, err := pull(t, p, NewPostgres(), src)
	must(t, err)
	if got, want := string(readFile(t, p, m, "appdb.sql")), fmt.Sprintf("buffer=%d\n", pipeSize); got != want {
		t.Fatalf("dump %q, want %q", got, want)
	}
	must(t, os.WriteFile(filepath.Join(bin, "pg_dump"), []byte("#!/bin/sh\necho 'pg_dump: error: boom' >&2\nexit 3\n"), 0o755))
	if _, err := pull(t, p, NewPostgres(), src); err == nil || !strings.Contains(err.Error(), "pg_dump: exit status 3: pg_dump: error: boom") {
		t.Fatalf("Pull = %v, want pg_dump's own failure", err)
	}
}

// TestSinkStopStopsTool: when the sink stops reading mid-dump, the tool
// (here endless) is stopped and Pull returns the sink's error.
func TestSinkStopStopsTool(t *testing.T) {
	bin := t.TempDir()
	pidFile := filepath.Join(bin, "pid")
	must(t, os.WriteFile(filepath.Join(bin, "pg_dump"), []byte("#!/bin/sh\necho $$ > "+pidFile+"\nexec yes 'INSERT INTO t VALUES (1);'\n"), 0o755))
	p := newPool(t)
	ctx := context.Background()
	w, err := p.NewWriter(ctx, poolMeta())
	must(t, err)
	defer w.Abort()
	err = NewPostgres().Pull(ctx, &pullers.Job{Host: "h", Sink: stoppingSink{w}, Source: pullers.Source{
		Options: map[string]string{"databases": "appdb", "globals": "false", "bin_dir": bin}}})
	if !errors.Is(err, errSinkFull) {
		t.Fatalf("Pull = %v, want the sink's error", err)
	}
	b, err := os.ReadFile(pidFile)
	must(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	must(t, err)
	if alive(pid) {
		t.Fatalf("the tool (pid %d) still runs after Pull returned", pid)
	}
}

var errSinkFull = errors.New("sink full")

// stoppingSink reads 3 MiB of a stream, checks it, then fails.
type stoppingSink struct{ w *pool.Writer }

func (s stoppingSink) Add(ctx context.Context, path string, e pool.Entry, r io.Reader) error {
	return s.w.Add(ctx, path, e, r)
}
func (s stoppingSink) RecordError(path string, err error) { s.w.RecordError(path, err) }
func (s stoppingSink) AddStream(ctx context.Context, path string, e pool.Entry, r io.Reader) (int64, error) {
	const line = "INSERT INTO t VALUES (1);\n"
	buf := make([]byte, 3<<20)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, err
	}
	if want := bytes.Repeat([]byte(line), len(buf)/len(line)+1)[:len(buf)]; !bytes.Equal(buf, want) {
		return 0, fmt.Errorf("stream content differs from the tool's output")
	}
	return 0, errSinkFull
}
