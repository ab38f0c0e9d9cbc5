package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/images"
	"github.com/cairn-backup/cairn/pool"
)

// Replication of the block-image pool. A target holds the replica of the
// image pool nested in the replica of the file pool, below images/:
//
//	<target>/cairn-pool.json, objects/…, snapshots/…   the file pool
//	<target>/images/cairn-pool.json, cairn-images.json,
//	<target>/images/objects/…, images/images/<name>/<id>  the image pool
//
// (on another appliance: DATA/replicas/<pool>/images/). Each image
// version belongs to a placeholder snapshot of the file pool
// (images/FORMAT.md §6), so a run copies the versions of the
// placeholders it is about to copy — blocks, barrier, manifest — before
// the file pool's snapshots: a replica never lists an image snapshot
// whose image is missing. The replica's retention removes a version with
// its placeholder. `cairn --pool <target> image ls|download` and `cairn
// mount --pool <target>` find the nested image pool with no catalog.

// replicaImagesDir is where a replica keeps its image pool.
const replicaImagesDir = "images"

func replicaImagesBackend(b pool.Backend) pool.Backend { return pool.Sub(b, replicaImagesDir) }

// replicateImages copies to the target the image versions whose
// placeholder snapshot is on the target (have) or is about to be copied
// (sel). Nothing to do without an image pool.
func (s *Server) replicateImages(ctx context.Context, t *storedTarget, b pool.Backend, have map[string]bool,
	sel func(host, source string, start time.Time, status string) bool, lim *pool.Bandwidth) (images.ReplicateReport, error) {
	store, err := s.imageStore(ctx, false)
	if err != nil || store == nil {
		return images.ReplicateReport{}, err
	}
	// The versions of the placeholders the target has or will have, by
	// name: no image manifest is read for the others.
	snaps, err := s.cat.Snapshots(ctx, "")
	if err != nil {
		return images.ReplicateReport{}, err
	}
	want := map[string]bool{}
	for _, sn := range snaps {
		if !have[sn.ID] && !sel(sn.Host, sn.Source, sn.Started, sn.Status) {
			continue
		}
		if v, ok := s.placeholderOf(ctx, sn); ok {
			want[v] = true
		}
	}
	rep, err := store.Replicate(ctx, replicaImagesBackend(b), images.ReplicateOptions{
		Concurrency: t.Concurrency,
		Limiter:     lim,
		Want:        func(v images.VersionRef) bool { return want[v.Name+"/"+v.ID] },
		Select: func(m *images.Manifest) bool {
			if m.Snapshot == "" {
				return false // not one of the appliance's image snapshots
			}
			if have[m.Snapshot] {
				return true
			}
			sn, err := s.cat.Snapshot(ctx, m.Snapshot)
			if err != nil {
				return false // gone: the primary's GC will delete the orphan
			}
			return sel(sn.Host, sn.Source, sn.Started, sn.Status)
		},
	})
	if err != nil {
		return rep, fmt.Errorf("replicate images to %s: %w", t.Name, err)
	}
	return rep, nil
}

// openReplicaImages opens the image pool of a target as the replica of
// the appliance's image pool (nil, nil when there is none).
func (s *Server) openReplicaImages(ctx context.Context, b pool.Backend) (*images.Store, error) {
	store, err := s.imageStore(ctx, false)
	if err != nil || store == nil {
		return nil, err
	}
	ib := replicaImagesBackend(b)
	if _, err := ib.Stat(ctx, pool.IdentityName); errors.Is(err, pool.ErrNotFound) {
		return nil, nil
	}
	return images.Open(ctx, ib, pool.OpenOptions{ExpectID: store.Pool().ID(), KeyFile: filepath.Join(s.dataDir, imagesKeyName)},
		s.log.With("component", "images"))
}

// pruneReplicaImages deletes from a target's image pool the versions
// whose placeholder snapshot is not on the target (its retention removed
// it), then collects the blocks. It runs after a successful run, when
// every version copied has its placeholder there.
func (s *Server) pruneReplicaImages(ctx context.Context, b pool.Backend) (int, error) {
	st, err := s.openReplicaImages(ctx, b)
	if err != nil || st == nil {
		return 0, err
	}
	ids, err := pool.ReplicaSnapshots(ctx, b)
	if err != nil {
		return 0, err
	}
	on := map[string]bool{}
	for _, id := range ids {
		on[id] = true
	}
	gone, err := st.DeleteVersionsOf(ctx, func(id string) bool { return !on[id] })
	if err != nil || len(gone) == 0 {
		return len(gone), err
	}
	if _, err := st.GC(ctx, pool.GCOptions{Now: s.now}); err != nil {
		return len(gone), err
	}
	return len(gone), nil
}

// placeholderOf returns the image version ("name/id") a catalog snapshot
// stands for, reading its manifest once (cached: manifests are
// immutable). Placeholders have exactly one file (imageRowOf).
func (s *Server) placeholderOf(ctx context.Context, sn catalog.Snapshot) (string, bool) {
	if sn.Files != 1 {
		return "", false
	}
	r := &s.repl
	r.mu.Lock()
	v, ok := r.placeholders[sn.ID]
	r.mu.Unlock()
	if ok {
		return v, v != ""
	}
	m, err := s.pool.Snapshot(ctx, sn.ID)
	if err != nil {
		return "", false // not cached: may be transient
	}
	name, id, isImg := images.Placeholder(m)
	if isImg {
		v = name + "/" + id
	}
	r.mu.Lock()
	if r.placeholders == nil {
		r.placeholders = map[string]string{}
	}
	r.placeholders[sn.ID] = v
	r.mu.Unlock()
	return v, isImg
}

// adoptImagePool records the identity of the image pool found at the
// image location when the catalog knows none: a replica adopted after a
// disaster (`cairn serve --pool REPLICA --images REPLICA/images`, then
// `cairn catalog rebuild`). It returns the adopted pool's ID, or "".
func (s *Server) adoptImagePool(ctx context.Context) (string, error) {
	if v, known, err := s.cat.Setting(ctx, settingImagePoolID); err != nil || known && v != "" {
		return "", err
	}
	loc := s.imagesLocation()
	nested := func() {
		// A replica adopted without --images: say how to get its images.
		if _, err := replicaImagesBackend(s.pool.Backend()).Stat(ctx, images.MarkerName); err == nil {
			s.log.Warn("the pool holds a replica's image pool that is not adopted: restart with --images pointing at it",
				"images", s.pool.Location()+"/"+replicaImagesDir, "image_location", pool.RedactLocation(loc))
		}
	}
	b, err := openImagesBackend(ctx, loc, false)
	if err != nil {
		nested()
		return "", nil // nothing there
	}
	if _, err := b.Stat(ctx, images.MarkerName); errors.Is(err, pool.ErrNotFound) {
		nested()
		return "", nil
	}
	st, err := images.Open(ctx, b, pool.OpenOptions{KeyFile: filepath.Join(s.dataDir, imagesKeyName)}, nil)
	if err != nil {
		return "", fmt.Errorf("image pool at %s: %w (an encrypted one needs its key at %s)", pool.RedactLocation(loc), err,
			filepath.Join(s.dataDir, imagesKeyName))
	}
	if st.Pool().ID() == s.pool.ID() {
		return "", fmt.Errorf("image pool %s: it is the file pool; the image pool needs its own root", pool.RedactLocation(loc))
	}
	if err := s.cat.SetSetting(ctx, settingImagePoolID, st.Pool().ID()); err != nil {
		return "", err
	}
	s.log.Info("adopted the image pool found at the image location", "pool", st.Pool().ID(), "location", pool.RedactLocation(loc))
	return st.Pool().ID(), nil
}

// Keys of received encrypted replicas. By default the key of an
// encrypted pool never leaves the primary: a replica received here is
// ciphertext that this appliance stores, checks for shape and hands back,
// and a thief of it (or of this appliance) reads nothing. An admin of
// this appliance who wants it to verify, prune and restore the replica
// imports the keys explicitly (PUT /api/v1/replica/{pool}/key, `cairn
// replica key import`); they are checked against the replica and kept
// sealed with the appliance key in the catalog, like host credentials.
// A key file at DATA/replicas/<pool>.key (and <pool>.images.key) is still
// read when no key was imported.

const sealReplicaKey = "replica-key"

func receivedKeysSetting(poolID string) string { return "replica.received." + poolID + ".keys" }

// receivedKeys is the setting: each key sealed.
type receivedKeys struct {
	Pool   []byte `json:"pool,omitempty"`
	Images []byte `json:"images,omitempty"`
}

// ReplicaKeyInput is PUT /api/v1/replica/{pool}/key: the content of the
// primary's key files (64 hex characters each). Either may be omitted.
type ReplicaKeyInput struct {
	Key       string `json:"key,omitempty"`        // the primary's DATA/pool.key
	ImagesKey string `json:"images_key,omitempty"` // the primary's DATA/images.key
}

// ReplicaKeyStatus says which keys of a received replica this appliance
// holds (never the keys).
type ReplicaKeyStatus struct {
	Pool            string `json:"pool"`
	Encrypted       bool   `json:"encrypted"`
	Key             bool   `json:"key"`
	Images          bool   `json:"images"` // the replica has an image pool
	ImagesEncrypted bool   `json:"images_encrypted"`
	ImagesKey       bool   `json:"images_key"`
}

func (s *Server) loadReceivedKeys(ctx context.Context, poolID string) (receivedKeys, error) {
	var rk receivedKeys
	v, ok, err := s.cat.Setting(ctx, receivedKeysSetting(poolID))
	if err != nil || !ok || v == "" {
		return rk, err
	}
	if err := json.Unmarshal([]byte(v), &rk); err != nil {
		return rk, fmt.Errorf("stored keys of replica %s: %w", poolID, err)
	}
	return rk, nil
}

// receivedKey returns the imported key of a received replica's file pool
// (or, with img, its image pool), or the legacy key file's; nil, nil when
// there is none.
func (s *Server) receivedKey(ctx context.Context, poolID string, img bool) ([]byte, error) {
	rk, err := s.loadReceivedKeys(ctx, poolID)
	if err != nil {
		return nil, err
	}
	sealed, label, file := rk.Pool, sealReplicaKey+":"+poolID, filepath.Join(s.dataDir, "replicas", poolID+".key")
	if img {
		sealed, label, file = rk.Images, sealReplicaKey+":images:"+poolID, filepath.Join(s.dataDir, "replicas", poolID+".images.key")
	}
	if sealed != nil {
		plain, err := s.box.Open(label, sealed)
		if err != nil {
			return nil, fmt.Errorf("key of replica %s: %w", poolID, err)
		}
		return plain, nil
	}
	if data, err := os.ReadFile(file); err == nil {
		return pool.ParseKey(file, data)
	}
	return nil, nil
}

// errReplicaKey explains what to do when a received replica is
// encrypted and its key is not here.
func errReplicaKey(poolID string, img bool, err error) error {
	what, file, flag := "", "DATA/pool.key", "--key-file"
	if img {
		what, file, flag = "image pool of the ", "DATA/images.key", "--images-key-file"
	}
	return fmt.Errorf("the %sreplica of pool %s received here is encrypted and this appliance does not hold its key "+
		"(by design the key stays on the primary): import it with `cairn replica key import %s %s FILE` "+
		"(FILE: the primary's %s), or PUT /api/v1/replica/%s/key: %w", what, poolID, poolID, flag, file, poolID, err)
}

// openReceived opens a received replica with its key, when it has one.
func (s *Server) openReceived(ctx context.Context, poolID string, b pool.Backend) (*pool.Pool, error) {
	key, err := s.receivedKey(ctx, poolID, false)
	if err != nil {
		return nil, err
	}
	rp, err := pool.OpenWithKey(ctx, b, key, poolID)
	if errors.Is(err, pool.ErrNoKey) {
		return nil, errReplicaKey(poolID, false, err)
	}
	return rp, err
}

// openReceivedImagesPool opens the image pool nested in a received replica as
// a plain pool (its marker may not have arrived yet); nil, nil without
// one.
func (s *Server) openReceivedImagesPool(ctx context.Context, poolID string, b pool.Backend) (*pool.Pool, error) {
	ib := replicaImagesBackend(b)
	if _, err := ib.Stat(ctx, pool.IdentityName); errors.Is(err, pool.ErrNotFound) {
		return nil, nil
	}
	key, err := s.receivedKey(ctx, poolID, true)
	if err != nil {
		return nil, err
	}
	ip, err := pool.OpenWithKey(ctx, ib, key, "")
	if errors.Is(err, pool.ErrNoKey) {
		return nil, errReplicaKey(poolID, true, err)
	}
	if err != nil {
		return nil, err
	}
	if ip.ID() == poolID {
		return nil, fmt.Errorf("the image pool of replica %s has the file pool's identity", poolID)
	}
	return ip, nil
}

// verifyReceivedImage checks a name written below images/ of a received
// replica, when it can be read (see verifyReceived).
func (s *Server) verifyReceivedImage(ctx context.Context, poolID string, b pool.Backend, name string) error {
	ip, err := s.openReceivedImagesPool(ctx, poolID, b)
	switch {
	case errors.Is(err, pool.ErrNoKey):
		return nil // encrypted and no key here: the bytes cannot be checked
	case err != nil:
		return err
	case ip == nil:
		return errors.New("no image pool identity yet")
	}
	sub := strings.TrimPrefix(name, replicaImagesDir+"/")
	switch {
	case sub == pool.IdentityName:
		return nil
	case sub == images.MarkerName:
		_, err := images.Wrap(ctx, ip, nil)
		return err
	case strings.HasPrefix(sub, "objects/"):
		d, err := pool.ParseDigest(filepath.Base(sub))
		if err != nil || pool.ObjectName(d) != sub {
			return fmt.Errorf("not an object name")
		}
		_, _, err = ip.Get(ctx, d)
		return err
	}
	st, err := images.Wrap(ctx, ip, nil)
	if err != nil {
		return err
	}
	imgName, id, _ := strings.Cut(strings.TrimPrefix(sub, "images/"), "/")
	_, err = st.Load(ctx, imgName, id)
	return err
}

// replicaImageName checks a name below images/ sent to a replica: only
// an image pool's own kinds of names.
func replicaImageName(sub string) bool {
	return sub == pool.IdentityName || sub == images.MarkerName || strings.HasPrefix(sub, "objects/") ||
		strings.HasPrefix(sub, "images/") && strings.Count(sub, "/") == 2
}

// pruneReceivedImages deletes the versions of a received replica's image
// pool whose placeholder retention just removed, then collects blocks.
func (s *Server) pruneReceivedImages(ctx context.Context, poolID string, b pool.Backend, removed map[string]bool) error {
	ip, err := s.openReceivedImagesPool(ctx, poolID, b)
	if err != nil || ip == nil {
		return err
	}
	st, err := images.Wrap(ctx, ip, s.log.With("component", "images"))
	if err != nil {
		return err
	}
	gone, err := st.DeleteVersionsOf(ctx, func(id string) bool { return removed[id] })
	if err != nil || len(gone) == 0 {
		return err
	}
	rep, err := st.GC(ctx, pool.GCOptions{Now: s.now})
	if err != nil {
		return err
	}
	s.log.Info("received image replica pruned", "pool", poolID, "versions_removed", len(gone), "blocks_swept", rep.Swept)
	return nil
}

func (s *Server) handleReplicaKeyGet(r *http.Request, p *principal) (any, error) {
	if p.AppendOnly {
		return nil, forbidden("%s is an append-only token: it has no business with keys", p.Name)
	}
	b, err := s.replicaStore(r, false)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	id, _ := replicaPoolID(r)
	return s.replicaKeyStatus(r.Context(), id, b)
}

func (s *Server) replicaKeyStatus(ctx context.Context, id string, b pool.Backend) (*ReplicaKeyStatus, error) {
	out := &ReplicaKeyStatus{Pool: id}
	if _, err := pool.Open(ctx, b, pool.OpenOptions{ExpectID: id}); errors.Is(err, pool.ErrNoKey) {
		out.Encrypted = true
		key, err := s.receivedKey(ctx, id, false)
		if err != nil {
			return nil, err
		}
		out.Key = key != nil
	} else if err != nil {
		return nil, err
	}
	ib := replicaImagesBackend(b)
	if _, err := ib.Stat(ctx, pool.IdentityName); err == nil {
		out.Images = true
		if _, err := pool.Open(ctx, ib, pool.OpenOptions{}); errors.Is(err, pool.ErrNoKey) {
			out.ImagesEncrypted = true
			key, err := s.receivedKey(ctx, id, true)
			if err != nil {
				return nil, err
			}
			out.ImagesKey = key != nil
		}
	}
	return out, nil
}

// handleReplicaKeyPut imports the keys of a received encrypted replica:
// each is checked against the replica it is for, then sealed.
func (s *Server) handleReplicaKeyPut(r *http.Request, p *principal) (any, error) {
	if p.AppendOnly {
		return nil, forbidden("%s is an append-only token: it cannot import keys", p.Name)
	}
	var in ReplicaKeyInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.Key == "" && in.ImagesKey == "" {
		return nil, badRequest("key import: give key (the primary's DATA/pool.key) and/or images_key (its DATA/images.key)")
	}
	b, err := s.replicaStore(r, false)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	id, _ := replicaPoolID(r)
	ctx := r.Context()
	rk, err := s.loadReceivedKeys(ctx, id)
	if err != nil {
		return nil, err
	}
	check := func(field, raw string, bk pool.Backend, expect string) ([]byte, error) {
		key, err := pool.ParseKey(field, []byte(raw))
		if err != nil {
			return nil, badRequest("%v", err)
		}
		if _, err := bk.Stat(ctx, pool.IdentityName); errors.Is(err, pool.ErrNotFound) {
			return nil, badRequest("%s: replica %s has no %s here yet: import its key after the first replication", field, id, bk.Location())
		}
		if _, err := pool.Open(ctx, bk, pool.OpenOptions{ExpectID: expect}); err == nil {
			return nil, badRequest("%s: the pool at %s is not encrypted: it needs no key", field, bk.Location())
		}
		if _, err := pool.OpenWithKey(ctx, bk, key, expect); err != nil {
			return nil, badRequest("%s: %v", field, err)
		}
		return key, nil
	}
	if in.Key != "" {
		key, err := check("key", in.Key, b, id)
		if err != nil {
			return nil, err
		}
		if rk.Pool, err = s.box.Seal(sealReplicaKey+":"+id, key); err != nil {
			return nil, err
		}
	}
	if in.ImagesKey != "" {
		key, err := check("images_key", in.ImagesKey, replicaImagesBackend(b), "")
		if err != nil {
			return nil, err
		}
		if rk.Images, err = s.box.Seal(sealReplicaKey+":images:"+id, key); err != nil {
			return nil, err
		}
	}
	js, _ := json.Marshal(rk)
	if err := s.cat.SetSetting(ctx, receivedKeysSetting(id), string(js)); err != nil {
		return nil, err
	}
	s.log.Info("key of a received replica imported (sealed)", "pool", id, "pool_key", in.Key != "", "images_key", in.ImagesKey != "", "by", p.Name)
	return s.replicaKeyStatus(ctx, id, b)
}

// handleReplicaKeyDelete forgets the imported keys of a received replica:
// it is ciphertext here again.
func (s *Server) handleReplicaKeyDelete(r *http.Request, p *principal) (any, error) {
	if p.AppendOnly {
		return nil, forbidden("%s is an append-only token: it cannot remove keys", p.Name)
	}
	id, err := replicaPoolID(r)
	if err != nil {
		return nil, err
	}
	if err := s.cat.SetSetting(r.Context(), receivedKeysSetting(id), ""); err != nil {
		return nil, err
	}
	s.log.Info("keys of a received replica removed", "pool", id, "by", p.Name)
	return nil, nil
}
