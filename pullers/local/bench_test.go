package local

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// discardSink reads every file and keeps nothing: it measures the walk
// and the reads, not a store.
type discardSink struct{ buf []byte }

func (d *discardSink) Add(ctx context.Context, p string, e pool.Entry, r io.Reader) error {
	if r != nil {
		n, err := io.CopyBuffer(io.Discard, r, d.buf)
		if err != nil {
			return err
		}
		if n != e.Size {
			return fmt.Errorf("%s: read %d of %d bytes", p, n, e.Size)
		}
	}
	return nil
}
func (d *discardSink) RecordError(string, error) {}

// genTree makes dirs×files small files (1 KiB) under a new temp dir.
func genTree(b *testing.B, dirs, files int) (string, int64) {
	b.Helper()
	root := b.TempDir()
	data := make([]byte, 1024)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var total int64
	for d := range dirs {
		dir := filepath.Join(root, fmt.Sprintf("d%03d", d/10), fmt.Sprintf("e%03d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range files {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d.txt", f)), data, 0o644); err != nil {
				b.Fatal(err)
			}
			total += int64(len(data))
		}
	}
	return root, total
}

// BenchmarkWalk pulls a 10,000-file tree (page cache warm) into a sink
// that reads and discards: entries/s is the puller's own ceiling.
func BenchmarkWalk(b *testing.B) {
	root, total := genTree(b, 100, 100)
	sink := &discardSink{buf: make([]byte, 128<<10)}
	b.SetBytes(total)
	b.ResetTimer()
	for b.Loop() {
		j := &pullers.Job{Source: pullers.Source{Path: root}, Sink: sink}
		if err := New().Pull(context.Background(), j); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*100*100)/b.Elapsed().Seconds(), "files/s")
}

// BenchmarkWalkIncremental is the no-change case: every file is skipped
// against a previous snapshot and none is opened.
func BenchmarkWalkIncremental(b *testing.B) {
	root, _ := genTree(b, 100, 100)
	prev := &recordSink{entries: map[string]pool.Entry{}}
	if err := New().Pull(context.Background(), &pullers.Job{Source: pullers.Source{Path: root}, Sink: prev}); err != nil {
		b.Fatal(err)
	}
	sink := &discardSink{buf: make([]byte, 128<<10)}
	b.ResetTimer()
	for b.Loop() {
		var skipped int64
		j := &pullers.Job{Source: pullers.Source{Path: root}, Sink: sink, Previous: prev,
			Progress: func(p pullers.Progress) { skipped = p.Skipped }}
		if err := New().Pull(context.Background(), j); err != nil {
			b.Fatal(err)
		}
		if skipped != 100*100 {
			b.Fatalf("skipped %d", skipped)
		}
	}
	b.ReportMetric(float64(b.N*100*100)/b.Elapsed().Seconds(), "files/s")
}

// recordSink keeps entries with a fake content digest, for Previous.
type recordSink struct{ entries map[string]pool.Entry }

func (s *recordSink) Add(ctx context.Context, p string, e pool.Entry, r io.Reader) error {
	if r != nil {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
		e.Content[0] = 1
	}
	s.entries[p] = e
	return nil
}
func (s *recordSink) RecordError(string, error) {}
func (s *recordSink) Lookup(ctx context.Context, p string) (pool.Entry, bool, error) {
	e, ok := s.entries[p]
	return e, ok, nil
}
