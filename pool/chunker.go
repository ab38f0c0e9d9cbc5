package pool

// Content-defined chunking (FORMAT.md §5): a FastCDC-style gear hash with
// normalized chunking. A cut depends only on the 64 bytes before it, so an
// insertion shifts at most the chunks around it and the rest dedup.

const (
	// ChunkMin, ChunkAvg and ChunkMax bound chunk sizes. A file of at most
	// SmallFileMax bytes is stored as one object without chunking.
	ChunkMin     = 256 << 10
	ChunkAvg     = 1 << 20
	ChunkMax     = 4 << 20
	SmallFileMax = ChunkAvg
)

// Normalized chunking: before ChunkAvg a cut needs the top maskBitsS bits
// of the hash to be zero (harder), after it only maskBitsL (easier), which
// concentrates sizes around the average.
const (
	maskBitsS = 22
	maskBitsL = 18
	maskS     = uint64(1<<maskBitsS-1) << (64 - maskBitsS)
	maskL     = uint64(1<<maskBitsL-1) << (64 - maskBitsL)
)

// gearSeed seeds the gear table. Changing it changes every chunk boundary
// (and so dedup against older snapshots), not the readability of a pool.
const gearSeed = 0x636169726e676561 // "cairngea"

var gear = makeGear(gearSeed)

// makeGear fills the 256-entry gear table from splitmix64(seed).
func makeGear(seed uint64) (t [256]uint64) {
	x := seed
	for i := range t {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		t[i] = z ^ (z >> 31)
	}
	return t
}

// cutPoint returns the length of the first chunk of data, assuming data
// holds everything that remains of the file when it is shorter than
// ChunkMax.
func cutPoint(data []byte) int {
	n := len(data)
	if n <= ChunkMin {
		return n
	}
	if n > ChunkMax {
		n = ChunkMax
	}
	normal := ChunkAvg
	if normal > n {
		normal = n
	}
	var h uint64
	// The gear hash forgets a byte after 64 steps, so starting at ChunkMin
	// with h = 0 leaves every cut a function of the 64 bytes before it.
	b := data[ChunkMin:normal]
	for i, c := range b {
		h = (h << 1) + gear[c]
		if h&maskS == 0 {
			return ChunkMin + i + 1
		}
	}
	b = data[normal:n]
	for i, c := range b {
		h = (h << 1) + gear[c]
		if h&maskL == 0 {
			return normal + i + 1
		}
	}
	return n
}

// Chunks splits data, the whole content of a file, into chunk lengths. It
// is the reference used by tests; the Writer chunks streams incrementally
// with the same cut points.
func Chunks(data []byte) []int {
	var out []int
	for len(data) > 0 {
		n := cutPoint(data)
		out = append(out, n)
		data = data[n:]
	}
	return out
}
