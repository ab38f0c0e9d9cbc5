package pool

import "sync"

// Byte buffers of the write path, reused through free lists that are
// bounded in bytes. sync.Pool is not used for them: every size class would
// keep its own historical peak (and a GC moves, not frees, them to the
// victim cache), so with several classes of MiB-sized buffers the idle
// buffers alone outgrew the Writer's whole in-flight budget.
type bufFree struct {
	mu      sync.Mutex
	classes []int // ascending capacities
	free    [][]*[]byte
	bytes   int // capacity held idle
	max     int
}

func newBufFree(max int, classes ...int) *bufFree {
	return &bufFree{classes: classes, free: make([][]*[]byte, len(classes)), max: max}
}

// get returns an empty buffer of capacity ≥ n: the smallest class that
// fits, reused when one is idle; beyond the largest class, exactly n.
func (f *bufFree) get(n int) *[]byte {
	for i, c := range f.classes {
		if n > c {
			continue
		}
		f.mu.Lock()
		if l := len(f.free[i]); l > 0 {
			bp := f.free[i][l-1]
			f.free[i][l-1] = nil
			f.free[i] = f.free[i][:l-1]
			f.bytes -= c
			f.mu.Unlock()
			*bp = (*bp)[:0]
			return bp
		}
		f.mu.Unlock()
		b := make([]byte, 0, c)
		return &b
	}
	b := make([]byte, 0, n)
	return &b
}

// put keeps bp for reuse if its capacity is a class. When the idle
// bytes would exceed the bound, idle buffers of other classes are dropped
// first (those with the most idle bytes): the sizes in use change with
// the data (a run of small files, then a large file's chunks), and
// keeping the old phase's buffers while dropping the new phase's would
// make every buffer of the new phase a fresh allocation (zeroed, page
// faulted) until the old ones are needed again.
func (f *bufFree) put(bp *[]byte) {
	c := cap(*bp)
	for i, cc := range f.classes {
		if cc != c {
			continue
		}
		f.mu.Lock()
		for f.bytes+c > f.max {
			j := f.fullestOther(i)
			if j < 0 {
				break
			}
			l := len(f.free[j])
			f.free[j][l-1] = nil
			f.free[j] = f.free[j][:l-1]
			f.bytes -= f.classes[j]
		}
		if f.bytes+c <= f.max {
			f.free[i] = append(f.free[i], bp)
			f.bytes += c
		}
		f.mu.Unlock()
		return
	}
}

// fullestOther returns the class other than i holding the most idle
// bytes, or -1 when no other class has any. f.mu must be held.
func (f *bufFree) fullestOther(i int) int {
	best, most := -1, 0
	for j, l := range f.free {
		if j != i && len(l)*f.classes[j] > most {
			best, most = j, len(l)*f.classes[j]
		}
	}
	return best
}

// Chunk and small-file buffers by size class, so small files don't pin
// 4 MiB each and a 1.1 MiB chunk sits in 1.5 MiB, not 4. At most as many
// idle bytes as the Writer may have in flight.
var chunkBufs = newBufFree(writerBudget, 16<<10, 32<<10, 64<<10, 128<<10, 256<<10, 512<<10, 1<<20, 3<<19, 2<<20, 3<<20, ChunkMax)

func getChunkBuf(n int) *[]byte { return chunkBufs.get(n) }
func putChunkBuf(bp *[]byte)    { chunkBufs.put(bp) }

// Encode buffers (object = header + compressed or plain data + tag), one
// per worker at a time; the largest class holds a ChunkMax object.
var encBufs = newBufFree(writerBudget, 16<<10, 32<<10, 64<<10, 128<<10, 256<<10, 512<<10, 1<<20, 3<<19, 2<<20, 3<<20, ChunkMax+4<<10)

func getBuf(n int) *[]byte { return encBufs.get(n) }
func putBuf(bp *[]byte)    { encBufs.put(bp) }

// Read buffers of bulk object reads (getPooled): stored objects and their
// decompressed data, up to a ChunkMax chunk each.
var readBufs = newBufFree(writerBudget, 16<<10, 32<<10, 64<<10, 128<<10, 256<<10, 512<<10, 1<<20, 3<<19, 2<<20, 3<<20, ChunkMax+4<<10)
