package pool

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// cdcRand returns n deterministic pseudo-random bytes.
func cdcRand(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestChunkSizes(t *testing.T) {
	data := cdcRand(1, 32<<20)
	sizes := Chunks(data)
	total := 0
	for i, n := range sizes {
		total += n
		if n > ChunkMax || (n < ChunkMin && i != len(sizes)-1) {
			t.Fatalf("chunk %d has size %d, outside [%d, %d]", i, n, ChunkMin, ChunkMax)
		}
	}
	if total != len(data) {
		t.Fatalf("chunks cover %d bytes, want %d", total, len(data))
	}
	avg := len(data) / len(sizes)
	if avg < ChunkAvg/2 || avg > 2*ChunkAvg {
		t.Fatalf("average chunk %d bytes over %d chunks, want about %d", avg, len(sizes), ChunkAvg)
	}
	t.Logf("%d chunks, average %d KiB", len(sizes), avg>>10)
}

func TestChunkDeterministicGear(t *testing.T) {
	// The gear table is part of the format (FORMAT.md §5): pin two values.
	if gear[0] != 0x8c3f8858532227a0 || gear[255] != 0x8af200cb99400c6c {
		t.Fatalf("gear[0]=%#x gear[255]=%#x: the gear table changed", gear[0], gear[255])
	}
	if makeGear(gearSeed) != gear {
		t.Fatal("gear table not deterministic")
	}
}

func TestChunkSmallAndZero(t *testing.T) {
	if got := Chunks(nil); len(got) != 0 {
		t.Fatalf("Chunks(nil) = %v", got)
	}
	if got := Chunks(make([]byte, 100)); len(got) != 1 || got[0] != 100 {
		t.Fatalf("Chunks(100 zeros) = %v", got)
	}
	// All zeros never matches a mask: max-size chunks.
	got := Chunks(make([]byte, 9<<20))
	if len(got) != 3 || got[0] != ChunkMax || got[1] != ChunkMax || got[2] != 1<<20 {
		t.Fatalf("Chunks(9 MiB zeros) = %v", got)
	}
}

// dedupAfterInsert chunks data and data with a few bytes inserted in the
// middle and returns the fraction of the second's bytes in shared chunks.
func dedupAfterInsert(data []byte) (float64, int) {
	mod := make([]byte, 0, len(data)+16)
	mid := len(data) / 2
	mod = append(mod, data[:mid]...)
	mod = append(mod, []byte("inserted bytes!")...)
	mod = append(mod, data[mid:]...)
	seen := map[string]bool{}
	for off, n := range offsets(data) {
		seen[string(data[off:off+n])] = true
	}
	shared, newChunks := 0, 0
	for off, n := range offsets(mod) {
		if seen[string(mod[off:off+n])] {
			shared += n
		} else {
			newChunks++
		}
	}
	return float64(shared) / float64(len(mod)), newChunks
}

func offsets(data []byte) func(func(int, int) bool) {
	return func(yield func(int, int) bool) {
		off := 0
		for _, n := range Chunks(data) {
			if !yield(off, n) {
				return
			}
			off += n
		}
	}
}

func TestChunkDedupAfterInsertion(t *testing.T) {
	data := cdcRand(2, 24<<20)
	frac, newChunks := dedupAfterInsert(data)
	if frac < 0.9 || newChunks > 3 {
		t.Fatalf("after a 15-byte insertion only %.1f%% dedups (%d new chunks)", 100*frac, newChunks)
	}
	t.Logf("dedup after insertion: %.2f%%, %d new chunks", 100*frac, newChunks)
	if !bytes.Equal(data[:16], cdcRand(2, 16)) {
		t.Fatal("cdcRand not deterministic")
	}
}

func BenchmarkChunker(b *testing.B) {
	data := cdcRand(3, 64<<20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		Chunks(data)
	}
	b.StopTimer()
	frac, newChunks := dedupAfterInsert(data)
	b.ReportMetric(100*frac, "%dedup-after-insert")
	b.ReportMetric(float64(newChunks), "new-chunks")
}
