package webdav

import (
	"container/list"
	"io/fs"
	"strings"
	"sync"

	"github.com/cairn-backup/cairn/fusefs/blockcache"
)

// Options tune a share. The zero value is ready to use.
type Options struct {
	// Cache keeps what the share learns about the tree across requests.
	// Nil: a cache of the default size for this handler alone. A caller
	// that makes a handler per request (one per user's view) passes one
	// Cache shared by all of them.
	Cache *Cache
	// Immutable reports whether a real path (no symlink before its last
	// element) never changes: its Lstat result and content may then be
	// cached for the life of the Cache. Nil: PoolLayout when the tree is a
	// *pool.TreeFS, else nothing is cached.
	Immutable func(name string) bool
}

// PoolLayout is the rule of the pool's restore tree
// (/<host>/<snapshot-time>/<source>/…): everything three or more elements
// deep lies inside a snapshot and never changes; the root, host
// directories and snapshot entries (and the latest links) do.
func PoolLayout(name string) bool { return strings.Count(name, "/") >= 2 }

// CacheOptions bound a Cache. The zero value is ready to use.
type CacheOptions struct {
	// MaxEntries bounds the remembered Lstat results (default 50,000,
	// roughly 20 MiB).
	MaxEntries int
	// BlockBytes bounds the cached file blocks (default 16 MiB: a few
	// blocks of read-ahead for each of a few concurrent large GETs; see
	// fusefs/blockcache).
	BlockBytes int64
}

// Cache remembers Lstat results of immutable paths (so a request does not
// walk the tree from the root for every element of its path) and decoded
// file blocks (so GET reads ahead, and a file read twice is decoded once).
// Both are LRUs with fixed bounds. It is safe for concurrent use and may be
// shared by handlers over different views of one tree: entries are keyed
// by real path, and the file system looks a path up only after the tree
// itself has answered for its host (see lstat).
type Cache struct {
	blocks *blockcache.Cache

	mu    sync.Mutex
	max   int
	order *list.List // of *statEntry, most recent first
	items map[string]*list.Element
}

type statEntry struct {
	name string
	info fs.FileInfo
}

// NewCache returns an empty cache.
func NewCache(o CacheOptions) *Cache {
	if o.MaxEntries <= 0 {
		o.MaxEntries = 50_000
	}
	if o.BlockBytes <= 0 {
		o.BlockBytes = 16 << 20
	}
	return &Cache{
		blocks: blockcache.New(blockcache.Options{MaxBytes: o.BlockBytes}),
		max:    o.MaxEntries,
		order:  list.New(),
		items:  map[string]*list.Element{},
	}
}

// Len returns the number of remembered Lstat results.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// Blocks returns the block cache's counters.
func (c *Cache) Blocks() blockcache.Stats { return c.blocks.Stats() }

func (c *Cache) stat(name string) (fs.FileInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[name]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*statEntry).info, true
}

func (c *Cache) addStat(name string, info fs.FileInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[name]; ok {
		c.order.MoveToFront(el)
		return
	}
	c.items[name] = c.order.PushFront(&statEntry{name: name, info: info})
	for len(c.items) > c.max {
		el := c.order.Back()
		c.order.Remove(el)
		delete(c.items, el.Value.(*statEntry).name)
	}
}
