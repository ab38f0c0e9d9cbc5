package pool

import "testing"

func TestBufFreeBounded(t *testing.T) {
	f := newBufFree(3<<20, 1<<20, 2<<20)
	a, b, c := f.get(100), f.get(1<<20), f.get(1<<20+1)
	if cap(*a) != 1<<20 || cap(*b) != 1<<20 || cap(*c) != 2<<20 {
		t.Fatalf("classes: got caps %d %d %d", cap(*a), cap(*b), cap(*c))
	}
	big := f.get(5 << 20)
	if cap(*big) != 5<<20 {
		t.Fatalf("beyond the classes: cap %d, want exactly 5 MiB", cap(*big))
	}
	*a = append(*a, "data"...)
	f.put(a)
	f.put(b)
	f.put(big) // not a class: dropped
	if f.bytes != 2<<20 || len(f.free[0]) != 2 || len(f.free[1]) != 0 {
		t.Fatalf("idle: %d bytes, lists %d/%d; want 2 MiB in two 1 MiB buffers", f.bytes, len(f.free[0]), len(f.free[1]))
	}
	// 1+1+2 MiB > 3 MiB: an idle 1 MiB buffer makes room for the 2 MiB one.
	f.put(c)
	if f.bytes != 3<<20 || len(f.free[0]) != 1 || len(f.free[1]) != 1 {
		t.Fatalf("after evicting: %d bytes, lists %d/%d; want one buffer of each class", f.bytes, len(f.free[0]), len(f.free[1]))
	}
	r := f.get(10)
	if len(*r) != 0 || cap(*r) != 1<<20 || f.bytes != 2<<20 {
		t.Fatalf("reused buffer: len %d cap %d, idle %d", len(*r), cap(*r), f.bytes)
	}
	// A second 2 MiB buffer: only its own class is idle, so it is dropped
	// rather than evicting a buffer of its own class.
	d := f.get(2 << 20) // reuses c
	e := f.get(2 << 20) // new
	f.put(d)
	f.put(e)
	if f.bytes != 2<<20 || len(f.free[0]) != 0 || len(f.free[1]) != 1 {
		t.Fatalf("own class full: %d bytes, lists %d/%d; want one 2 MiB buffer", f.bytes, len(f.free[0]), len(f.free[1]))
	}
}
