package walk

import (
	"context"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
)

// Names sorts a server's listing for the walk: names in byte order,
// duplicates dropped (the first kept), and the names that cannot be one
// path element (valid reports which can) returned apart, in listing
// order. "." and ".." are left out.
func Names(fis []os.FileInfo, valid func(string) bool) (names []string, byName map[string]os.FileInfo, invalid []string) {
	byName = make(map[string]os.FileInfo, len(fis))
	names = make([]string, 0, len(fis))
	for _, fi := range fis {
		name := fi.Name()
		if name == "." || name == ".." {
			continue
		}
		if !valid(name) {
			invalid = append(invalid, name)
			continue
		}
		if _, dup := byName[name]; dup {
			continue
		}
		byName[name] = fi
		names = append(names, name)
	}
	slices.Sort(names)
	return names, byName, invalid
}

// Join is rel's child name ("" is the root).
func Join(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}

// RelOrDot is rel for messages and RecordError: "." for the root.
func RelOrDot(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

// Excludes are Source.Excludes made ready for Match.
type Excludes []string

// ParseExcludes cleans Source.Excludes ("./x", "/x" and "x/" are "x") and
// checks each pattern.
func ParseExcludes(pats []string) (Excludes, error) {
	var out Excludes
	for _, pat := range pats {
		pat = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(pat, "./"), "/"), "/")
		if pat == "" {
			continue
		}
		if _, err := path.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("exclude pattern %q: %w", pat, err)
		}
		out = append(out, pat)
	}
	return out, nil
}

// Match reports whether rel is excluded: a pattern matches the whole
// path relative to the snapshot root, or (without a "/") its last
// element.
func (x Excludes) Match(rel string) bool {
	for _, pat := range x {
		if ok, _ := path.Match(pat, rel); ok {
			return true
		}
		if !strings.Contains(pat, "/") {
			if ok, _ := path.Match(pat, path.Base(rel)); ok {
				return true
			}
		}
	}
	return false
}

// Listed (producer) walks rel's listing fis: each name valid rejects is a
// per-file error on rel, then visit is called for every other name, in
// byte order, duplicates and excluded paths left out.
func (p *Pipe) Listed(ctx context.Context, rel string, fis []os.FileInfo, valid func(string) bool, x Excludes,
	visit func(child string, fi os.FileInfo) error) error {
	names, byName, invalid := Names(fis, valid)
	for _, name := range invalid {
		if err := p.Fail(ctx, RelOrDot(rel), fmt.Errorf("the server listed an invalid name %q", name)); err != nil {
			return err
		}
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		child := Join(rel, name)
		if x.Match(child) {
			continue
		}
		if err := visit(child, byName[name]); err != nil {
			return err
		}
	}
	return nil
}

// SubDirs names the subdirectories in rel's listing fis that Listed
// visits and that isDir says the walk descends into: what a
// Lister's Children returns.
func SubDirs(rel string, fis []os.FileInfo, valid func(string) bool, x Excludes, isDir func(child string, fi os.FileInfo) bool) []string {
	names, byName, _ := Names(fis, valid)
	var out []string
	for _, name := range names {
		child := Join(rel, name)
		if isDir(child, byName[name]) && !x.Match(child) {
			out = append(out, child)
		}
	}
	return out
}
