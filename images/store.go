package images

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// MarkerName is the named object that makes a pool an image pool
// (FORMAT.md §1). A file pool lacks it, so one is never mistaken for the
// other.
const MarkerName = "cairn-images.json"

const versionsPrefix = "images/"

// Errors of the Store API.
var (
	// ErrNotImagePool: the pool has no image-pool marker (it is a file
	// pool, or not initialised with images.Init).
	ErrNotImagePool = errors.New("not an image pool")
	// ErrInvalidImageName: an image name or version ID is not allowed.
	ErrInvalidImageName = errors.New("invalid image name")
	// ErrSourceChanged: the source changed size or returned fewer bytes
	// than it claimed while it was read. Nothing is committed.
	ErrSourceChanged = errors.New("image source changed or was truncated during the read")
)

type marker struct {
	Format    string `json:"format"`
	Version   int    `json:"version"`
	BlockSize int    `json:"block_size"`
}

// A Store is an image pool: a pool.Pool on its own backend whose
// content-addressed objects are image blocks and whose named objects
// images/<name>/<version-id> are manifests. Safe for concurrent use.
type Store struct {
	p        *pool.Pool
	log      *slog.Logger
	instance string // random; names this process's lock objects

	mu       sync.Mutex
	nextLock int
	live     map[pool.Digest]int           // digests held by open version writers
	gcActive int                           // running GCs
	gcRefs   map[pool.Digest]struct{}      // digests made live while a GC runs
	deleting map[pool.Digest]chan struct{} // GC deletions in progress
	registry pool.LockRegistry             // vouches for lock holders elsewhere (lock.go)
}

// Init creates an image pool on b: a new pool identity (pool.Init, so
// blocks are compressed and encrypted exactly like file-pool objects) and
// the image-pool marker. b must not be the file pool's backend or root.
func Init(ctx context.Context, b pool.Backend, o pool.InitOptions, log *slog.Logger) (*Store, error) {
	p, err := pool.Init(ctx, b, o)
	if err != nil {
		return nil, fmt.Errorf("init image pool: %w", err)
	}
	js, _ := json.Marshal(marker{Format: "cairn-images", Version: manifestVersion, BlockSize: BlockSize})
	if err := p.PutNamed(ctx, MarkerName, pool.KindManifest, js); err != nil {
		return nil, fmt.Errorf("init image pool at %s: %w", p.Location(), err)
	}
	if err := p.Sync(ctx); err != nil {
		return nil, fmt.Errorf("init image pool: %w", err)
	}
	return New(p, log), nil
}

// Open opens the image pool on b (pool.Open, then the marker check).
func Open(ctx context.Context, b pool.Backend, o pool.OpenOptions, log *slog.Logger) (*Store, error) {
	p, err := pool.Open(ctx, b, o)
	if err != nil {
		return nil, fmt.Errorf("open image pool: %w", err)
	}
	return Wrap(ctx, p, log)
}

// Wrap checks that an open pool is an image pool and returns its Store.
func Wrap(ctx context.Context, p *pool.Pool, log *slog.Logger) (*Store, error) {
	_, js, err := p.GetNamed(ctx, MarkerName)
	if errors.Is(err, pool.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s has no %s (a file pool?)", ErrNotImagePool, p.Location(), MarkerName)
	}
	if err != nil {
		return nil, fmt.Errorf("open image pool at %s: %w", p.Location(), err)
	}
	var mk marker
	if err := json.Unmarshal(js, &mk); err != nil || mk.Format != "cairn-images" {
		return nil, fmt.Errorf("%w: %s at %s is not an image-pool marker", ErrNotImagePool, MarkerName, p.Location())
	}
	if mk.Version != manifestVersion || mk.BlockSize != BlockSize {
		return nil, fmt.Errorf("%w: image pool at %s has format version %d, block size %d; this cairn reads version %d",
			ErrNotImagePool, p.Location(), mk.Version, mk.BlockSize, manifestVersion)
	}
	return New(p, log), nil
}

// New returns the Store over p without checking the marker (tests, and
// callers that just ran Init).
func New(p *pool.Pool, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var r [8]byte
	rand.Read(r[:])
	return &Store{p: p, log: log, instance: hex.EncodeToString(r[:]), live: map[pool.Digest]int{}, deleting: map[pool.Digest]chan struct{}{}}
}

// Pool returns the underlying pool (for Sync, ID, Location).
func (s *Store) Pool() *pool.Pool { return s.p }

// validName checks an image name: one element of [A-Za-z0-9._-], 1–128
// bytes, not starting with '.'.
func validName(name string) error {
	if name == "" || len(name) > 128 || name[0] == '.' {
		return fmt.Errorf("%w: %q", ErrInvalidImageName, name)
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %q", ErrInvalidImageName, name)
		}
	}
	return nil
}

// validID checks a version ID (same alphabet as names).
func validID(id string) error {
	if err := validName(id); err != nil {
		return fmt.Errorf("version id: %w", err)
	}
	return nil
}

// ManifestName returns the named object of a version: images/<name>/<id>.
func ManifestName(name, id string) string { return versionsPrefix + name + "/" + id }

// NewVersionID returns a new version ID for a pull started at t (for
// VersionOptions.ID).
func NewVersionID(t time.Time) string { return newVersionID(t) }

// newVersionID returns a version ID that sorts by time:
// 20261123T201300.123456789Z-<8 hex>.
func newVersionID(t time.Time) string {
	var r [4]byte
	rand.Read(r[:])
	return t.UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(r[:])
}

// VersionRef names a stored version.
type VersionRef struct {
	Name, ID string
	Stored   time.Time // the manifest's modification time
}

// Versions calls fn for every stored version, in no particular order.
// Stored names that are not valid version names are skipped.
func (s *Store) Versions(ctx context.Context, fn func(VersionRef) error) error {
	err := s.p.Backend().List(ctx, versionsPrefix, func(oi pool.ObjectInfo) error {
		rest := strings.TrimPrefix(oi.Name, versionsPrefix)
		name, id, ok := strings.Cut(rest, "/")
		if !ok || validName(name) != nil || validID(id) != nil {
			return nil
		}
		return fn(VersionRef{Name: name, ID: id, Stored: oi.ModTime})
	})
	if err != nil {
		return fmt.Errorf("list image versions at %s: %w", s.p.Location(), err)
	}
	return nil
}

// Load reads and decodes one version's manifest. A missing version is
// pool.ErrNotFound; a damaged one pool.ErrCorrupt or ErrCorruptManifest.
func (s *Store) Load(ctx context.Context, name, id string) (*Manifest, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if err := validID(id); err != nil {
		return nil, err
	}
	_, data, err := s.p.GetNamed(ctx, ManifestName(name, id))
	if err != nil {
		return nil, fmt.Errorf("image %s version %s: %w", name, id, err)
	}
	m, err := DecodeManifest(data)
	if err != nil {
		return nil, fmt.Errorf("image %s version %s at %s: %w", name, id, s.p.Location(), err)
	}
	if m.Name != name || m.ID != id {
		return nil, fmt.Errorf("image %s version %s at %s: %w: manifest names %s/%s", name, id, s.p.Location(), ErrCorruptManifest, m.Name, m.ID)
	}
	return m, nil
}

// Latest returns the newest version of an image (by ID), or
// pool.ErrNotFound when it has none.
func (s *Store) Latest(ctx context.Context, name string) (*Manifest, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	var best string
	err := s.p.Backend().List(ctx, versionsPrefix+name+"/", func(oi pool.ObjectInfo) error {
		id := strings.TrimPrefix(oi.Name, versionsPrefix+name+"/")
		if validID(id) == nil && id > best {
			best = id
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list versions of image %s: %w", name, err)
	}
	if best == "" {
		return nil, fmt.Errorf("image %s at %s: no version: %w", name, s.p.Location(), pool.ErrNotFound)
	}
	return s.Load(ctx, name, best)
}

// Delete removes a version's manifest. Its blocks go at the next GC
// unless another version uses them.
func (s *Store) Delete(ctx context.Context, name, id string) error {
	if err := validName(name); err != nil {
		return err
	}
	if err := validID(id); err != nil {
		return err
	}
	return s.p.DeleteNamed(ctx, ManifestName(name, id))
}

// hold makes digests live for GC: a sweep running now or later keeps them
// until release. If GC is deleting one of them right now, hold waits for
// that to finish, so the caller's following existence check is truthful.
func (s *Store) hold(ctx context.Context, ds ...pool.Digest) error {
	var wait []chan struct{}
	s.mu.Lock()
	for _, d := range ds {
		s.live[d]++
		if s.gcActive > 0 {
			s.gcRefs[d] = struct{}{}
		}
		if ch, ok := s.deleting[d]; ok {
			wait = append(wait, ch)
		}
	}
	s.mu.Unlock()
	for _, ch := range wait {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (s *Store) release(ds []pool.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range ds {
		if s.live[d] <= 1 {
			delete(s.live, d)
		} else {
			s.live[d]--
		}
	}
}
