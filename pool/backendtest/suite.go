package backendtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// Run runs the conformance suite. newBackend returns a fresh, empty
// backend for each subtest (and registers its own cleanup).
func Run(t *testing.T, newBackend func(t *testing.T) pool.Backend) {
	tests := []struct {
		name string
		fn   func(*testing.T, pool.Backend)
	}{
		{"PutGet", testPutGet},
		{"Range", testRange},
		{"Stat", testStat},
		{"Missing", testMissing},
		{"List", testList},
		{"ListStops", testListStops},
		{"Delete", testDelete},
		{"Overwrite", testOverwrite},
		{"OverwriteAtomic", testOverwriteAtomic},
		{"Concurrent", testConcurrent},
		{"OddNames", testOddNames},
		{"InvalidNames", testInvalidNames},
		{"ShortInput", testShortInput},
		{"Canceled", testCanceled},
		{"Sync", testSync},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newBackend(t)) })
	}
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func put(t *testing.T, b pool.Backend, name string, data []byte) {
	t.Helper()
	if err := b.Put(context.Background(), name, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
}

func get(t *testing.T, b pool.Backend, name string, off, length int64) []byte {
	t.Helper()
	rc, err := b.Get(context.Background(), name, off, length)
	if err != nil {
		t.Fatalf("get %s [%d,%d]: %v", name, off, length, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s [%d,%d]: %v", name, off, length, err)
	}
	return data
}

func list(t *testing.T, b pool.Backend, prefix string) map[string]pool.ObjectInfo {
	t.Helper()
	m := map[string]pool.ObjectInfo{}
	var mu sync.Mutex
	err := b.List(context.Background(), prefix, func(oi pool.ObjectInfo) error {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := m[oi.Name]; dup {
			t.Errorf("list %q: %s listed twice", prefix, oi.Name)
		}
		m[oi.Name] = oi
		return nil
	})
	if err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	return m
}

func keys(m map[string]pool.ObjectInfo) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

func testPutGet(t *testing.T, b pool.Backend) {
	for _, n := range []int{0, 1, 1000, 1 << 20} {
		name := fmt.Sprintf("objects/ab/cd/size%d", n)
		data := random(n)
		put(t, b, name, data)
		if got := get(t, b, name, 0, -1); !bytes.Equal(got, data) {
			t.Fatalf("%s: got %d bytes, want %d identical", name, len(got), n)
		}
	}
	// A put from a reader that is not a bytes.Reader, with unknown size.
	data := random(70000)
	if err := b.Put(context.Background(), "stream/x", io.MultiReader(bytes.NewReader(data[:1]), bytes.NewReader(data[1:])), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got := get(t, b, "stream/x", 0, -1); !bytes.Equal(got, data) {
		t.Fatal("stream put: content differs")
	}
}

func testRange(t *testing.T, b pool.Backend) {
	data := random(10000)
	put(t, b, "r/obj", data)
	for _, c := range []struct{ off, length int64 }{
		{0, -1}, {0, 0}, {0, 1}, {1, 10}, {5000, 5000}, {9999, 1}, {9990, 100}, {9990, -1}, {10000, -1}, {10000, 5}, {20000, 5}, {0, 10000}, {0, 20000},
	} {
		want := data[min(c.off, 10000):]
		if c.length >= 0 && c.length < int64(len(want)) {
			want = want[:c.length]
		}
		if got := get(t, b, "r/obj", c.off, c.length); !bytes.Equal(got, want) {
			t.Errorf("range [%d,%d]: got %d bytes, want %d", c.off, c.length, len(got), len(want))
		}
	}
	put(t, b, "r/empty", nil)
	if got := get(t, b, "r/empty", 0, 10); len(got) != 0 {
		t.Errorf("empty object range: got %d bytes", len(got))
	}
}

func testStat(t *testing.T, b pool.Backend) {
	before := time.Now().Add(-time.Hour) // tolerate a skewed server clock
	put(t, b, "s/a", random(1234))
	oi, err := b.Stat(context.Background(), "s/a")
	if err != nil {
		t.Fatal(err)
	}
	if oi.Name != "s/a" || oi.Size != 1234 {
		t.Fatalf("stat: %+v", oi)
	}
	if oi.ModTime.Before(before) || oi.ModTime.After(time.Now().Add(time.Hour)) {
		t.Fatalf("stat: ModTime %v not near now", oi.ModTime)
	}
}

func testMissing(t *testing.T, b pool.Backend) {
	ctx := context.Background()
	put(t, b, "m/present", []byte("x"))
	if _, err := b.Stat(ctx, "m/absent"); !errors.Is(err, pool.ErrNotFound) {
		t.Errorf("stat missing: %v, want ErrNotFound", err)
	}
	rc, err := b.Get(ctx, "m/absent", 0, -1)
	if err == nil {
		// Some stores only report on first read; the body must then fail.
		_, err = io.ReadAll(rc)
		rc.Close()
	}
	if !errors.Is(err, pool.ErrNotFound) {
		t.Errorf("get missing: %v, want ErrNotFound", err)
	}
	if err := b.Delete(ctx, "m/absent"); err != nil {
		t.Errorf("delete missing: %v", err)
	}
	// A "directory" of other names is not itself an object.
	if _, err := b.Stat(ctx, "m"); !errors.Is(err, pool.ErrNotFound) {
		t.Errorf("stat prefix dir: %v, want ErrNotFound", err)
	}
	// A name below an object is missing, too.
	if _, err := b.Stat(ctx, "m/present/below"); !errors.Is(err, pool.ErrNotFound) {
		t.Errorf("stat below an object: %v, want ErrNotFound", err)
	}
	if _, err := b.Get(ctx, "m/present/below", 0, -1); !errors.Is(err, pool.ErrNotFound) {
		t.Errorf("get below an object: %v, want ErrNotFound", err)
	}
	if got := list(t, b, "nothing/here/"); len(got) != 0 {
		t.Errorf("list of absent prefix: %v", keys(got))
	}
}

func testList(t *testing.T, b pool.Backend) {
	names := []string{
		"objects/aa/bb/aabb1", "objects/aa/bb/aabb2", "objects/aa/bc/aabc1",
		"objects/ab/00/ab001", "objects/ba/00/ba001",
		"snapshots/s1", "snapshots2/x", "top",
	}
	for i, n := range names {
		put(t, b, n, random(i+1))
	}
	cases := map[string][]string{
		"":                    names,
		"objects/":            names[:5],
		"objects/a":           names[:4],
		"objects/aa/":         names[:3],
		"objects/aa/bb/":      names[:2],
		"objects/aa/b":        names[:3],
		"objects/aa/bb/aabb1": {"objects/aa/bb/aabb1"},
		"snap":                {"snapshots/s1", "snapshots2/x"},
		"snapshots/":          {"snapshots/s1"},
		"t":                   {"top"},
		"zzz":                 nil,
	}
	for prefix, want := range cases {
		got := list(t, b, prefix)
		w := append([]string(nil), want...)
		sort.Strings(w)
		if g := keys(got); strings.Join(g, ",") != strings.Join(w, ",") {
			t.Errorf("list %q = %v, want %v", prefix, g, w)
		}
		for name, oi := range got {
			idx := -1
			for i, n := range names {
				if n == name {
					idx = i
				}
			}
			if oi.Size != int64(idx+1) || oi.ModTime.IsZero() {
				t.Errorf("list %q: %s: %+v", prefix, name, oi)
			}
		}
	}
}

func testListStops(t *testing.T, b pool.Backend) {
	for i := range 10 {
		put(t, b, fmt.Sprintf("l/%02d", i), []byte{byte(i)})
	}
	stop := errors.New("stop here")
	n := 0
	err := b.List(context.Background(), "l/", func(pool.ObjectInfo) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("list stopping at 3: n=%d err=%v", n, err)
	}
}

func testDelete(t *testing.T, b pool.Backend) {
	ctx := context.Background()
	put(t, b, "d/a", []byte("a"))
	put(t, b, "d/b", []byte("b"))
	if err := b.Delete(ctx, "d/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, "d/a"); !errors.Is(err, pool.ErrNotFound) {
		t.Fatalf("stat after delete: %v", err)
	}
	if got := keys(list(t, b, "d/")); len(got) != 1 || got[0] != "d/b" {
		t.Fatalf("list after delete: %v", got)
	}
	put(t, b, "d/a", []byte("again"))
	if got := get(t, b, "d/a", 0, -1); string(got) != "again" {
		t.Fatalf("put after delete: %q", got)
	}
}

func testOverwrite(t *testing.T, b pool.Backend) {
	put(t, b, "o/x", random(5000))
	second := random(100)
	put(t, b, "o/x", second)
	if got := get(t, b, "o/x", 0, -1); !bytes.Equal(got, second) {
		t.Fatal("overwrite: old content still visible")
	}
	if oi, err := b.Stat(context.Background(), "o/x"); err != nil || oi.Size != 100 {
		t.Fatalf("overwrite: stat %+v %v", oi, err)
	}
}

// testOverwriteAtomic: readers racing a writer see one whole version,
// never a mix or a prefix.
func testOverwriteAtomic(t *testing.T, b pool.Backend) {
	versions := [][]byte{bytes.Repeat([]byte{'A'}, 256<<10), bytes.Repeat([]byte{'B'}, 256<<10)}
	put(t, b, "atomic/x", versions[0])
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var reads sync.Map
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				rc, err := b.Get(context.Background(), "atomic/x", 0, -1)
				if err != nil {
					t.Errorf("reader %d: %v", r, err)
					return
				}
				data, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Errorf("reader %d: %v", r, err)
					return
				}
				if !bytes.Equal(data, versions[0]) && !bytes.Equal(data, versions[1]) {
					t.Errorf("reader %d: saw a torn object (%d bytes)", r, len(data))
					return
				}
				reads.Store(r*1000000+i, true)
			}
		}()
	}
	for i := range 20 {
		put(t, b, "atomic/x", versions[(i+1)%2])
	}
	cancel()
	wg.Wait()
	if got := get(t, b, "atomic/x", 0, -1); !bytes.Equal(got, versions[0]) {
		t.Fatal("final version wrong")
	}
}

func testConcurrent(t *testing.T, b pool.Backend) {
	var wg sync.WaitGroup
	want := map[string][]byte{}
	var mu sync.Mutex
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				name := fmt.Sprintf("objects/%02x/%02x/g%di%d", g, i, g, i)
				data := random(1000 + g*100 + i)
				if err := b.Put(context.Background(), name, bytes.NewReader(data), int64(len(data))); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want[name] = data
				mu.Unlock()
				// Same directory from several goroutines at once.
				shared := fmt.Sprintf("objects/ff/ff/shared%d-%d", g, i)
				if err := b.Put(context.Background(), shared, bytes.NewReader(data), int64(len(data))); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want[shared] = data
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	got := list(t, b, "objects/")
	if len(got) != len(want) {
		t.Fatalf("listed %d objects, want %d", len(got), len(want))
	}
	for name, data := range want {
		if g := get(t, b, name, 0, -1); !bytes.Equal(g, data) {
			t.Fatalf("%s: content differs", name)
		}
	}
}

func testOddNames(t *testing.T, b pool.Backend) {
	names := []string{
		"odd/with space/and more", "odd/ünïcödé/名前", "odd/per%cent", "odd/plus+sign",
		"odd/question?mark", "odd/hash#tag", "odd/eq=amp&", "odd/tilde~", "odd/.hidden", "odd/..dots",
		"odd/" + strings.Repeat("x", 200), "odd/semi;colon,comma", "odd/quote'dq\"", "odd/star*",
	}
	for i, n := range names {
		put(t, b, n, []byte(fmt.Sprint(i)))
	}
	got := list(t, b, "odd/")
	if len(got) != len(names) {
		t.Errorf("list odd/: %d names, want %d: %v", len(got), len(names), keys(got))
	}
	for i, n := range names {
		if g := get(t, b, n, 0, -1); string(g) != fmt.Sprint(i) {
			t.Errorf("%q: got %q", n, g)
		}
		if _, ok := got[n]; !ok {
			t.Errorf("%q not listed", n)
		}
		if err := b.Delete(context.Background(), n); err != nil {
			t.Errorf("delete %q: %v", n, err)
		}
	}
	if got := list(t, b, "odd/"); len(got) != 0 {
		t.Errorf("after delete: %v", keys(got))
	}
}

func testInvalidNames(t *testing.T, b pool.Backend) {
	ctx := context.Background()
	for _, n := range []string{"", "/abs", "../escape", "a/../../b", "a/./b", "a//b", "trailing/", ".", "..", "nul\x00byte", `back\slash`, "a/.tmp-x"} {
		if err := b.Put(ctx, n, bytes.NewReader([]byte("x")), 1); !errors.Is(err, pool.ErrInvalidName) {
			t.Errorf("put %q: %v, want ErrInvalidName", n, err)
		}
		if _, err := b.Get(ctx, n, 0, -1); !errors.Is(err, pool.ErrInvalidName) {
			t.Errorf("get %q: %v, want ErrInvalidName", n, err)
		}
		if _, err := b.Stat(ctx, n); !errors.Is(err, pool.ErrInvalidName) {
			t.Errorf("stat %q: %v, want ErrInvalidName", n, err)
		}
		if err := b.Delete(ctx, n); !errors.Is(err, pool.ErrInvalidName) {
			t.Errorf("delete %q: %v, want ErrInvalidName", n, err)
		}
	}
	if got := list(t, b, ""); len(got) != 0 {
		t.Errorf("invalid puts stored something: %v", keys(got))
	}
}

// A reader that ends before the promised size must not leave an object.
func testShortInput(t *testing.T, b pool.Backend) {
	for _, r := range []io.Reader{bytes.NewReader([]byte("abc")), io.MultiReader(bytes.NewReader([]byte("abc")))} {
		err := b.Put(context.Background(), "short/x", r, 10)
		if err == nil {
			t.Fatal("put with short reader succeeded")
		}
		if errors.Is(err, pool.ErrTransient) {
			t.Errorf("short input reported as transient: %v", err)
		}
		if _, err := b.Stat(context.Background(), "short/x"); !errors.Is(err, pool.ErrNotFound) {
			t.Fatalf("short put left an object: %v", err)
		}
	}
}

func testCanceled(t *testing.T, b pool.Backend) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Put(ctx, "c/x", bytes.NewReader([]byte("x")), 1); err == nil {
		t.Error("put with canceled context succeeded")
	}
	if _, err := b.Stat(context.Background(), "c/x"); !errors.Is(err, pool.ErrNotFound) {
		t.Errorf("canceled put stored the object: %v", err)
	}
}

func testSync(t *testing.T, b pool.Backend) {
	put(t, b, "sync/x", []byte("x"))
	if s, ok := b.(pool.Syncer); ok {
		if err := s.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
