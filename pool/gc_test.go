package pool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func countObjects(t testing.TB, p *Pool) int {
	n := 0
	if err := p.ListObjects(context.Background(), func(Digest, ObjectInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestGCSweepsUnreferenced(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	srcA, srcB := t.TempDir(), t.TempDir()
	genTree(t, srcA, 20, 40, 3<<20)
	genTree(t, srcB, 21, 40)
	mA := backupDir(t, ctx, p, srcA, "h", "a")
	mB := backupDir(t, ctx, p, srcB, "h", "b")
	all := countObjects(t, p)
	if err := p.DeleteSnapshot(ctx, mA.ID); err != nil {
		t.Fatal(err)
	}
	// Fresh objects are kept by the grace period.
	rep, err := p.GC(ctx, GCOptions{})
	if err != nil || rep.Swept != 0 || rep.Kept == 0 || rep.Snapshots != 1 {
		t.Fatalf("GC within grace: %+v, %v", rep, err)
	}
	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	dry, err := p.GC(ctx, GCOptions{DryRun: true, Now: later})
	if err != nil || dry.Swept == 0 || dry.SweptBytes == 0 || countObjects(t, p) != all {
		t.Fatalf("dry run: %+v, %v (objects %d → %d)", dry, err, all, countObjects(t, p))
	}
	rep, err = p.GC(ctx, GCOptions{Now: later})
	if err != nil || rep.Swept != dry.Swept || rep.SweptBytes != dry.SweptBytes || rep.Marked != dry.Marked {
		t.Fatalf("GC: %+v vs dry run %+v, %v", rep, dry, err)
	}
	if got := countObjects(t, p); got != all-rep.Swept || got != rep.Marked {
		t.Fatalf("objects after GC %d, want %d = marked %d", got, all-rep.Swept, rep.Marked)
	}
	compareSnapshot(t, ctx, p, mB, srcB)
	if rep, err := p.Check(ctx, CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check after GC: %s, %v", rep.String(), err)
	}
	// A second GC finds nothing more.
	if rep, err := p.GC(ctx, GCOptions{Grace: -1}); err != nil || rep.Swept != 0 {
		t.Fatalf("second GC: %+v, %v", rep, err)
	}
}

func TestGCForeignLocks(t *testing.T) {
	ctx := context.Background()
	p, b := structPool(t)
	src := t.TempDir()
	genTree(t, src, 22, 10)
	backupDir(t, ctx, p, src, "h", "s")
	// Another process's fresh writer lock: GC refuses to sweep.
	foreign := locksPrefix + "writer-0123456789abcdef-1"
	if err := p.PutNamed(ctx, foreign, KindManifest, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.GC(ctx, GCOptions{Grace: -1}); !errors.Is(err, ErrLocked) {
		t.Fatalf("GC with a foreign writer: %v", err)
	}
	if _, err := p.GC(ctx, GCOptions{Grace: -1, DryRun: true}); err != nil {
		t.Fatalf("dry run with a foreign writer: %v", err)
	}
	// Once stale (no heartbeat), it no longer blocks.
	old := time.Now().Add(-2 * lockStale)
	if err := os.Chtimes(filepath.Join(b.Location(), foreign), old, old); err != nil {
		t.Fatal(err)
	}
	if rep, err := p.GC(ctx, GCOptions{Grace: -1}); err != nil || rep.StaleLocks != 1 {
		t.Fatalf("GC with a stale foreign writer lock: %+v, %v", rep, err)
	}
	if _, err := p.Backend().Stat(ctx, foreign); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stale lock not removed: %v", err)
	}
	// GC leaves no lock of its own behind.
	locks := 0
	p.Backend().List(ctx, locksPrefix+"gc-", func(ObjectInfo) error { locks++; return nil })
	if locks != 0 {
		t.Fatalf("%d gc locks left", locks)
	}

	// A fresh foreign GC lock makes a new writer wait until it is gone.
	saved := lockWaitPoll
	lockWaitPoll = 5 * time.Millisecond
	defer func() { lockWaitPoll = saved }()
	gcLock := locksPrefix + "gc-0123456789abcdef-1"
	if err := p.PutNamed(ctx, gcLock, KindManifest, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := p.NewWriter(short, SnapshotMeta{Host: "h", Source: "s"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("NewWriter during a foreign GC: %v", err)
	}
	if err := p.DeleteNamed(ctx, gcLock); err != nil {
		t.Fatal(err)
	}
	w, err := p.NewWriter(ctx, SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	w.Abort()
}

// writeVariant fills dir with files whose content depends on v, so a
// later variant re-uses objects an earlier one left behind as garbage.
func writeVariant(t testing.TB, dir string, v int) {
	os.RemoveAll(dir)
	for i := 0; i < 12; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("s%d", i%4))
		os.MkdirAll(sub, 0o755)
		key := (v + i) % 4
		content := []byte(fmt.Sprintf("variant %d file %d\n", key, i))
		if i%5 == 0 {
			key = 10 + (v+i)%3
			content = cdcRand(uint64(100+key), 20000)
		}
		writeAt(t, filepath.Join(sub, fmt.Sprintf("f%d", i)), content, key)
	}
	writeAt(t, filepath.Join(dir, "big"), cdcRand(uint64(200+v%3), 2<<20), 20+v%3)
}

// writeAt writes a file whose mtime is a function of its content, so the
// incremental skip (size + mtime) reuses content when a variant repeats.
func writeAt(t testing.TB, path string, data []byte, key int) {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	mt := time.Unix(1_000_000_000+int64(key), 0)
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

// reuseBackup snapshots dir reusing content from prev where size and
// mtime match (the incremental skip), falling back to reading when the
// pool lost the content.
func reuseBackup(ctx context.Context, p *Pool, dir string, prev *Manifest, host, source string, reused, refetched *atomic.Int64) (*Manifest, error) {
	w, err := p.NewWriter(ctx, SnapshotMeta{Host: host, Source: source})
	if err != nil {
		return nil, err
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := entryFor(nil, path, fi)
		if e.Type == TypeFile && prev != nil {
			if pe, err := p.Lookup(ctx, prev.Root, rel); err == nil && pe.Size == e.Size && pe.ModTime == e.ModTime {
				e.Content, e.Chunked = pe.Content, pe.Chunked
				err := w.Add(ctx, rel, e, nil)
				if !errors.Is(err, ErrContentMissing) {
					reused.Add(1)
					return err
				}
				refetched.Add(1)
				e.Content, e.Chunked = Digest{}, false
			}
		}
		if e.Type != TypeFile {
			return w.Add(ctx, rel, e, nil)
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return w.Add(ctx, rel, e, f)
	})
	if err != nil {
		w.Abort()
		return nil, err
	}
	return w.Finish(ctx)
}

// TestGCConcurrentWithBackups runs GC with no grace period in a loop
// while backups run, with old snapshots deleted so that backups keep
// deduplicating against objects GC is sweeping. Every snapshot must
// restore exactly, and check must pass at the end.
func TestGCConcurrentWithBackups(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	const iterations = 30
	srcs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	var prev [3]*Manifest
	var (
		mu                sync.Mutex
		gcRuns            int
		swept             int
		inUse             int
		gcError           error
		reused, refetched atomic.Int64
	)
	for it := 0; it < iterations; it++ {
		for i, s := range srcs {
			v := it + i
			if i == 2 {
				v = it / 2 // changes every other iteration: the rest is reused
			}
			writeVariant(t, s, v)
		}
		var wg sync.WaitGroup
		done := make(chan struct{})
		wg.Add(1)
		go func() { // GC loop
			defer wg.Done()
			for {
				rep, err := p.GC(ctx, GCOptions{Grace: -1})
				mu.Lock()
				gcRuns++
				swept += rep.Swept
				inUse += rep.KeptInUse
				if err != nil && gcError == nil {
					gcError = err
				}
				mu.Unlock()
				select {
				case <-done:
					return
				default:
				}
			}
		}()
		// Source 2 is incremental against a previous snapshot that is
		// deleted as the backup starts (retention running alongside), so
		// its reused content is garbage for the concurrent GC.
		if prev[2] != nil {
			if err := p.DeleteSnapshot(ctx, prev[2].ID); err != nil {
				t.Fatal(err)
			}
		}
		var ms [3]*Manifest
		var errs [3]error
		var bw sync.WaitGroup
		for i, s := range srcs {
			bw.Add(1)
			go func() {
				defer bw.Done()
				if i == 2 {
					ms[i], errs[i] = reuseBackup(ctx, p, s, prev[i], "h", fmt.Sprint(i), &reused, &refetched)
					return
				}
				w, err := p.NewWriter(ctx, SnapshotMeta{Host: "h", Source: fmt.Sprint(i)})
				if err != nil {
					errs[i] = err
					return
				}
				if err := addDir(ctx, w, s); err != nil {
					w.Abort()
					errs[i] = err
					return
				}
				ms[i], errs[i] = w.Finish(ctx)
			}()
		}
		bw.Wait()
		close(done)
		wg.Wait()
		for i := range srcs {
			if errs[i] != nil {
				t.Fatalf("iteration %d backup %d: %v", it, i, errs[i])
			}
		}
		if gcError != nil {
			t.Fatalf("iteration %d: GC: %v", it, gcError)
		}
		// Restore this iteration's snapshots, then drop the previous ones
		// so their objects become garbage for the next round.
		for i, s := range srcs {
			compareSnapshot(t, ctx, p, ms[i], s)
			if prev[i] != nil && i != 2 {
				if err := p.DeleteSnapshot(ctx, prev[i].ID); err != nil {
					t.Fatal(err)
				}
			}
			prev[i] = ms[i]
		}
	}
	if _, err := p.GC(ctx, GCOptions{Grace: -1}); err != nil {
		t.Fatal(err)
	}
	for i, s := range srcs {
		compareSnapshot(t, ctx, p, prev[i], s)
	}
	rep, err := p.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("final check: %s, %v", rep.String(), err)
	}
	if swept == 0 {
		t.Fatal("GC never swept anything: the test did not exercise the race")
	}
	if reused.Load() == 0 {
		t.Fatal("the incremental backup never reused content")
	}
	t.Logf("%d iterations, %d GC runs, %d objects swept, %d kept because a writer took them up mid-GC; %d files reused, %d re-read after their content was swept",
		iterations, gcRuns, swept, inUse, reused.Load(), refetched.Load())
}

// TestGCRefusesImagePool: GC, dry run or not, refuses a pool carrying the
// image-pool marker and deletes nothing.
func TestGCRefusesImagePool(t *testing.T) {
	ctx := context.Background()
	p, _ := structPool(t)
	d, _, err := p.Put(ctx, KindData, []byte("an image block nobody in the file pool references"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.PutNamed(ctx, ImagePoolMarker, KindManifest, []byte(`{"format":"cairn-images"}`)); err != nil {
		t.Fatal(err)
	}
	for _, dry := range []bool{true, false} {
		_, err := p.GC(ctx, GCOptions{DryRun: dry, Grace: -1})
		if !errors.Is(err, ErrImagePool) || !strings.Contains(err.Error(), ImagePoolMarker) {
			t.Fatalf("GC (dry run %v) on an image pool: %v", dry, err)
		}
	}
	if ok, err := p.Exists(ctx, d); !ok || err != nil {
		t.Fatalf("block gone after refused GC: %v %v", ok, err)
	}
	// Without the marker the same pool is an ordinary file pool again.
	if err := p.DeleteNamed(ctx, ImagePoolMarker); err != nil {
		t.Fatal(err)
	}
	rep, err := p.GC(ctx, GCOptions{Grace: -1})
	if err != nil || rep.Swept != 1 {
		t.Fatalf("GC after removing the marker: %+v %v", rep, err)
	}
}
