package corpus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Kind is the content type of a generated file.
type Kind uint8

// Content kinds. Text, Log and JSON compress; Random does not.
const (
	Random Kind = iota
	Text
	Log
	JSON
)

var kindExt = [...]string{Random: ".bin", Text: ".txt", Log: ".log", JSON: ".json"}

func (k Kind) String() string { return [...]string{"random", "text", "log", "json"}[k] }

// Compressible reports whether k is a text-like kind.
func (k Kind) Compressible() bool { return k != Random }

// kindOfPath maps a file extension back to its kind (Random if unknown).
func kindOfPath(p string) Kind {
	switch filepath.Ext(p) {
	case ".txt":
		return Text
	case ".log":
		return Log
	case ".json":
		return JSON
	}
	return Random
}

// Config describes a corpus. The zero value is not useful; start from Full,
// Quick or SmallOnly.
type Config struct {
	Seed       uint64
	SmallFiles int     // number of small files
	MinSize    int64   // small file size clamp, low
	MaxSize    int64   // small file size clamp, high
	MedianSize int64   // median of the log-normal before clamping
	Sigma      float64 // log-normal sigma
	LargeFiles int     // number of large files
	LargeSize  int64   // size of each large file
	// Compressible is the probability that a file is text-like.
	Compressible float64
	FilesPerDir  int // average files per directory
	DirFanout    int // children per directory in the nested tree
}

// Full is the standard corpus: 50k small files (≈1 GiB) plus 4 × 256 MiB.
func Full(seed uint64) Config {
	return Config{
		Seed: seed, SmallFiles: 50_000, MinSize: 100, MaxSize: 64 << 10,
		MedianSize: 14_000, Sigma: 1.1, LargeFiles: 4, LargeSize: 256 << 20,
		Compressible: 0.5, FilesPerDir: 25, DirFanout: 8,
	}
}

// Quick is a ≈200 MiB corpus with 5k small files and 4 × 24 MiB.
func Quick(seed uint64) Config {
	c := Full(seed)
	c.SmallFiles = 5_000
	c.LargeSize = 24 << 20
	return c
}

// SmallOnly is a tree of n small files (100 B – 4 KiB, no large files),
// for checking that memory stays flat as the file count grows.
func SmallOnly(seed uint64, n int) Config {
	c := Full(seed)
	c.SmallFiles = n
	c.MaxSize = 4 << 10
	c.MedianSize = 600
	c.Sigma = 0.8
	c.LargeFiles = 0
	return c
}

// Key identifies the corpus a Config produces; it is stored in stamp files
// so a generated tree can be reused.
func (c Config) Key() string {
	return fmt.Sprintf("corpus-v1 seed=%d small=%d min=%d max=%d median=%d sigma=%g large=%d×%d comp=%g perdir=%d fanout=%d",
		c.Seed, c.SmallFiles, c.MinSize, c.MaxSize, c.MedianSize, c.Sigma, c.LargeFiles, c.LargeSize,
		c.Compressible, c.FilesPerDir, c.DirFanout)
}

// File is one planned file.
type File struct {
	Path  string // slash-separated, relative to the corpus root
	Index int    // seeds the content PRNG
	Size  int64
	Kind  Kind
	Mtime time.Time
}

// Plan is the complete, deterministic layout of a corpus.
type Plan struct {
	Config Config
	Dirs   []string // relative dir paths, parents before children; excludes the root
	Files  []File
	voc    *vocab
}

// Stats summarises a plan.
type Stats struct {
	Files, Dirs           int
	Bytes                 int64
	CompressibleBytes     int64
	LargeFiles            int
	SmallMin, SmallMedian int64
	SmallMax              int64
}

var baseTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// dirMtime is the fixed mtime of every generated directory.
var dirMtime = baseTime.Add(400 * 24 * time.Hour)

var dirWords = []string{"src", "docs", "var", "logs", "data", "cache", "home", "etc", "lib", "assets",
	"build", "photos", "mail", "proj", "backup", "tmp", "share", "conf", "reports", "db"}

// NewPlan lays out the corpus for c.
func NewPlan(c Config) *Plan {
	rng := rand.New(rand.NewPCG(c.Seed, 0x636169726e2d6c79)) // "cairn-ly"
	p := &Plan{Config: c, voc: newVocab(c.Seed)}
	ndirs := max(1, c.SmallFiles/max(1, c.FilesPerDir))
	fan := max(2, c.DirFanout)
	p.Dirs = make([]string, ndirs)
	for j := range ndirs {
		name := dirWords[rng.IntN(len(dirWords))] + strconv.Itoa(j)
		if j < fan { // children of the root
			p.Dirs[j] = name
		} else {
			p.Dirs[j] = p.Dirs[j/fan-1] + "/" + name
		}
	}
	mu := math.Log(float64(max(1, c.MedianSize)))
	mtime := func() time.Time {
		return baseTime.Add(time.Duration(rng.Int64N(int64(365 * 24 * time.Hour))))
	}
	kind := func() Kind {
		if rng.Float64() < c.Compressible {
			return Kind(1 + rng.IntN(3))
		}
		return Random
	}
	for i := range c.SmallFiles {
		sz := int64(math.Exp(mu + c.Sigma*rng.NormFloat64()))
		sz = min(max(sz, c.MinSize), c.MaxSize)
		k := kind()
		d := p.Dirs[rng.IntN(ndirs)]
		p.Files = append(p.Files, File{Path: fmt.Sprintf("%s/f%06d%s", d, i, kindExt[k]), Index: i, Size: sz, Kind: k, Mtime: mtime()})
	}
	for i := range c.LargeFiles {
		k := Random
		if i%2 == 0 {
			k = Kind(1 + rng.IntN(3))
		}
		d := p.Dirs[rng.IntN(ndirs)]
		p.Files = append(p.Files, File{Path: fmt.Sprintf("%s/large%02d%s", d, i, kindExt[k]), Index: c.SmallFiles + i, Size: c.LargeSize, Kind: k, Mtime: mtime()})
	}
	return p
}

// Stats returns the plan's totals.
func (p *Plan) Stats() Stats {
	s := Stats{Files: len(p.Files), Dirs: len(p.Dirs), LargeFiles: p.Config.LargeFiles}
	var small []int64
	for i, f := range p.Files {
		s.Bytes += f.Size
		if f.Kind.Compressible() {
			s.CompressibleBytes += f.Size
		}
		if i < p.Config.SmallFiles {
			small = append(small, f.Size)
		}
	}
	if len(small) > 0 {
		sort.Slice(small, func(a, b int) bool { return small[a] < small[b] })
		s.SmallMin, s.SmallMedian, s.SmallMax = small[0], small[len(small)/2], small[len(small)-1]
	}
	return s
}

// Content returns a reader of f's infinite content stream; read f.Size bytes.
func (p *Plan) Content(f File) io.Reader { return p.stream(f.Kind, f.Index, 0) }

// stream returns the content generator for (kind, index, salt).
func (p *Plan) stream(k Kind, index int, salt uint64) io.Reader {
	if k == Random {
		var seed [32]byte
		binary.LittleEndian.PutUint64(seed[0:], p.Config.Seed)
		binary.LittleEndian.PutUint64(seed[8:], uint64(index))
		binary.LittleEndian.PutUint64(seed[16:], salt)
		copy(seed[24:], "cairnbnc")
		return rand.NewChaCha8(seed)
	}
	return newText(k, p.voc, p.Config.Seed^salt*0x9e3779b97f4a7c15, uint64(index))
}

// Generate writes the whole corpus under root, which must be empty or
// absent, using all CPUs. Directory mtimes are set last so they are
// deterministic too.
func Generate(ctx context.Context, root string, p *Plan) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("corpus: %w", err)
	}
	for _, d := range p.Dirs {
		if err := os.MkdirAll(filepath.Join(root, filepath.FromSlash(d)), 0o755); err != nil {
			return fmt.Errorf("corpus: %w", err)
		}
	}
	// Large files first so the workers finish together.
	order := make([]int, 0, len(p.Files))
	for i := len(p.Files) - 1; i >= p.Config.SmallFiles; i-- {
		order = append(order, i)
	}
	for i := range p.Config.SmallFiles {
		order = append(order, i)
	}
	if err := p.writeFiles(ctx, root, order); err != nil {
		return err
	}
	return p.setDirTimes(root)
}

func (p *Plan) writeFiles(ctx context.Context, root string, idx []int) error {
	work := make(chan int)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for i := range work {
				if err := p.writeFile(root, p.Files[i], buf); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
	var err error
feed:
	for _, i := range idx {
		select {
		case work <- i:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}

func (p *Plan) writeFile(root string, f File, buf []byte) error {
	path := filepath.Join(root, filepath.FromSlash(f.Path))
	if err := writeStream(path, p.Content(f), f.Size, buf); err != nil {
		return err
	}
	if err := os.Chtimes(path, f.Mtime, f.Mtime); err != nil {
		return fmt.Errorf("corpus: %w", err)
	}
	return nil
}

// writeStream creates path with exactly n bytes from r.
func writeStream(path string, r io.Reader, n int64, buf []byte) (err error) {
	fd, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("corpus: %w", err)
	}
	defer func() {
		if cerr := fd.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("corpus: %w", cerr)
		}
	}()
	for n > 0 {
		b := buf[:min(int64(len(buf)), n)]
		if _, err := io.ReadFull(r, b); err != nil {
			return fmt.Errorf("corpus: generating %s: %w", path, err)
		}
		if _, err := fd.Write(b); err != nil {
			return fmt.Errorf("corpus: %w", err)
		}
		n -= int64(len(b))
	}
	return nil
}

func (p *Plan) setDirTimes(root string) error {
	for i := len(p.Dirs) - 1; i >= 0; i-- {
		if err := os.Chtimes(filepath.Join(root, filepath.FromSlash(p.Dirs[i])), dirMtime, dirMtime); err != nil {
			return fmt.Errorf("corpus: %w", err)
		}
	}
	if err := os.Chtimes(root, dirMtime, dirMtime); err != nil {
		return fmt.Errorf("corpus: %w", err)
	}
	return nil
}

// ErrStale is returned by CheckStamp when the stamp is absent or names a
// different corpus.
var ErrStale = errors.New("corpus: stamp missing or stale")

// WriteStamp records that root holds the complete, unmutated corpus for p.
func WriteStamp(stamp string, p *Plan) error {
	if err := os.WriteFile(stamp, []byte(p.Config.Key()+"\n"), 0o644); err != nil {
		return fmt.Errorf("corpus: %w", err)
	}
	return nil
}

// CheckStamp returns nil if stamp says the tree matches p, ErrStale otherwise.
func CheckStamp(stamp string, p *Plan) error {
	b, err := os.ReadFile(stamp)
	if err != nil || string(b) != p.Config.Key()+"\n" {
		return ErrStale
	}
	return nil
}
