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
	f.put(c) // 1+1+2 MiB > 3 MiB: dropped
	f.put(big)
	if f.bytes != 2<<20 || len(f.free[0]) != 2 || len(f.free[1]) != 0 {
		t.Fatalf("idle: %d bytes, lists %d/%d; want 2 MiB in two 1 MiB buffers", f.bytes, len(f.free[0]), len(f.free[1]))
	}
	r := f.get(10)
	if len(*r) != 0 || cap(*r) != 1<<20 || f.bytes != 1<<20 {
		t.Fatalf("reused buffer: len %d cap %d, idle %d", len(*r), cap(*r), f.bytes)
	}
}
