package local

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// poolPrev is the previous snapshot in a real pool as a pullers.Previous.
type poolPrev struct {
	p    *pool.Pool
	root pool.Digest
}

func (pp poolPrev) Lookup(ctx context.Context, rel string) (pool.Entry, bool, error) {
	e, err := pp.p.Lookup(ctx, pp.root, rel)
	if err != nil {
		return pool.Entry{}, false, nil
	}
	return e, true, nil
}

// TestPullIntoPool runs the puller against the real snapshot writer (the
// Sink it is made for) and reads the result back through the pool.
func TestPullIntoPool(t *testing.T) {
	ctx := context.Background()
	b, err := pool.CreateDirBackend(filepath.Join(t.TempDir(), "pool"))
	must(t, err)
	p, err := pool.Init(ctx, b, pool.InitOptions{})
	must(t, err)
	src := t.TempDir()
	big := randData(7, 3<<20)
	write(t, filepath.Join(src, "big"), big, 0o644)
	write(t, filepath.Join(src, "d", "small"), []byte("small"), 0o600)
	write(t, filepath.Join(src, "d", "empty"), nil, 0o600)
	must(t, os.Symlink("small", filepath.Join(src, "d", "link")))
	must(t, os.Link(filepath.Join(src, "d", "small"), filepath.Join(src, "hard")))

	snap := func(prev pullers.Previous) (*pool.Manifest, pullers.Progress) {
		t.Helper()
		w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: "h", Source: "s"})
		must(t, err)
		var last pullers.Progress
		err = New().Pull(ctx, &pullers.Job{Source: pullers.Source{Path: src}, Sink: w, Previous: prev,
			Progress: func(pr pullers.Progress) { last = pr }})
		if err != nil {
			w.Abort()
			t.Fatal(err)
		}
		m, err := w.Finish(ctx)
		must(t, err)
		return m, last
	}
	m1, p1 := snap(nil)
	if m1.Status != pool.StatusComplete || p1.Skipped != 0 {
		t.Fatalf("first snapshot %+v, progress %+v", m1, p1)
	}
	for rel, want := range map[string][]byte{"big": big, "d/small": []byte("small"), "hard": []byte("small"), "d/empty": nil} {
		e, err := p.Lookup(ctx, m1.Root, rel)
		must(t, err)
		r, err := p.OpenContent(ctx, &e)
		must(t, err)
		got, err := io.ReadAll(r)
		must(t, err)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes back, want %d", rel, len(got), len(want))
		}
	}
	l, err := p.Lookup(ctx, m1.Root, "d/link")
	must(t, err)
	if l.Type != pool.TypeSymlink || l.Target != "small" {
		t.Errorf("symlink %+v", l)
	}
	h1, _ := p.Lookup(ctx, m1.Root, "hard")
	h2, _ := p.Lookup(ctx, m1.Root, "d/small")
	if h1.HardLink == 0 || h1.HardLink != h2.HardLink || h1.Content != h2.Content {
		t.Errorf("hard links %d/%d", h1.HardLink, h2.HardLink)
	}

	m2, p2 := snap(poolPrev{p, m1.Root})
	if p2.Skipped != 3 || m2.BytesNew != 0 || m2.Root != m1.Root {
		t.Errorf("no-change snapshot: skipped %d, %d bytes new, root %s vs %s", p2.Skipped, m2.BytesNew, m2.Root, m1.Root)
	}
}
