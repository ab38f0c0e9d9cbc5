package pool

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// TestReuseHealsQuarantinedChunk: when a chunk of a big file was
// quarantined by check, the next backup that reuses the file's entry
// (unchanged by size and mtime) gets ErrContentMissing, reads the file
// again and so stores the chunk again; the pool then checks clean. Found
// by internal/torture's bit-rot test: only the chunk list was looked at.
func TestReuseHealsQuarantinedChunk(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	big := cdcRand(7, 3<<20)
	write := func(reuse *Entry) (*Manifest, error) {
		w, err := p.NewWriter(ctx, SnapshotMeta{Host: "h", Source: "s"})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Add(ctx, ".", Entry{Name: ".", Type: TypeDir, Mode: 0o755}, nil); err != nil {
			t.Fatal(err)
		}
		e := Entry{Name: "big", Type: TypeFile, Mode: 0o644, Size: int64(len(big))}
		var reuseErr error
		if reuse != nil {
			reuseErr = w.Add(ctx, "big", *reuse, nil)
		}
		if reuse == nil || reuseErr != nil {
			if err := w.Add(ctx, "big", e, bytes.NewReader(big)); err != nil {
				t.Fatal(err)
			}
		}
		m, err := w.Finish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return m, reuseErr
	}
	m1, _ := write(nil)
	e, err := p.Lookup(ctx, m1.Root, "big")
	if err != nil || !e.Chunked {
		t.Fatalf("big: %+v %v (want a chunked file)", e, err)
	}
	refs, err := p.readChunkList(ctx, e.Content)
	if err != nil || len(refs) < 2 {
		t.Fatalf("chunks: %d %v", len(refs), err)
	}
	// Unharmed: the entry is reused as is.
	if _, err := write(&e); err != nil {
		t.Fatalf("reuse of an intact file: %v", err)
	}
	if err := p.Quarantine(ctx, refs[1].d); err != nil {
		t.Fatal(err)
	}
	if _, err := write(&e); !errors.Is(err, ErrContentMissing) {
		t.Fatalf("reuse of a file with a quarantined chunk: %v, want ErrContentMissing", err)
	}
	rep, err := p.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("check after the healing write: %+v %v", rep, err)
	}
	// Healed: the next reuse is plain again.
	if _, err := write(&e); err != nil {
		t.Fatalf("reuse after healing: %v", err)
	}
}
