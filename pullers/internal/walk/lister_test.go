package walk

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLess(t *testing.T) {
	// Depth first, names in byte order.
	want := []string{"", "a", "a/b", "a/b/c", "a/c", "a.b", "a0", "b", "b/a"}
	got := slices.Clone(want)
	rand.Shuffle(len(got), func(i, j int) { got[i], got[j] = got[j], got[i] })
	slices.SortFunc(got, func(a, b string) int {
		switch {
		case Less(a, b):
			return -1
		case Less(b, a):
			return 1
		}
		return 0
	})
	if !slices.Equal(got, want) {
		t.Errorf("sorted %q, want %q", got, want)
	}
}

// tree is a directory tree: path -> sorted child directory names.
type tree map[string][]string

func makeTree(r *rand.Rand, rel string, depth int, t tree) {
	n := 0
	if depth < 4 {
		n = r.IntN(5)
	}
	var kids []string
	for i := range n {
		kids = append(kids, fmt.Sprintf("d%d", i))
	}
	t[rel] = kids
	for _, k := range kids {
		makeTree(r, Join(rel, k), depth+1, t)
	}
}

// TestListerWalk: a walk over a tree gets every listing once and right,
// in walk order, while at most InFlight listings run and at most Held are
// kept; directories the walk passes over are dropped.
func TestListerWalk(t *testing.T) {
	for _, c := range []struct {
		name           string
		inFlight, held int
		skip           string // the walk does not descend into dirs named so
	}{
		{"serial", 1, 1, ""},
		{"ahead", 4, 8, ""},
		{"wide", 16, 16, ""},
		{"passing over", 4, 8, "d1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			tr := tree{}
			makeTree(r, "", 0, tr)
			var running, maxRunning atomic.Int64
			var mu sync.Mutex
			listed := map[string]int{}
			l := NewLister(context.Background(), ListerConfig[[]string]{
				List: func(ctx context.Context, rel string) ([]string, error) {
					n := running.Add(1)
					defer running.Add(-1)
					for {
						m := maxRunning.Load()
						if n <= m || maxRunning.CompareAndSwap(m, n) {
							break
						}
					}
					mu.Lock()
					listed[rel]++
					mu.Unlock()
					time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
					if strings.HasSuffix(rel, "d3") {
						return tr[rel], fmt.Errorf("listing %s failed", rel)
					}
					return tr[rel], nil
				},
				Children: func(rel string, depth int, kids []string, _ error) []string {
					var out []string
					for _, k := range kids {
						if k != c.skip || c.skip == "" {
							out = append(out, Join(rel, k))
						}
					}
					return out
				},
				InFlight: c.inFlight, Held: c.held,
			})
			var order []string
			var walk func(rel string, depth int)
			walk = func(rel string, depth int) {
				kids, err := l.Get(context.Background(), rel, depth)
				if strings.HasSuffix(rel, "d3") != (err != nil) {
					t.Errorf("%s: error %v", rel, err)
				}
				if !slices.Equal(kids, tr[rel]) {
					t.Errorf("%s: listed %q, want %q", rel, kids, tr[rel])
				}
				order = append(order, rel)
				l.mu.Lock()
				if len(l.jobs) > c.held {
					t.Errorf("%d listings held, want at most %d", len(l.jobs), c.held)
				}
				l.mu.Unlock()
				for _, k := range kids {
					if k == c.skip {
						continue
					}
					walk(Join(rel, k), depth+1)
				}
			}
			walk("", 0)
			l.Close()
			if !slices.IsSortedFunc(order, func(a, b string) int {
				if Less(a, b) {
					return -1
				}
				return 1
			}) {
				t.Errorf("walk order %q", order)
			}
			for _, rel := range order {
				if listed[rel] != 1 {
					t.Errorf("%s listed %d times", rel, listed[rel])
				}
			}
			for rel, n := range listed {
				if !slices.Contains(order, rel) {
					t.Errorf("%s listed %d times, but the walk never asked", rel, n)
				}
			}
			if m := maxRunning.Load(); m > int64(c.inFlight) {
				t.Errorf("%d listings at once, want at most %d", m, c.inFlight)
			}
			t.Logf("%d directories, at most %d listings at once", len(order), maxRunning.Load())
		})
	}
}

// TestListerCancel: Close returns once the listings in flight end, and a
// Get waiting for one returns with its ctx.
func TestListerCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	l := NewLister(ctx, ListerConfig[int]{
		List: func(ctx context.Context, rel string) (int, error) {
			if rel == "" {
				return 0, nil
			}
			<-ctx.Done()
			return 0, ctx.Err()
		},
		Children: func(rel string, _ int, _ int, _ error) []string {
			if rel == "" {
				return []string{"a", "b"}
			}
			return nil
		},
		InFlight: 2, Held: 2,
	})
	if _, err := l.Get(ctx, "", 0); err != nil {
		t.Fatal(err)
	}
	gctx, gcancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer gcancel()
	if _, err := l.Get(gctx, "a", 1); err == nil {
		t.Error("Get of a listing in flight returned before it finished")
	}
	cancel()
	l.Close()
}
