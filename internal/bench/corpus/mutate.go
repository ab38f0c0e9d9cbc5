package corpus

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"
)

// LargeThreshold is the size from which Mutate patches a file in place
// instead of rewriting it.
const LargeThreshold = 1 << 20

// Changes lists what Mutate did, as slash-separated paths relative to the
// tree root, each sorted.
type Changes struct {
	Rewritten []string // small files replaced by new content
	Patched   []string // large files overwritten in place in the middle
	Deleted   []string
	Added     []string
}

// Count is the number of files touched.
func (c Changes) Count() int {
	return len(c.Rewritten) + len(c.Patched) + len(c.Deleted) + len(c.Added)
}

// Mutate changes the tree at root deterministically for (tree, seed):
// 2% of the files change (at least half of the large files are patched in
// place in the middle, other picks are rewritten with new content and
// a new size), 1% are deleted and 1% are added in existing directories.
// Changed and added files get mtimes after any the generator uses.
func Mutate(ctx context.Context, root string, seed uint64) (Changes, error) {
	type entry struct {
		path string
		size int64
	}
	var files []entry
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			dirs = append(dirs, rel)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			files = append(files, entry{rel, info.Size()})
		}
		return ctx.Err()
	})
	if err != nil {
		return Changes{}, fmt.Errorf("corpus: mutate %s: %w", root, err)
	}
	var ch Changes
	if len(files) == 0 {
		return ch, nil
	}
	rng := rand.New(rand.NewPCG(seed, 0x6d7574617465)) // "mutate"
	nChange := max(1, int(math.Round(float64(len(files))*0.02)))
	nDelete := max(1, int(math.Round(float64(len(files))*0.01)))
	nAdd := max(1, int(math.Round(float64(len(files))*0.01)))

	var large []int
	for i, f := range files {
		if f.size >= LargeThreshold {
			large = append(large, i)
		}
	}
	chosen := make(map[int]bool)
	// Half of the large files (rounded up) are always patched.
	for _, i := range rng.Perm(len(large))[:(len(large)+1)/2] {
		chosen[large[i]] = true
	}
	perm := rng.Perm(len(files))
	var changeIdx, deleteIdx []int
	for i := range chosen {
		changeIdx = append(changeIdx, i)
	}
	sort.Ints(changeIdx)
	for _, i := range perm {
		if chosen[i] {
			continue
		}
		switch {
		case len(changeIdx) < nChange:
			changeIdx = append(changeIdx, i)
		case len(deleteIdx) < nDelete && files[i].size < LargeThreshold:
			deleteIdx = append(deleteIdx, i)
		}
		chosen[i] = true
		if len(changeIdx) >= nChange && len(deleteIdx) >= nDelete {
			break
		}
	}

	voc := newVocab(seed)
	p := &Plan{Config: Config{Seed: seed}, voc: voc}
	newTime := func() time.Time {
		return baseTime.Add(500*24*time.Hour + time.Duration(rng.Int64N(int64(24*time.Hour))))
	}
	buf := make([]byte, 1<<20)
	for n, i := range changeIdx {
		if err := ctx.Err(); err != nil {
			return ch, err
		}
		f := files[i]
		full := filepath.Join(root, filepath.FromSlash(f.path))
		k := kindOfPath(f.path)
		if f.size >= LargeThreshold {
			// 1–4 patches of 4–256 KiB inside the middle half of the file.
			for range 1 + rng.IntN(4) {
				ln := int64(4<<10 + rng.IntN(252<<10))
				off := f.size/4 + rng.Int64N(f.size/2-ln)
				if err := patch(full, off, io.LimitReader(p.stream(k, n, rng.Uint64()), ln)); err != nil {
					return ch, err
				}
			}
			ch.Patched = append(ch.Patched, f.path)
		} else {
			sz := max(1, int64(float64(f.size)*(0.5+rng.Float64())))
			if err := writeStream(full, p.stream(k, n, rng.Uint64()), sz, buf); err != nil {
				return ch, err
			}
			ch.Rewritten = append(ch.Rewritten, f.path)
		}
		t := newTime()
		if err := os.Chtimes(full, t, t); err != nil {
			return ch, fmt.Errorf("corpus: %w", err)
		}
	}
	for _, i := range deleteIdx {
		if err := os.Remove(filepath.Join(root, filepath.FromSlash(files[i].path))); err != nil {
			return ch, fmt.Errorf("corpus: %w", err)
		}
		ch.Deleted = append(ch.Deleted, files[i].path)
	}
	for j := range nAdd {
		k := Random
		if rng.IntN(2) == 0 {
			k = Kind(1 + rng.IntN(3))
		}
		rel := path.Join(dirs[rng.IntN(len(dirs))], fmt.Sprintf("added%06d%s", j, kindExt[k]))
		full := filepath.Join(root, filepath.FromSlash(rel))
		sz := min(max(int64(math.Exp(math.Log(14000)+1.1*rng.NormFloat64())), 100), 64<<10)
		if err := writeStream(full, p.stream(k, nChange+j, rng.Uint64()), sz, buf); err != nil {
			return ch, err
		}
		t := newTime()
		if err := os.Chtimes(full, t, t); err != nil {
			return ch, fmt.Errorf("corpus: %w", err)
		}
		ch.Added = append(ch.Added, rel)
	}
	// Deleting and adding touched directory mtimes; make them deterministic.
	touched := map[string]bool{}
	for _, rel := range append(append([]string(nil), ch.Deleted...), ch.Added...) {
		touched[path.Dir(rel)] = true
	}
	mt := dirMtime.Add(24 * time.Hour)
	for d := range touched {
		if err := os.Chtimes(filepath.Join(root, filepath.FromSlash(d)), mt, mt); err != nil {
			return ch, fmt.Errorf("corpus: %w", err)
		}
	}
	sort.Strings(ch.Rewritten)
	sort.Strings(ch.Patched)
	sort.Strings(ch.Deleted)
	sort.Strings(ch.Added)
	return ch, nil
}

// patch overwrites len bytes of path at off, in place.
func patch(path string, off int64, r io.Reader) error {
	fd, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("corpus: %w", err)
	}
	_, err = io.Copy(io.NewOffsetWriter(fd, off), r)
	if cerr := fd.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("corpus: patch %s: %w", path, err)
	}
	return nil
}

// Revert undoes ch on a tree generated from p: added files are removed,
// touched files are rewritten from the plan and directory mtimes reset.
func Revert(ctx context.Context, root string, p *Plan, ch Changes) error {
	byPath := make(map[string]int, len(p.Files))
	for i, f := range p.Files {
		byPath[f.Path] = i
	}
	for _, rel := range ch.Added {
		if err := os.Remove(filepath.Join(root, filepath.FromSlash(rel))); err != nil {
			return fmt.Errorf("corpus: revert: %w", err)
		}
	}
	var idx []int
	for _, list := range [][]string{ch.Rewritten, ch.Patched, ch.Deleted} {
		for _, rel := range list {
			i, ok := byPath[rel]
			if !ok {
				return fmt.Errorf("corpus: revert: %s is not in the plan", rel)
			}
			idx = append(idx, i)
		}
	}
	if err := p.writeFiles(ctx, root, idx); err != nil {
		return err
	}
	return p.setDirTimes(root)
}
