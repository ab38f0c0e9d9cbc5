package appliance

// The block-image pool of the appliance: where it lives, how it is opened,
// and how its GC and check ride along with the file pool's jobs.
//
// The image pool is a separate pool root (Config.Images, default
// DATA/images; a directory or s3://…), created by the first image backup,
// encrypted with its own key (DATA/images.key) when the file pool is.
// Its identity is recorded in the catalog (setting image_pool_id) like the
// file pool's: a different or unreadable pool there is "wrong or missing
// storage".
//
// Each image backup writes an image version and a placeholder snapshot in
// the file pool (empty tree, labels images.LabelImage/LabelVersion/
// LabelSize; the version's manifest names the placeholder's ID). So an
// image version is a snapshot of its host like any other: it has a
// catalog row, a snapshot time, counts for "latest" and retention, and the
// restore tree shows it as <host>/<time>/images/<source>.img. A version
// whose placeholder is gone (retention, deletion) is deleted by the next
// GC, after the grace period.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/images"
	"github.com/cairn-backup/cairn/pool"
)

// settingImagePoolID is the catalog setting with the image pool's UUID.
const settingImagePoolID = "image_pool_id"

// imagesKeyName is the image pool's key file in the data dir: an image
// pool is encrypted (with its own key) when the file pool is. Keep it
// with pool.key: without it the images cannot be read.
const imagesKeyName = "images.key"

// imageState is the lazily opened image pool.
type imageState struct {
	mu       sync.Mutex
	store    *images.Store
	registry pool.LockRegistry // cluster mode: the instances table (cluster.go); set on store

	umu            sync.Mutex // usage cache, like the file pool's (metrics.go)
	usageAt        time.Time
	objects, bytes int64
	versions       int
	usageErr       error
}

// ImagesPoolBody is the image pool in GET /api/v1/pool.
type ImagesPoolBody struct {
	ID        string `json:"id"`
	Location  string `json:"location"`
	Encrypted bool   `json:"encrypted"`
	Versions  int    `json:"versions"`
	Objects   int64  `json:"objects"`
	Bytes     int64  `json:"bytes"`
}

// imagesUsage counts the image pool's versions, blocks and stored bytes
// (cached for poolUsageTTL; image backups and GC reset it). nil without
// an image pool.
func (s *Server) imagesUsage(ctx context.Context, fresh bool) (*ImagesPoolBody, error) {
	store, err := s.imageStore(ctx, false)
	if err != nil || store == nil {
		return nil, err
	}
	u := &s.imgs
	u.umu.Lock()
	defer u.umu.Unlock()
	if fresh || u.usageAt.IsZero() || s.now().Sub(u.usageAt) >= poolUsageTTL {
		var n, b int64
		v := 0
		err := store.Pool().ListObjects(ctx, func(_ pool.Digest, oi pool.ObjectInfo) error {
			n++
			b += oi.Size
			return nil
		})
		if err == nil {
			err = store.Versions(ctx, func(images.VersionRef) error { v++; return nil })
		}
		u.usageAt, u.objects, u.bytes, u.versions, u.usageErr = s.now(), n, b, v, err
	}
	p := store.Pool()
	return &ImagesPoolBody{ID: p.ID(), Location: p.Location(), Encrypted: p.Encrypted(),
		Versions: u.versions, Objects: u.objects, Bytes: u.bytes}, u.usageErr
}

func (s *Server) invalidateImagesUsage() {
	s.imgs.umu.Lock()
	s.imgs.usageAt = time.Time{}
	s.imgs.umu.Unlock()
}

// imagesMetrics adds the image pool's gauges to /metrics.
func (s *Server) imagesMetrics(ctx context.Context, p *promWriter) {
	b, err := s.imagesUsage(ctx, false)
	if err != nil || b == nil {
		return
	}
	p.head("cairn_image_pool_versions", "gauge", "Image versions stored in the image pool.")
	p.sample("cairn_image_pool_versions", []string{"pool", b.ID}, float64(b.Versions))
	p.head("cairn_image_pool_objects", "gauge", "Blocks stored in the image pool.")
	p.sample("cairn_image_pool_objects", []string{"pool", b.ID}, float64(b.Objects))
	p.head("cairn_image_pool_bytes", "gauge", "Bytes stored in the image pool (after dedup and compression).")
	p.sample("cairn_image_pool_bytes", []string{"pool", b.ID}, float64(b.Bytes))
}

// imagesLocation is where the image pool lives.
func (s *Server) imagesLocation() string {
	if s.cfg.Images != "" {
		return s.cfg.Images
	}
	return filepath.Join(s.dataDir, "images")
}

func openImagesBackend(ctx context.Context, loc string, create bool) (pool.Backend, error) {
	if !strings.Contains(loc, "://") {
		if create {
			return pool.CreateDirBackend(loc)
		}
		return pool.NewDirBackend(loc)
	}
	return pool.OpenBackend(ctx, loc, pool.OpenBackendOptions{})
}

// imageStore returns the image pool. Without one yet, it returns nil, nil
// unless create is set: then it adopts an image pool found at the
// location or initialises a new one, and records its identity.
func (s *Server) imageStore(ctx context.Context, create bool) (*images.Store, error) {
	st := &s.imgs
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.store != nil {
		return st.store, nil
	}
	loc := s.imagesLocation()
	want, known, err := s.cat.Setting(ctx, settingImagePoolID)
	if err != nil {
		return nil, err
	}
	if known && want != "" {
		b, err := openImagesBackend(ctx, loc, false)
		if err == nil {
			st.store, err = images.Open(ctx, b, pool.OpenOptions{ExpectID: want, KeyFile: filepath.Join(s.dataDir, imagesKeyName)},
				s.log.With("component", "images"))
		}
		if err != nil {
			return nil, fmt.Errorf("wrong or missing image storage: the catalog expects image pool %s at %s: %w", want, pool.RedactLocation(loc), err)
		}
		st.store.SetLockRegistry(st.registry)
		return st.store, nil
	}
	if !create {
		return nil, nil
	}
	b, err := openImagesBackend(ctx, loc, true)
	if err != nil {
		return nil, fmt.Errorf("image pool %s: %w", pool.RedactLocation(loc), err)
	}
	keyFile := filepath.Join(s.dataDir, imagesKeyName)
	store, err := images.Open(ctx, b, pool.OpenOptions{KeyFile: keyFile}, s.log.With("component", "images"))
	if err != nil {
		if _, serr := b.Stat(ctx, pool.IdentityName); serr == nil {
			return nil, fmt.Errorf("image pool %s: %w", pool.RedactLocation(loc), err) // present but not ours: never overwrite
		}
		io := pool.InitOptions{}
		if s.pool.Encrypted() {
			io = pool.InitOptions{Encrypt: true, KeyFile: keyFile}
		}
		if store, err = images.Init(ctx, b, io, s.log.With("component", "images")); err != nil {
			return nil, fmt.Errorf("init image pool %s: %w", pool.RedactLocation(loc), err)
		}
		s.log.Info("initialised the image pool", "pool", store.Pool().ID(), "location", store.Pool().Location())
	}
	if store.Pool().ID() == s.pool.ID() {
		return nil, fmt.Errorf("image pool %s: it is the file pool; the image pool needs its own root", pool.RedactLocation(loc))
	}
	if err := s.cat.SetSetting(ctx, settingImagePoolID, store.Pool().ID()); err != nil {
		return nil, err
	}
	st.store = store
	store.SetLockRegistry(st.registry)
	return store, nil
}

// imageRowOf completes the catalog row of a placeholder snapshot (its
// tree is empty): one file of the image's size.
func imageRowOf(m *pool.Manifest, row *catalog.Snapshot) *catalog.Snapshot {
	if _, _, ok := images.Placeholder(m); ok {
		size, _ := strconv.ParseInt(m.Labels[images.LabelSize], 10, 64)
		row.Files, row.Bytes = 1, size
	}
	return row
}

// fullTree is the whole restore tree: the file pool's snapshots with the
// image versions overlaid (images.Tree). Its I/O uses ctx.
func (s *Server) fullTree(ctx context.Context) fs.FS {
	return images.NewTree(ctx, s.pool.FS(ctx), s.pool, func() (*images.Store, error) {
		return s.imageStore(ctx, false)
	})
}

// ImagesGCResult is the image pool's part of a GC job.
type ImagesGCResult struct {
	Orphans    int   `json:"orphans"` // versions whose snapshot is gone (deleted, or would be)
	Versions   int   `json:"versions"`
	Marked     int   `json:"marked"`
	Swept      int   `json:"swept"`
	SweptBytes int64 `json:"swept_bytes"`
	Kept       int   `json:"kept"`
}

// gcImages deletes image versions whose placeholder snapshot is gone,
// then sweeps unreferenced blocks. Nothing to do without an image pool.
func (s *Server) gcImages(ctx context.Context, jc *jobCtx, dryRun bool) (*ImagesGCResult, error) {
	store, err := s.imageStore(ctx, false)
	if err != nil || store == nil {
		return nil, err
	}
	res := &ImagesGCResult{}
	orphans, err := s.orphanVersions(ctx, store)
	if err != nil {
		return nil, fmt.Errorf("image gc: %w", err)
	}
	for _, v := range orphans {
		res.Orphans++
		if dryRun {
			continue
		}
		if err := store.Delete(ctx, v.Name, v.ID); err != nil && !errors.Is(err, pool.ErrNotFound) {
			return nil, fmt.Errorf("image gc: delete %s/%s: %w", v.Name, v.ID, err)
		}
	}
	rep, err := store.GC(ctx, pool.GCOptions{DryRun: dryRun, Now: s.now})
	if err != nil {
		return nil, fmt.Errorf("image gc: %w", err)
	}
	res.Versions, res.Marked, res.Swept, res.SweptBytes, res.Kept = rep.Versions, rep.Marked, rep.Swept, rep.SweptBytes, rep.Kept
	s.invalidateImagesUsage()
	verb := "removed"
	if dryRun {
		verb = "would remove"
	}
	jc.logf("info", "image gc: %s %d orphaned versions and %d blocks (%d bytes); %d versions live", verb, res.Orphans, rep.Swept, rep.SweptBytes, rep.Versions)
	return res, nil
}

// orphanVersions lists versions that name a file-pool snapshot which no
// longer exists, stored more than the GC grace period ago (a backup
// writes its version just before its snapshot). Versions naming no
// snapshot (written outside the appliance) are never orphans.
func (s *Server) orphanVersions(ctx context.Context, store *images.Store) ([]images.VersionRef, error) {
	var refs []images.VersionRef
	if err := store.Versions(ctx, func(v images.VersionRef) error { refs = append(refs, v); return nil }); err != nil {
		return nil, err
	}
	var out []images.VersionRef
	for _, v := range refs {
		if s.now().Sub(v.Stored) < pool.DefaultGCGrace {
			continue
		}
		m, err := store.Load(ctx, v.Name, v.ID)
		if err != nil {
			return nil, err // a damaged manifest: let check report it, delete nothing
		}
		if m.Snapshot == "" {
			continue
		}
		if _, err := s.pool.Snapshot(ctx, m.Snapshot); errors.Is(err, pool.ErrNotFound) {
			out = append(out, v)
		} else if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ImagesCheckResult is the image pool's part of a check job.
type ImagesCheckResult struct {
	OK          bool     `json:"ok"`
	Summary     string   `json:"summary"`
	Versions    int      `json:"versions"`
	Objects     int      `json:"objects"`
	ReadObjects int      `json:"read_objects"`
	BadVersions []string `json:"bad_versions,omitempty"`
	Missing     []string `json:"missing,omitempty"`
	Corrupt     []string `json:"corrupt,omitempty"`
	Affected    []string `json:"affected,omitempty"` // "image/version@offset"
}

// checkImages checks the image pool (nil without one).
func (s *Server) checkImages(ctx context.Context, jc *jobCtx, o pool.CheckOptions) (*ImagesCheckResult, error) {
	store, err := s.imageStore(ctx, false)
	if err != nil || store == nil {
		return nil, err
	}
	rep, err := store.Check(ctx, o)
	if err != nil {
		return nil, err
	}
	res := &ImagesCheckResult{OK: rep.OK(), Summary: rep.String(), Versions: rep.Versions, Objects: rep.Objects,
		ReadObjects: rep.ReadObjects, BadVersions: rep.BadVersions}
	for _, d := range rep.Missing {
		res.Missing = append(res.Missing, d.String())
	}
	for _, d := range rep.Corrupt {
		res.Corrupt = append(res.Corrupt, d.String())
	}
	for _, u := range rep.Affected {
		res.Affected = append(res.Affected, fmt.Sprintf("%s/%s@%d", u.Name, u.ID, u.Offset))
	}
	jc.logf(map[bool]string{true: "info", false: "error"}[res.OK], "image pool check: %s", res.Summary)
	return res, nil
}
