package corpus

import (
	"math"
	"math/rand/v2"
	"strconv"
)

const vocabSize = 4096

// vocab is a seeded word list with a Zipf-like sampling table, so generated
// text has the skewed word frequencies that make real text compress.
type vocab struct {
	words [vocabSize][]byte
	table [1 << 16]uint16 // uniform 16-bit value → word index
}

func newVocab(seed uint64) *vocab {
	v := new(vocab)
	rng := rand.New(rand.NewPCG(seed, 0x766f636162)) // "vocab"
	const letters = "etaoinshrdlcumwfgypbvkjxqz"
	for i := range v.words {
		n := 2 + rng.IntN(4) + rng.IntN(5)
		w := make([]byte, n)
		for j := range w {
			// Favour frequent letters: min of two draws skews low.
			w[j] = letters[min(rng.IntN(len(letters)), rng.IntN(len(letters)))]
		}
		v.words[i] = w
	}
	var cum [vocabSize]float64
	total := 0.0
	for k := range cum {
		total += 1 / math.Pow(float64(k+1), 1.05)
		cum[k] = total
	}
	k := 0
	for u := range v.table {
		x := (float64(u) + 0.5) / float64(len(v.table)) * total
		for cum[k] < x {
			k++
		}
		v.table[u] = uint16(k)
	}
	return v
}

func (v *vocab) word(r uint64) []byte { return v.words[v.table[uint16(r)]] }

var (
	levels     = []string{"INFO ", "INFO ", "INFO ", "INFO ", "INFO ", "INFO ", "DEBUG", "DEBUG", "WARN ", "ERROR"}
	statuses   = []string{"200", "200", "200", "200", "200", "204", "301", "304", "404", "500"}
	methods    = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	components = []string{"api", "auth", "db", "cache", "worker", "scheduler", "mailer", "proxy"}
)

// text generates an endless stream of one text-like kind, line by line.
type text struct {
	kind Kind
	voc  *vocab
	rng  *rand.PCG
	line []byte
	off  int
	n    int64 // lines so far
	ts   int64 // unix ms, for logs and JSON
}

func newText(k Kind, voc *vocab, seed, index uint64) *text {
	r := rand.NewPCG(seed, index^0x7465787473) // "texts"
	return &text{kind: k, voc: voc, rng: r, ts: baseTime.UnixMilli() + int64(r.Uint64()%(365*86400*1000))}
}

// Read fills p completely; it never fails.
func (t *text) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if t.off == len(t.line) {
			t.line = t.next(t.line[:0])
			t.off = 0
			t.n++
		}
		c := copy(p[n:], t.line[t.off:])
		t.off += c
		n += c
	}
	return n, nil
}

// words appends n space-separated words.
func (t *text) words(b []byte, n int) []byte {
	var r uint64
	for i := range n {
		if i%4 == 0 {
			r = t.rng.Uint64()
		}
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, t.voc.word(r)...)
		r >>= 16
	}
	return b
}

func pick(s []string, r uint64) string { return s[r%uint64(len(s))] }

func (t *text) next(b []byte) []byte {
	r := t.rng.Uint64()
	switch t.kind {
	case Text:
		// One or two sentences per line, wrapped prose.
		for s := range 1 + int(r&1) {
			start := len(b)
			if s > 0 {
				b = append(b, ' ')
				start++
			}
			b = t.words(b, 5+int(r>>8%12))
			if c := b[start]; c >= 'a' && c <= 'z' {
				b[start] = c - 'a' + 'A'
			}
			if r>>16%5 == 0 {
				b = append(b, ',', ' ')
				b = t.words(b, 2+int(r>>20%5))
			}
			b = append(b, '.')
			r >>= 24
		}
		if r%7 == 0 {
			b = append(b, '\n')
		}
		return append(b, '\n')
	case Log:
		t.ts += int64(r % 2000)
		b = appendTime(b, t.ts)
		b = append(b, ' ')
		b = append(b, pick(levels, r>>12)...)
		b = append(b, " ["...)
		b = append(b, pick(components, r>>16)...)
		b = append(b, "] "...)
		b = append(b, pick(methods, r>>20)...)
		b = append(b, " /"...)
		r2 := t.rng.Uint64()
		b = append(b, t.voc.word(r2)...)
		b = append(b, '/')
		b = append(b, t.voc.word(r2>>16)...)
		b = append(b, " status="...)
		b = append(b, pick(statuses, r>>24)...)
		b = append(b, " dur="...)
		b = strconv.AppendInt(b, int64(r>>28%900), 10)
		b = append(b, "ms req="...)
		b = strconv.AppendUint(b, r>>40&0xfffff, 16)
		b = append(b, " user="...)
		b = append(b, t.voc.word(r2>>32)...)
		b = append(b, " msg=\""...)
		b = t.words(b, 3+int(r2>>48%6))
		return append(b, "\"\n"...)
	default: // JSON
		t.ts += int64(r % 5000)
		b = append(b, `{"id":`...)
		b = strconv.AppendInt(b, t.n+1, 10)
		b = append(b, `,"ts":`...)
		b = strconv.AppendInt(b, t.ts, 10)
		b = append(b, `,"user":"`...)
		b = append(b, t.voc.word(r>>8)...)
		b = append(b, `","event":"`...)
		b = append(b, pick(components, r>>24)...)
		b = append(b, '.')
		b = append(b, pick(methods, r>>28)...)
		b = append(b, `","ok":`...)
		b = strconv.AppendBool(b, r>>32%10 != 0)
		b = append(b, `,"score":`...)
		b = strconv.AppendInt(b, int64(r>>36%1000), 10)
		b = append(b, `,"tags":["`...)
		r2 := t.rng.Uint64()
		b = append(b, t.voc.word(r2)...)
		b = append(b, `","`...)
		b = append(b, t.voc.word(r2>>16)...)
		b = append(b, `"],"note":"`...)
		b = t.words(b, 2+int(r2>>32%8))
		return append(b, "\"}\n"...)
	}
}

// appendTime appends an RFC 3339 UTC timestamp with milliseconds, without
// going through time.Format (this is the generator's hot path).
func appendTime(b []byte, ms int64) []byte {
	secs := ms / 1000
	days := secs / 86400
	rem := secs % 86400
	y, m, d := civil(days)
	b = appendPad(b, y, 4)
	b = append(b, '-')
	b = appendPad(b, m, 2)
	b = append(b, '-')
	b = appendPad(b, d, 2)
	b = append(b, 'T')
	b = appendPad(b, rem/3600, 2)
	b = append(b, ':')
	b = appendPad(b, rem/60%60, 2)
	b = append(b, ':')
	b = appendPad(b, rem%60, 2)
	b = append(b, '.')
	b = appendPad(b, ms%1000, 3)
	return append(b, 'Z')
}

func appendPad(b []byte, v int64, w int) []byte {
	var tmp [20]byte
	s := strconv.AppendInt(tmp[:0], v, 10)
	for i := len(s); i < w; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// civil converts days since 1970-01-01 to a proleptic Gregorian date
// (Howard Hinnant's days_from_civil inverse).
func civil(z int64) (y, m, d int64) {
	z += 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}
