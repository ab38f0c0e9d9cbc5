package pool

import (
	"context"
	"errors"
	"path"
	"slices"
	"strings"
	"sync"
)

// A TreeLookup finds the entries of one snapshot tree by path: the previous
// snapshot a puller compares against (it has the shape of pullers.Previous
// and of the rsync puller's Basis). Pullers visit a directory's entries
// together, so it keeps the directory it read last instead of walking from
// the root for every path. It is safe for concurrent use.
type TreeLookup struct {
	p    *Pool
	root Digest

	mu      sync.Mutex
	dir     string // "\x00" until a directory is read
	entries []Entry
	isDir   bool
}

// NewTreeLookup returns a TreeLookup of the tree root.
func (p *Pool) NewTreeLookup(root Digest) *TreeLookup {
	return &TreeLookup{p: p, root: root, dir: "\x00"}
}

// Lookup returns the entry at rel ("a/b/c"); a path that is not in the tree
// is (Entry{}, false, nil). Other errors (an unreadable tree) are returned.
func (t *TreeLookup) Lookup(ctx context.Context, rel string) (Entry, bool, error) {
	dir, name := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	t.mu.Lock()
	defer t.mu.Unlock()
	if dir != t.dir {
		t.dir, t.entries, t.isDir = dir, nil, false
		de, err := t.p.Lookup(ctx, t.root, dir)
		if errors.Is(err, ErrNotFound) {
			return Entry{}, false, nil
		}
		if err != nil {
			t.dir = "\x00" // read it again next time
			return Entry{}, false, err
		}
		if de.Type != TypeDir {
			return Entry{}, false, nil
		}
		es, err := t.p.ReadTree(ctx, de.Subtree)
		if err != nil {
			t.dir = "\x00"
			return Entry{}, false, err
		}
		t.entries, t.isDir = es, true
	}
	if !t.isDir {
		return Entry{}, false, nil
	}
	i, found := slices.BinarySearchFunc(t.entries, name, func(e Entry, n string) int { return strings.Compare(e.Name, n) })
	if !found {
		return Entry{}, false, nil
	}
	return t.entries[i], true, nil
}

// OpenContent opens a file of the tree, the basis of a delta transfer.
func (t *TreeLookup) OpenContent(ctx context.Context, e *Entry) (*ContentReader, error) {
	return t.p.OpenContent(ctx, e)
}
