package appliance

// Choosing the storage in the first-boot setup. `cairn serve` creates a
// plain pool in DATA/pool on its first start so the API always has one;
// while that pool was never used (no snapshot in the catalog nor in the
// pool, no job running or queued) an admin may replace it: a local
// directory or an S3 bucket, encrypted or not.
//
// The choice is the catalog setting pool.storage (JSON). S3 credentials
// in it are sealed with the appliance's secret key (purpose
// storageSecretPurpose) and never returned. An encrypted pool's key is
// DATA/pool.key; the POST that creates it answers its text once, for the
// admin to keep.
//
// The swap replaces Server.pool while nothing uses the pool: no job runs
// and the storage lock keeps two swaps apart. Requests that use the pool
// afterwards go through the catalog first (authentication, host lookup),
// whose database/sql mutex orders them after the settings written below,
// which are written after the swap.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/pool"
	"golang.org/x/sys/unix"
)

const (
	// settingStorage is the storage chosen in setup (storageSetting).
	settingStorage       = "pool.storage"
	storageSecretPurpose = "cairn storage secret v1"
	poolKeyName          = "pool.key"
)

// storageMu keeps storage swaps apart.
var storageMu sync.Mutex

// storageSetting is the stored choice.
type storageSetting struct {
	Kind      string     `json:"kind"` // "dir" or "s3"
	Dir       string     `json:"dir,omitempty"`
	S3        *s3Setting `json:"s3,omitempty"`
	Encrypted bool       `json:"encrypted"`
}

type s3Setting struct {
	Endpoint string `json:"endpoint"`
	Bucket   string `json:"bucket"`
	Prefix   string `json:"prefix,omitempty"`
	Region   string `json:"region,omitempty"`
	Insecure bool   `json:"insecure,omitempty"`
	Sealed   []byte `json:"sealed"` // {"access_key","secret_key"} sealed
}

// StorageS3 is an S3 bucket as the API takes it. The keys are
// write-only.
type StorageS3 struct {
	Endpoint  string `json:"endpoint"` // host:port
	Bucket    string `json:"bucket"`
	Prefix    string `json:"prefix,omitempty"`
	Region    string `json:"region,omitempty"`
	Insecure  bool   `json:"insecure,omitempty"` // plain HTTP
	AccessKey string `json:"access_key,omitempty"`
	SecretKey string `json:"secret_key,omitempty"`
}

// StorageInput chooses the storage (POST /api/v1/storage) or names one to
// test (POST /api/v1/storage/test, where encrypt is ignored).
type StorageInput struct {
	Kind    string     `json:"kind"` // "dir" or "s3"
	Dir     string     `json:"dir,omitempty"`
	S3      *StorageS3 `json:"s3,omitempty"`
	Encrypt bool       `json:"encrypt,omitempty"`
}

// StorageBody describes the storage in use.
type StorageBody struct {
	PoolID     string `json:"pool_id"`
	Kind       string `json:"kind"`
	Location   string `json:"location"`
	Encrypted  bool   `json:"encrypted"`
	Free       uint64 `json:"free,omitempty"` // local directory only
	Total      uint64 `json:"total,omitempty"`
	Changeable bool   `json:"changeable"`
	Reason     string `json:"reason,omitempty"` // why not changeable
	// S3 settings without the keys.
	S3 *StorageS3 `json:"s3,omitempty"`
	// Key is the text of the new pool's key file, answered once by the
	// POST that created an encrypted pool.
	Key string `json:"key,omitempty"`
}

// StorageTestBody answers a storage test.
type StorageTestBody struct {
	OK       bool   `json:"ok"`
	Location string `json:"location"`
	Error    string `json:"error,omitempty"`
	Free     uint64 `json:"free,omitempty"`
	Total    uint64 `json:"total,omitempty"`
}

func (s *Server) poolKeyFile() string { return filepath.Join(s.dataDir, poolKeyName) }

// storageChoice reads the stored choice, if any.
func (s *Server) storageChoice(ctx context.Context) (*storageSetting, bool, error) {
	v, ok, err := s.cat.Setting(ctx, settingStorage)
	if err != nil || !ok {
		return nil, false, err
	}
	var st storageSetting
	if err := json.Unmarshal([]byte(v), &st); err != nil {
		return nil, false, fmt.Errorf("setting %s: %w", settingStorage, err)
	}
	return &st, true, nil
}

// openChosenPool opens the pool the setup chose (openPool calls it when
// the catalog knows its pool and has a choice).
func (s *Server) openChosenPool(ctx context.Context, st *storageSetting, want string) error {
	in := StorageInput{Kind: st.Kind, Dir: st.Dir}
	if st.S3 != nil {
		in.S3 = &StorageS3{Endpoint: st.S3.Endpoint, Bucket: st.S3.Bucket, Prefix: st.S3.Prefix, Region: st.S3.Region, Insecure: st.S3.Insecure}
		plain, err := s.box.Open(storageSecretPurpose, st.S3.Sealed)
		if err != nil {
			return fmt.Errorf("storage credentials: %w", err)
		}
		var keys map[string]string
		if err := json.Unmarshal(plain, &keys); err != nil {
			return fmt.Errorf("storage credentials: %w", err)
		}
		in.S3.AccessKey, in.S3.SecretKey = keys["access_key"], keys["secret_key"]
		// At start the store may be down or throttling for a while: wait
		// for it with retries, as for --pool s3://… (the setup's live
		// test below keeps failing at once).
		if _, err := pool.OpenS3(ctx, pool.S3Config{Endpoint: in.S3.Endpoint, Bucket: in.S3.Bucket, Prefix: in.S3.Prefix,
			Region: in.S3.Region, AccessKey: in.S3.AccessKey, SecretKey: in.S3.SecretKey, Insecure: in.S3.Insecure}, pool.OpenBackendOptions{}); err != nil {
			return fmt.Errorf("wrong or missing storage: the catalog expects pool %s: %w", want, err)
		}
	}
	b, _, err := storageOpen(ctx, &in, false)
	if err != nil {
		return fmt.Errorf("wrong or missing storage: the catalog expects pool %s: %w", want, err)
	}
	o := pool.OpenOptions{ExpectID: want}
	if st.Encrypted {
		o.KeyFile = s.poolKeyFile()
	}
	p, err := pool.Open(ctx, b, o)
	if err != nil {
		return fmt.Errorf("wrong or missing storage: the catalog expects pool %s at %s: %w", want, b.Location(), err)
	}
	s.pool = p
	return nil
}

// openStorage checks in and opens its backend. create makes a missing
// local directory.
func storageOpen(ctx context.Context, in *StorageInput, create bool) (pool.Backend, string, error) {
	switch in.Kind {
	case "dir":
		dir := strings.TrimSpace(in.Dir)
		if !filepath.IsAbs(dir) {
			return nil, "", badRequest("storage dir %q: give an absolute path", in.Dir)
		}
		dir = filepath.Clean(dir)
		if create {
			b, err := pool.CreateDirBackend(dir)
			if err != nil {
				return nil, dir, badRequest("storage dir %s: %v", dir, err)
			}
			return b, dir, nil
		}
		b, err := pool.NewDirBackend(dir)
		if err != nil {
			return nil, dir, badRequest("storage dir %s: %v", dir, err)
		}
		return b, dir, nil
	case "s3":
		c := in.S3
		if c == nil || strings.TrimSpace(c.Endpoint) == "" || strings.TrimSpace(c.Bucket) == "" {
			return nil, "", badRequest("storage s3: endpoint and bucket are required")
		}
		if strings.Contains(c.Endpoint, "/") {
			return nil, "", badRequest("storage s3 endpoint %q: give host:port, without a scheme or path", c.Endpoint)
		}
		if c.AccessKey == "" || c.SecretKey == "" {
			return nil, "", badRequest("storage s3: access_key and secret_key are required")
		}
		b, err := pool.NewS3Backend(ctx, pool.S3Config{Endpoint: strings.TrimSpace(c.Endpoint), Bucket: strings.TrimSpace(c.Bucket),
			Prefix: strings.Trim(c.Prefix, "/"), Region: c.Region, AccessKey: c.AccessKey, SecretKey: c.SecretKey, Insecure: c.Insecure})
		if err != nil {
			return nil, "", badRequest("storage: %v", err)
		}
		return pool.Decorate(b, pool.DecorateOptions{Retries: 5}), b.Location(), nil
	}
	return nil, "", badRequest("storage kind %q: want dir or s3", in.Kind)
}

// storageChangeable says why the storage may not be replaced now, or "".
func (s *Server) storageChangeable(ctx context.Context) (string, error) {
	if s.cfg.Pool != "" {
		return "the appliance was started with --pool " + pool.RedactLocation(s.cfg.Pool), nil
	}
	if s.cfg.Cluster.Enabled {
		return "cluster mode: the instances share the pool given with --pool", nil
	}
	snaps, err := s.cat.Snapshots(ctx, "")
	if err != nil {
		return "", err
	}
	if len(snaps) > 0 {
		return fmt.Sprintf("the pool holds %d snapshots", len(snaps)), nil
	}
	ids, err := s.pool.SnapshotIDs(ctx)
	if err != nil {
		return "", err
	}
	if len(ids) > 0 {
		return fmt.Sprintf("the pool holds %d snapshots not in the catalog", len(ids)), nil
	}
	if n := s.jobs.runningCount(); n > 0 {
		return fmt.Sprintf("%d jobs are running", n), nil
	}
	q, err := s.cat.Jobs(ctx, catalog.JobFilter{States: []string{"queued"}, Limit: 1})
	if err != nil {
		return "", err
	}
	if len(q) > 0 {
		return "jobs are queued", nil
	}
	return "", nil
}

func storageStatfs(dir string) (free, total uint64) {
	for d := dir; ; d = filepath.Dir(d) {
		var st unix.Statfs_t
		if unix.Statfs(d, &st) == nil {
			return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize)
		}
		if d == filepath.Dir(d) {
			return 0, 0
		}
	}
}

func (s *Server) storageBody(ctx context.Context) (*StorageBody, error) {
	b := &StorageBody{PoolID: s.pool.ID(), Kind: "dir", Location: s.pool.Location(), Encrypted: s.pool.Encrypted()}
	st, ok, err := s.storageChoice(ctx)
	if err != nil {
		return nil, err
	}
	if ok && st.S3 != nil {
		b.Kind = "s3"
		b.S3 = &StorageS3{Endpoint: st.S3.Endpoint, Bucket: st.S3.Bucket, Prefix: st.S3.Prefix, Region: st.S3.Region, Insecure: st.S3.Insecure}
	} else if strings.HasPrefix(b.Location, "/") {
		b.Free, b.Total = storageStatfs(b.Location)
	}
	reason, err := s.storageChangeable(ctx)
	if err != nil {
		return nil, err
	}
	b.Changeable, b.Reason = reason == "", reason
	return b, nil
}

func (s *Server) handleStorageGet(r *http.Request, p *principal) (any, error) {
	return s.storageBody(r.Context())
}

// handleStorageTest checks that a storage can be reached and used, without
// changing anything: a local directory's nearest existing parent and free
// space, an S3 bucket by writing, reading and deleting a probe object.
func (s *Server) handleStorageTest(r *http.Request, p *principal) (any, error) {
	var in StorageInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	out := &StorageTestBody{}
	if in.Kind == "dir" {
		d := strings.TrimSpace(in.Dir)
		if !filepath.IsAbs(d) {
			return nil, badRequest("storage dir %q: give an absolute path", in.Dir)
		}
		d = filepath.Clean(d)
		out.Location = d
		out.Free, out.Total = storageStatfs(d)
		if err := storageDirUsable(d, s.pool.Location()); err != nil {
			out.Error = err.Error()
			return out, nil
		}
		out.OK = true
		return out, nil
	}
	b, loc, err := storageOpen(r.Context(), &in, false)
	if err != nil {
		var he *httpError
		if errors.As(err, &he) && in.Kind == "s3" && in.S3 != nil && in.S3.Endpoint != "" && in.S3.Bucket != "" && in.S3.AccessKey != "" {
			out.Location, out.Error = "s3://"+in.S3.Endpoint+"/"+in.S3.Bucket, he.msg
			return out, nil // reachable input, failed connection: a result, not a bad request
		}
		return nil, err
	}
	defer closeStorage(b)
	out.Location = loc
	if err := storageProbe(r.Context(), b); err != nil {
		out.Error = err.Error()
		return out, nil
	}
	if err := storageEmpty(r.Context(), b); err != nil {
		out.Error = err.Error()
		return out, nil
	}
	out.OK = true
	return out, nil
}

// dirUsable says whether a local directory can take a new pool: missing
// (it is created) or empty, on a writable file system; cur is the current
// pool's directory, which is replaced.
func storageDirUsable(dir, cur string) error {
	if dir == cur {
		return nil
	}
	es, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		parent := filepath.Dir(dir)
		for {
			if _, err := os.Stat(parent); err == nil {
				break
			}
			parent = filepath.Dir(parent)
		}
		if err := unix.Access(parent, unix.W_OK); err != nil {
			return fmt.Errorf("storage dir %s: cannot create it in %s: %v", dir, parent, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("storage dir %s: %v", dir, err)
	case len(es) > 0:
		return fmt.Errorf("storage dir %s is not empty: choose an empty or new directory", dir)
	}
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return fmt.Errorf("storage dir %s: not writable: %v", dir, err)
	}
	return nil
}

// probe writes, reads back and deletes a small object.
func storageProbe(ctx context.Context, b pool.Backend) error {
	name := "cairn-probe-" + storageRand(8)
	data := "cairn storage probe\n"
	if err := b.Put(ctx, name, strings.NewReader(data), int64(len(data))); err != nil {
		return fmt.Errorf("write a test object: %w", err)
	}
	defer b.Delete(context.WithoutCancel(ctx), name)
	rc, err := b.Get(ctx, name, 0, -1)
	if err != nil {
		return fmt.Errorf("read the test object back: %w", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != data {
		return fmt.Errorf("read the test object back: got %d bytes, %v", len(got), err)
	}
	if err := b.Delete(ctx, name); err != nil {
		return fmt.Errorf("delete the test object: %w", err)
	}
	return nil
}

var errStorageNotEmpty = errors.New("not empty")

// emptyStorage fails when the backend already holds objects.
func storageEmpty(ctx context.Context, b pool.Backend) error {
	var first string
	err := b.List(ctx, "", func(oi pool.ObjectInfo) error {
		first = oi.Name
		return errStorageNotEmpty
	})
	if errors.Is(err, errStorageNotEmpty) {
		return fmt.Errorf("%s is not empty (it holds %s): choose an empty bucket or another prefix", b.Location(), first)
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", b.Location(), err)
	}
	return nil
}

func closeStorage(b pool.Backend) {
	if c, ok := b.(io.Closer); ok {
		c.Close()
	}
}

func storageRand(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// handleStorageSet replaces the never-used pool with a new one on the
// chosen storage.
func (s *Server) handleStorageSet(r *http.Request, p *principal) (any, error) {
	var in StorageInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	ctx := r.Context()
	storageMu.Lock()
	defer storageMu.Unlock()
	reason, err := s.storageChangeable(ctx)
	if err != nil {
		return nil, err
	}
	if reason != "" {
		return nil, &httpError{http.StatusConflict, "storage cannot be changed any more: " + reason}
	}
	cur := s.pool.Location()
	moved := ""
	if in.Kind == "dir" {
		d := filepath.Clean(strings.TrimSpace(in.Dir))
		if err := storageDirUsable(d, cur); err != nil {
			return nil, badRequest("%v", err)
		}
		if filepath.IsAbs(d) && d == cur {
			// Re-initialise in place: the unused pool moves aside and is
			// removed once the new one exists.
			moved = cur + ".unused-" + storageRand(4)
			if err := os.Rename(cur, moved); err != nil {
				return nil, fmt.Errorf("move the unused pool aside: %w", err)
			}
		}
	}
	restore := func() {
		if moved != "" {
			os.RemoveAll(cur)
			os.Rename(moved, cur)
		}
	}
	b, loc, err := storageOpen(ctx, &in, true)
	if err != nil {
		restore()
		return nil, err
	}
	if in.Kind == "s3" {
		if err := storageEmpty(ctx, b); err != nil {
			closeStorage(b)
			return nil, badRequest("storage: %v", err)
		}
	}
	st := storageSetting{Kind: in.Kind, Encrypted: in.Encrypt}
	if in.Kind == "dir" {
		st.Dir = loc
	} else {
		keys, _ := json.Marshal(map[string]string{"access_key": in.S3.AccessKey, "secret_key": in.S3.SecretKey})
		sealed, err := s.box.Seal(storageSecretPurpose, keys)
		if err != nil {
			closeStorage(b)
			return nil, err
		}
		st.S3 = &s3Setting{Endpoint: strings.TrimSpace(in.S3.Endpoint), Bucket: strings.TrimSpace(in.S3.Bucket),
			Prefix: strings.Trim(in.S3.Prefix, "/"), Region: in.S3.Region, Insecure: in.S3.Insecure, Sealed: sealed}
	}
	var iopt pool.InitOptions
	tmpKey := ""
	if in.Encrypt {
		tmpKey = s.poolKeyFile() + ".new-" + storageRand(4)
		iopt = pool.InitOptions{Encrypt: true, KeyFile: tmpKey}
	}
	np, err := pool.Init(ctx, b, iopt)
	if err != nil {
		closeStorage(b)
		restore()
		if tmpKey != "" {
			os.Remove(tmpKey)
		}
		return nil, fmt.Errorf("init pool at %s: %w", loc, err)
	}
	key := ""
	if tmpKey != "" {
		kb, err := os.ReadFile(tmpKey)
		if err == nil {
			err = os.Rename(tmpKey, s.poolKeyFile())
		}
		if err != nil {
			return nil, fmt.Errorf("pool key file: %w", err)
		}
		key = string(kb)
	}
	sj, _ := json.Marshal(st)
	old := s.pool
	s.pool = np
	s.rtree = restoreTree{}
	s.invalidateUsage()
	for _, kv := range [][2]string{{settingStorage, string(sj)}, {catalog.SettingPoolID, np.ID()}, {catalog.SettingPoolLocation, np.Location()}, {settingUsageHistory, s.freshHistory(ctx)}} {
		if err := s.cat.SetSetting(ctx, kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	if s.mount != nil {
		s.stopMount()
		s.mount = nil
		if err := s.startMount(context.Background()); err != nil {
			s.log.Error("remount the restore tree on the new storage", "err", err)
		}
	}
	if old != nil && old.Backend() != b {
		closeStorage(old.Backend())
	}
	if moved != "" {
		if err := os.RemoveAll(moved); err != nil {
			s.log.Warn("remove the unused pool", "dir", moved, "err", err)
		}
	}
	s.log.Info("storage chosen in setup: new pool", "pool", np.ID(), "location", np.Location(), "encrypted", np.Encrypted(), "by", p.Name)
	body, err := s.storageBody(ctx)
	if err != nil {
		return nil, err
	}
	body.Key = key
	return body, nil
}

// freshHistory is the usage history of a new pool: one sample of it.
func (s *Server) freshHistory(ctx context.Context) string {
	objs, bytes, err := s.poolUsage(ctx, true)
	if err != nil {
		return "[]"
	}
	b, _ := json.Marshal([]UsagePoint{{Time: s.now().UTC(), Stored: bytes, Objects: objs}})
	return string(b)
}

// dataPersistent says, on the appliance image (system.go), whether the
// data dir is on a disk; nil elsewhere. GET /api/v1/status shows it so
// every page can warn while the data lives in RAM.
func (s *Server) dataPersistent() *bool {
	if s.sys == nil {
		return nil
	}
	p := s.sys.dataMount(s.dataDir).persistent
	return &p
}
