package pool

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// readFaults wraps a backend and damages the next reads of chosen names
// on their way back: a flipped byte, or a body cut short that still ends
// with a clean EOF (what a broken proxy or a wrong Content-Length gives).
// The stored object stays intact. It counts Gets per name.
type readFaults struct {
	Backend
	mu    sync.Mutex
	flip  map[string]int // name → reads still to damage by a flipped byte
	short map[string]int // name → reads still to cut short
	gets  map[string]int
}

func (f *readFaults) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	rc, err := f.Backend.Get(ctx, name, off, length)
	f.mu.Lock()
	f.gets[name]++
	flip, short := f.flip[name] > 0, f.short[name] > 0 && f.flip[name] == 0
	if flip {
		f.flip[name]--
	} else if short {
		f.short[name]--
	}
	f.mu.Unlock()
	if err != nil || (!flip && !short) {
		return rc, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	if flip {
		b[len(b)/2] ^= 0x04
	} else {
		b = b[:len(b)*2/3]
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (f *readFaults) Gets(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets[name]
}

// TestCheckRereads: check --read-data over storage that damages reads
// (not the stored bytes) re-reads every object and manifest that fails
// verification afresh, with growing delays, and quarantines nothing that
// verifies on a re-read; an object whose stored bytes really are flipped
// fails every read and is quarantined and reported with its snapshot and
// path. Without re-reads (Rereads < 0) one damaged read quarantines a good
// object: the failure the re-reads prevent.
func TestCheckRereads(t *testing.T) {
	ctx := context.Background()
	dir, err := CreateDirBackend(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	f := &readFaults{Backend: dir, flip: map[string]int{}, short: map[string]int{}, gets: map[string]int{}}
	b := Decorate(f, DecorateOptions{Retries: 3, Sleep: func(context.Context, time.Duration) error { return nil }})
	p, err := Init(ctx, b, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	genTree(t, src, 11, 30, 3<<20)
	m := backupDir(t, ctx, p, src, "h", "s")
	small := mustLookup(t, p, m.Root, "d01/e1/f0001.txt")
	other := mustLookup(t, p, m.Root, "d02/e2/f0002.txt")
	big := mustLookup(t, p, m.Root, "big0.bin")
	refs, err := p.readChunkList(ctx, big.Content)
	if err != nil || len(refs) < 2 {
		t.Fatalf("big0.bin chunks: %d, %v", len(refs), err)
	}
	var mu sync.Mutex
	var delays []time.Duration
	opts := CheckOptions{ReadData: true, Sleep: func(_ context.Context, d time.Duration) error {
		mu.Lock()
		delays = append(delays, d)
		mu.Unlock()
		return nil
	}}
	quarantined := func() []string {
		var names []string
		if err := dir.List(ctx, quarantinePrefix, func(oi ObjectInfo) error { names = append(names, oi.Name); return nil }); err != nil {
			t.Fatal(err)
		}
		return names
	}

	// Damaged reads, each fewer than 1 + DefaultRereads in a row.
	f.mu.Lock()
	f.flip[ObjectName(m.Root)] = 1        // a tree (the walk)
	f.flip[ObjectName(big.Content)] = 2   // a chunk list (the walk)
	f.flip[ObjectName(small.Content)] = 3 // a file's object (read-data), as many as allowed
	f.short[ObjectName(refs[1].d)] = 2    // a chunk cut short (read-data)
	f.flip[snapshotsPrefix+m.ID] = 1      // the manifest
	f.mu.Unlock()
	rep, err := p.Check(ctx, opts)
	if err != nil || !rep.OK() || len(rep.Corrupt) != 0 || rep.Flaky != 5 || rep.ReadObjects != rep.Objects {
		t.Fatalf("check over damaged reads: %s (flaky %d, corrupt %v), %v", rep.String(), rep.Flaky, rep.Corrupt, err)
	}
	if q := quarantined(); len(q) != 0 {
		t.Fatalf("good objects quarantined: %v", q)
	}
	if len(delays) != 1+2+3+2+1 {
		t.Fatalf("%d re-read delays, want 9: %v", len(delays), delays)
	}
	// Delays grow: the i-th re-read of an object waits 200ms<<i ±25%.
	for _, d := range delays {
		ok := false
		for i := range DefaultRereads {
			base := 200 * time.Millisecond << i
			ok = ok || (d >= base*3/4 && d <= base*5/4)
		}
		if !ok {
			t.Fatalf("re-read delay %s outside the backoff steps", d)
		}
	}
	for _, e := range []Entry{small, big} {
		got := readEntry(t, p, &e)
		want, err := os.ReadFile(filepath.Join(src, map[Digest]string{small.Content: "d01/e1/f0001.txt", big.Content: "big0.bin"}[e.Content]))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("content of %s after the check differs (%v)", e.Name, err)
		}
	}

	// Really flipped stored bytes: every read fails; quarantined after
	// 1 + DefaultRereads reads, reported with snapshot and path.
	flipByte(t, objectFile(dir, other.Content), -5)
	name := ObjectName(other.Content)
	before := f.Gets(name)
	rep, err = p.Check(ctx, opts)
	if err != nil || rep.OK() || len(rep.Corrupt) != 1 || rep.Corrupt[0] != other.Content || !hasUse(rep, m.ID, "d02/e2/f0002.txt") {
		t.Fatalf("check of a flipped object: %s %+v, %v", rep.String(), rep.Affected, err)
	}
	if n := f.Gets(name) - before; n != 1+DefaultRereads+1 { // + the quarantine's copy
		t.Fatalf("flipped object read %d times, want %d", n, 1+DefaultRereads+1)
	}
	if q := quarantined(); len(q) != 1 || q[0] != QuarantineName(other.Content) {
		t.Fatalf("quarantine holds %v", q)
	}
	if _, _, err := p.Get(ctx, other.Content); !errors.Is(err, ErrNotFound) {
		t.Fatalf("flipped object still served: %v", err)
	}

	// Without re-reads, one damaged read of a good object quarantines it.
	opts.Rereads = -1
	f.mu.Lock()
	f.flip[ObjectName(small.Content)] = 1
	f.mu.Unlock()
	rep, err = p.Check(ctx, opts)
	if err != nil || len(rep.Corrupt) != 1 || rep.Corrupt[0] != small.Content {
		t.Fatalf("check without re-reads: %s, %v", rep.String(), err)
	}
}

func readEntry(t *testing.T, p *Pool, e *Entry) []byte {
	t.Helper()
	cr, err := p.OpenContent(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(io.NewSectionReader(cr, 0, e.Size))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCheckRereadsLocal: on a local directory the re-reads of a corrupt
// object follow at once (nothing to wait out), and it is still
// quarantined and reported.
func TestCheckRereadsLocal(t *testing.T) {
	ctx := context.Background()
	p, b := structPool(t)
	src := t.TempDir()
	genTree(t, src, 12, 10)
	m := backupDir(t, ctx, p, src, "h", "s")
	e := mustLookup(t, p, m.Root, "d01/e1/f0001.txt")
	flipByte(t, objectFile(b, e.Content), -4)
	slept := 0
	rep, err := p.Check(ctx, CheckOptions{ReadData: true, Sleep: func(context.Context, time.Duration) error { slept++; return nil }})
	if err != nil || len(rep.Corrupt) != 1 || rep.Corrupt[0] != e.Content || !hasUse(rep, m.ID, "d01/e1/f0001.txt") || rep.Flaky != 0 {
		t.Fatalf("check of a flipped local object: %s, %v", rep.String(), err)
	}
	if slept != 0 {
		t.Fatalf("%d waits before re-reading a local object, want none", slept)
	}
}
