package fusefs

import (
	"container/list"
	"io"
	"io/fs"
	"path"
	"sync"

	"github.com/cairn-backup/cairn/fusefs/blockcache"
)

// Directory read-ahead. Restores through the mount (tar, cp -r, rsync)
// open the files of a directory one after another in listing order, and
// most of them are small: read-ahead within a file cannot help them, the
// next file's fetch and decode can only overlap with the current one if it
// starts before the reader asks. So the mount remembers the regular files
// of the directories it lists (inside snapshots only), and when a reader
// opens two of a directory's files in listing order, the first block of
// the next few (at most siblingFiles files and siblingBytes bytes ahead) is
// fetched into the block cache in the background. One open does nothing,
// so looking at one file costs no more than before.

const (
	siblingFiles = 8
	siblingBytes = 4 << 20
	// listMaxEntries bounds the remembered files over all directories
	// (about 100 bytes each); a directory with more is not remembered.
	listMaxEntries = 100_000
)

// sibling is a regular file of a listed directory.
type sibling struct {
	name string
	size int64
	id   string // content identity, "" when the tree gives none
}

// listing is the regular files of one directory, in listing order, and
// where a reader is in it.
type listing struct {
	dir   string
	files []sibling

	mu     sync.Mutex
	last   int // index of the file opened last, -1 before
	queued int // files below this index have been prefetched
}

// listings is an LRU of directory listings bounded by total files.
type listings struct {
	mu    sync.Mutex
	n     int
	order *list.List // of *listing
	items map[string]*list.Element
}

func newListings() *listings {
	return &listings{order: list.New(), items: map[string]*list.Element{}}
}

func (l *listings) get(dir string) *listing {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.items[dir]
	if !ok {
		return nil
	}
	l.order.MoveToFront(el)
	return el.Value.(*listing)
}

func (l *listings) add(ls *listing) {
	if len(ls.files) == 0 || len(ls.files) > listMaxEntries/4 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.items[ls.dir]; ok {
		return
	}
	l.items[ls.dir] = l.order.PushFront(ls)
	l.n += len(ls.files)
	for l.n > listMaxEntries {
		el := l.order.Back()
		old := el.Value.(*listing)
		l.order.Remove(el)
		delete(l.items, old.dir)
		l.n -= len(old.files)
	}
}

// opened notes that the file p was opened and prefetches its next
// siblings when the reader is walking the directory in order.
func (t *tree) opened(p string) {
	dir, name := path.Split(p)
	dir = path.Clean(dir)
	ls := t.lists.get(dir)
	if ls == nil {
		return
	}
	ls.mu.Lock()
	i := ls.find(name)
	if i < 0 {
		ls.mu.Unlock()
		return
	}
	inOrder := ls.last >= 0 && i > ls.last && i <= ls.last+2
	ls.last = i
	var todo []sibling
	from := max(i+1, ls.queued)
	if inOrder {
		var bytes int64
		for j := i + 1; j < len(ls.files) && j <= i+siblingFiles && bytes < siblingBytes; j++ {
			bytes += min(ls.files[j].size, blockcache.BlockSize)
			if j >= from {
				todo = append(todo, ls.files[j])
				ls.queued = j + 1
			}
		}
	}
	ls.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	if !t.blocks.Go(func() {
		for _, s := range todo {
			t.prefetch(join(dir, s.name), s)
		}
	}) {
		// Every worker is busy: leave these to a later open.
		ls.mu.Lock()
		ls.queued = min(ls.queued, from)
		ls.mu.Unlock()
	}
}

// prefetch fetches the start of the file p ahead of its reader. A file of
// one block is read straight from the pool when opened (see Open), so it
// is warmed in the pool's own cache of decoded objects, with its digest in
// t.warming meanwhile so that its reader waits for this fetch instead of
// doing it again; a larger file's first block goes to the block cache.
func (t *tree) prefetch(p string, s sibling) {
	if s.id == "" || s.size == 0 {
		return
	}
	open := func() (io.ReaderAt, func(), error) {
		f, err := t.fsys.Open(p)
		if err != nil {
			return nil, nil, err
		}
		ra, ok := f.(io.ReaderAt)
		if !ok {
			f.Close()
			return nil, nil, fs.ErrInvalid
		}
		return ra, func() { f.Close() }, nil
	}
	if s.size > blockcache.BlockSize {
		t.blocks.Load(blockcache.Ahead{ID: s.id, Size: s.size, Blocks: 1, Open: open})
		return
	}
	ch := make(chan struct{})
	if _, busy := t.warming.LoadOrStore(s.id, ch); busy {
		return
	}
	defer func() {
		t.warming.Delete(s.id)
		close(ch)
	}()
	ra, done, err := open()
	if err != nil {
		return
	}
	defer done()
	var one [1]byte
	if _, err := ra.ReadAt(one[:], 0); err == nil || err == io.EOF {
		t.warmed.Add(1)
	}
}

// waitWarm waits for a prefetch of the content id that is under way.
func (t *tree) waitWarm(id string) {
	if ch, ok := t.warming.Load(id); ok {
		<-ch.(chan struct{})
	}
}

// find returns the index of name, searching from the last opened file
// (readers go forward), or -1. The caller holds mu.
func (ls *listing) find(name string) int {
	n := len(ls.files)
	start := max(ls.last, 0)
	for k := 0; k < n; k++ {
		j := (start + k) % n
		if ls.files[j].name == name {
			return j
		}
	}
	return -1
}

// readSubdirs reads, in the background, the listings of the
// subdirectories among ents (a batch of dir's listing inside a snapshot),
// split over the block cache's two workers. READDIRPLUS counts each
// subdirectory's own subdirectories for its link count, and ls -R, find
// and tar list them next: from a cold disk, reading those trees one at a
// time in the foreground is what a recursive listing waits on (cold, each
// tree is a file of its own to read from disk). The pool
// keeps the decoded trees (its tree cache), so the foreground then finds
// them in memory. Skipped while the workers are busy.
func (t *tree) readSubdirs(dir string, ents []fs.DirEntry) {
	var subs []string
	for _, e := range ents {
		if p := join(dir, e.Name()); e.IsDir() && immutable(p) {
			subs = append(subs, p)
		}
	}
	if len(subs) < 3 {
		return // the foreground is about to read them anyway
	}
	// The foreground reads them in order from the first (READDIRPLUS):
	// leave it the first third and start the workers at the second and the
	// last, so that they are ahead of it, not racing it for the same tree.
	n := len(subs)
	for _, part := range [][]string{subs[n/3 : 2*n/3], subs[2*n/3:]} {
		if !t.blocks.Go(func() {
			for _, p := range part {
				if f, err := t.fsys.Open(p); err == nil {
					if d, ok := f.(fs.ReadDirFile); ok {
						d.ReadDir(1)
					}
					f.Close()
				}
			}
		}) {
			return
		}
	}
}
