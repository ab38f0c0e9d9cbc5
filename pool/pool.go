package pool

import (
	"bytes"
	"context"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// IdentityName is the pool identity file at the root of a backend.
const IdentityName = "cairn-pool.json"

// FormatVersion is the pool format this code writes and reads.
const FormatVersion = 1

const (
	objectsPrefix    = "objects/"
	quarantinePrefix = "quarantine/"
)

// identity is the JSON identity file (FORMAT.md §1). It never holds a key.
type identity struct {
	Format      string              `json:"format"`
	Version     int                 `json:"version"`
	ID          string              `json:"id"`
	Created     time.Time           `json:"created"`
	Digest      string              `json:"digest"`
	Layout      string              `json:"layout"`
	Compression string              `json:"compression"`
	Encryption  *identityEncryption `json:"encryption,omitempty"`
}

type identityEncryption struct {
	Cipher   string `json:"cipher"`
	KDF      string `json:"kdf"`
	KeyCheck string `json:"key_check"`
}

const (
	identityFormat = "cairn-pool"
	digestPlain    = "blake3-256"
	digestKeyed    = "keyed-blake3-256"
	layoutV1       = "objects/ab/cd/<hex>"
	cipherXChaCha  = "xchacha20-poly1305"
	kdfBLAKE3      = "blake3-derive-key"
)

// parseIdentity decodes and validates an identity file. Errors are not yet
// wrapped with ErrIdentity.
func parseIdentity(b []byte) (*identity, error) {
	var id identity
	if len(b) > 64<<10 {
		return nil, fmt.Errorf("identity file is %d bytes, too large", len(b))
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, fmt.Errorf("not a cairn pool identity: %v", err)
	}
	if id.Format != identityFormat {
		return nil, fmt.Errorf("not a cairn pool identity (format %q)", id.Format)
	}
	if id.Version != FormatVersion {
		return nil, fmt.Errorf("unsupported pool format version %d (this cairn reads version %d)", id.Version, FormatVersion)
	}
	if _, err := uuid.Parse(id.ID); err != nil || len(id.ID) != 36 {
		return nil, fmt.Errorf("bad pool id %q", id.ID)
	}
	if id.Layout != layoutV1 || id.Compression != "zstd" {
		return nil, fmt.Errorf("unsupported layout %q / compression %q", id.Layout, id.Compression)
	}
	switch {
	case id.Encryption == nil && id.Digest == digestPlain:
	case id.Encryption != nil && id.Digest == digestKeyed:
		e := id.Encryption
		if e.Cipher != cipherXChaCha || e.KDF != kdfBLAKE3 {
			return nil, fmt.Errorf("unsupported encryption %q with kdf %q", e.Cipher, e.KDF)
		}
		if len(e.KeyCheck) != 32 {
			return nil, fmt.Errorf("bad key check value")
		}
	default:
		return nil, fmt.Errorf("inconsistent digest %q and encryption", id.Digest)
	}
	return &id, nil
}

// InitOptions configure a new pool.
type InitOptions struct {
	// Encrypt makes an encrypted pool with a new random key written to
	// KeyFile (mode 0600; an existing file is never overwritten).
	Encrypt bool
	KeyFile string
}

// OpenOptions configure opening a pool.
type OpenOptions struct {
	// KeyFile is the key of an encrypted pool; ignored for a plain pool.
	KeyFile string
	// ExpectID, when set, makes Open fail with ErrIdentity unless the pool
	// has this ID (the catalog's record of which storage it backs up to).
	ExpectID string
}

// A Pool is an open content-addressed store on a Backend. It is safe for
// concurrent use.
type Pool struct {
	b    Backend
	id   identity
	keys *keys // nil for an unencrypted pool
	fly  [64]flight
}

// flight deduplicates concurrent Puts of one digest in this process.
type flight struct {
	mu sync.Mutex
	m  map[Digest]*flightCall
}

type flightCall struct {
	done  chan struct{}
	added bool
	err   error
}

// Init creates a new pool on b. It refuses when b already holds a pool
// identity (ErrExists).
func Init(ctx context.Context, b Backend, o InitOptions) (*Pool, error) {
	if _, err := b.Stat(ctx, IdentityName); err == nil {
		return nil, fmt.Errorf("init pool at %s: %w: %s is present", b.Location(), ErrExists, IdentityName)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("init pool at %s: %w", b.Location(), err)
	}
	id := identity{
		Format:      identityFormat,
		Version:     FormatVersion,
		ID:          uuid.NewString(),
		Created:     time.Now().UTC().Truncate(time.Second),
		Digest:      digestPlain,
		Layout:      layoutV1,
		Compression: "zstd",
	}
	p := &Pool{b: b}
	if o.Encrypt {
		if o.KeyFile == "" {
			return nil, fmt.Errorf("init encrypted pool at %s: %w: no key file path given", b.Location(), ErrNoKey)
		}
		key, err := writeNewKeyFile(o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("init pool at %s: %w", b.Location(), err)
		}
		k, err := deriveKeys(key)
		if err != nil {
			return nil, err
		}
		p.keys = k
		id.Digest = digestKeyed
		id.Encryption = &identityEncryption{Cipher: cipherXChaCha, KDF: kdfBLAKE3, KeyCheck: k.keyCheck(id.ID)}
	}
	p.id = id
	js, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return nil, err
	}
	js = append(js, '\n')
	err = b.Put(ctx, IdentityName, bytes.NewReader(js), int64(len(js)))
	if err == nil {
		err = p.Sync(ctx)
	}
	if err != nil {
		if o.Encrypt {
			os.Remove(o.KeyFile) // the key protects nothing yet
		}
		return nil, fmt.Errorf("init pool at %s: write %s: %w", b.Location(), IdentityName, err)
	}
	return p, nil
}

// Open opens the pool on b. A missing or unreadable identity is
// ErrIdentity (wrong or missing storage); an encrypted pool needs its key
// file (ErrNoKey, ErrWrongKey).
func Open(ctx context.Context, b Backend, o OpenOptions) (*Pool, error) {
	raw, err := readAll(ctx, b, IdentityName, 64<<10)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: no cairn pool at %s (%s missing): wrong or missing storage", ErrIdentity, b.Location(), IdentityName)
		}
		return nil, fmt.Errorf("%w: cannot read %s at %s: %w", ErrIdentity, IdentityName, b.Location(), err)
	}
	id, err := parseIdentity(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s at %s: %v", ErrIdentity, IdentityName, b.Location(), err)
	}
	p := &Pool{b: b, id: *id}
	if err := p.ExpectID(o.ExpectID); o.ExpectID != "" && err != nil {
		return nil, err
	}
	if id.Encryption != nil {
		if o.KeyFile == "" {
			return nil, fmt.Errorf("%w: pool at %s is encrypted; give its key file", ErrNoKey, b.Location())
		}
		key, err := readKeyFile(o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("open pool at %s: %w", b.Location(), err)
		}
		k, err := deriveKeys(key)
		if err != nil {
			return nil, err
		}
		if !k.matches(id.ID, id.Encryption.KeyCheck) {
			return nil, fmt.Errorf("%w: key file %s does not belong to pool %s at %s", ErrWrongKey, o.KeyFile, id.ID, b.Location())
		}
		p.keys = k
	}
	return p, nil
}

// ExpectID returns ErrIdentity unless the pool's ID is id.
func (p *Pool) ExpectID(id string) error {
	if !strings.EqualFold(p.id.ID, id) {
		return fmt.Errorf("%w: storage at %s holds pool %s, expected pool %s: wrong storage", ErrIdentity, p.b.Location(), p.id.ID, id)
	}
	return nil
}

// ID returns the pool's UUID.
func (p *Pool) ID() string { return p.id.ID }

// Backend returns the backend the pool is stored on.
func (p *Pool) Backend() Backend { return p.b }

// Encrypted reports whether objects are encrypted and digests keyed.
func (p *Pool) Encrypted() bool { return p.keys != nil }

// Location returns the backend location for messages (no secrets).
func (p *Pool) Location() string { return p.b.Location() }

// Created returns when the pool was initialised.
func (p *Pool) Created() time.Time { return p.id.Created }

// Hash returns the digest of data in this pool: BLAKE3-256, keyed when the
// pool is encrypted.
func (p *Pool) Hash(data []byte) Digest {
	if p.keys != nil {
		return p.keys.hash(data)
	}
	return plainSum(data)
}

// ObjectName returns the backend name of the object d: objects/ab/cd/<hex>.
func (p *Pool) ObjectName(d Digest) string { return ObjectName(d) }

// ObjectName returns the backend name of the object d: objects/ab/cd/<hex>.
func ObjectName(d Digest) string {
	h := d.String()
	return objectsPrefix + h[0:2] + "/" + h[2:4] + "/" + h
}

// Put stores data as an object of the given kind and returns its digest.
// It is idempotent: when the object exists nothing is written and added
// is false. Safe for concurrent use; concurrent Puts of one digest write
// once.
func (p *Pool) Put(ctx context.Context, kind Kind, data []byte) (Digest, bool, error) {
	d := p.Hash(data)
	added, err := p.PutDigest(ctx, kind, d, data)
	return d, added, err
}

// PutDigest is Put for a caller that already computed d = p.Hash(data).
// A wrong d stores an object that Get will report as corrupt.
func (p *Pool) PutDigest(ctx context.Context, kind Kind, d Digest, data []byte) (bool, error) {
	added, _, err := p.PutDigestSize(ctx, kind, d, data)
	return added, err
}

// PutDigestSize is PutDigest that also returns the stored size (after
// compression and encryption) of an object it added; 0 when not added.
func (p *Pool) PutDigestSize(ctx context.Context, kind Kind, d Digest, data []byte) (added bool, stored int64, err error) {
	if !kind.valid() {
		return false, 0, fmt.Errorf("put object %s: invalid kind %d", d, kind)
	}
	if len(data) > MaxObjectSize {
		return false, 0, fmt.Errorf("put object %s: %d bytes exceeds the %d-byte object limit", d, len(data), MaxObjectSize)
	}
	f := &p.fly[d[0]&63]
	f.mu.Lock()
	if c, ok := f.m[d]; ok {
		f.mu.Unlock()
		select {
		case <-c.done:
			return false, 0, c.err
		case <-ctx.Done():
			return false, 0, ctx.Err()
		}
	}
	if f.m == nil {
		f.m = make(map[Digest]*flightCall)
	}
	c := &flightCall{done: make(chan struct{})}
	f.m[d] = c
	f.mu.Unlock()

	stored, c.err = p.putObject(ctx, kind, d, data)
	c.added = stored >= 0 && c.err == nil
	f.mu.Lock()
	delete(f.m, d)
	f.mu.Unlock()
	close(c.done)
	return c.added, max(stored, 0), c.err
}

// putObject returns the stored size, or -1 when the object existed.
func (p *Pool) putObject(ctx context.Context, kind Kind, d Digest, data []byte) (int64, error) {
	name := ObjectName(d)
	if _, err := p.b.Stat(ctx, name); err == nil {
		return -1, nil
	} else if !errors.Is(err, ErrNotFound) {
		return 0, fmt.Errorf("put object %s: %w", d, err)
	}
	n, err := p.putEncoded(ctx, name, kind, data, objectBinding(d), nil)
	if err != nil {
		return 0, fmt.Errorf("put object %s: %w", d, err)
	}
	return n, nil
}

func (p *Pool) putEncoded(ctx context.Context, name string, kind Kind, data, binding []byte, trailer *Digest) (int64, error) {
	bp := getBuf(headerSize + nonceSize + len(data) + tagSize + checksumSize + 64)
	defer putBuf(bp)
	var enc []byte
	if p.keys != nil {
		nonce, err := p.keys.nonce()
		if err != nil {
			return 0, err
		}
		enc = encodeObject((*bp)[:0], kind, data, p.keys.aead, nonce, binding, nil)
	} else {
		enc = encodeObject((*bp)[:0], kind, data, nil, nil, binding, trailer)
	}
	*bp = enc[:0]
	return int64(len(enc)), p.b.Put(ctx, name, bytes.NewReader(enc), int64(len(enc)))
}

// getPooled is Get into buffers of readBufs: release (always non-nil)
// returns them once the caller is done with plain. For bulk reads
// (restore), where fresh buffers per object cost more in zeroing, page
// faults and GC than the decoding itself.
func (p *Pool) getPooled(ctx context.Context, d Digest) (kind Kind, plain []byte, release func(), err error) {
	var bufs [2]*[]byte
	nb := 0
	alloc := func(n int) []byte {
		bp := readBufs.get(n)
		if nb < len(bufs) {
			bufs[nb] = bp
			nb++
		}
		return *bp
	}
	release = func() {
		for i := range nb {
			readBufs.put(bufs[i])
			bufs[i] = nil
		}
		nb = 0
	}
	name := ObjectName(d)
	raw, err := readAllInto(ctx, p.b, name, MaxObjectSize+headerSize+nonceSize+tagSize+64, alloc)
	if err != nil {
		release()
		return 0, nil, func() {}, fmt.Errorf("get object %s: %w", d, err)
	}
	kind, plain, err = decodeObjectInto(raw, p.aead(), objectBinding(d), false, nil, alloc)
	if err == nil && p.Hash(plain) != d {
		err = fmt.Errorf("%w: content does not match its digest", ErrCorrupt)
	}
	if err != nil {
		release()
		return 0, nil, func() {}, fmt.Errorf("object %s at %s/%s: %w", d, p.b.Location(), name, err)
	}
	return kind, plain, release, nil
}

// Exists reports whether the object d is stored (a Stat; no read).
func (p *Pool) Exists(ctx context.Context, d Digest) (bool, error) {
	_, err := p.b.Stat(ctx, ObjectName(d))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return false, fmt.Errorf("stat object %s: %w", d, err)
}

// Has is Exists.
func (p *Pool) Has(ctx context.Context, d Digest) (bool, error) { return p.Exists(ctx, d) }

// Get reads, decrypts, decompresses and re-hashes the object d. A missing
// object is ErrNotFound; any mismatch is ErrCorrupt naming the object.
func (p *Pool) Get(ctx context.Context, d Digest) (Kind, []byte, error) {
	name := ObjectName(d)
	raw, err := readAll(ctx, p.b, name, MaxObjectSize+headerSize+nonceSize+tagSize+64)
	if err != nil {
		return 0, nil, fmt.Errorf("get object %s: %w", d, err)
	}
	kind, plain, err := decodeObject(raw, p.aead(), objectBinding(d), false, nil)
	if err == nil && p.Hash(plain) != d {
		err = fmt.Errorf("%w: content does not match its digest", ErrCorrupt)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("object %s at %s/%s: %w", d, p.b.Location(), name, err)
	}
	return kind, plain, nil
}

func (p *Pool) aead() cipher.AEAD {
	if p.keys == nil {
		return nil
	}
	return p.keys.aead
}

// ListObjects calls fn for every stored object, in no particular order.
// Names under objects/ that are not valid object names are skipped.
func (p *Pool) ListObjects(ctx context.Context, fn func(Digest, ObjectInfo) error) error {
	err := p.b.List(ctx, objectsPrefix, func(oi ObjectInfo) error {
		d, ok := parseObjectName(oi.Name)
		if !ok {
			return nil
		}
		return fn(d, oi)
	})
	if err != nil {
		return fmt.Errorf("list objects at %s: %w", p.b.Location(), err)
	}
	return nil
}

func parseObjectName(name string) (Digest, bool) {
	rest, ok := strings.CutPrefix(name, objectsPrefix)
	if !ok || len(rest) != 6+2*DigestSize || rest[2] != '/' || rest[5] != '/' {
		return Digest{}, false
	}
	d, err := ParseDigest(rest[6:])
	if err != nil || rest[0:2] != rest[6:8] || rest[3:5] != rest[8:10] {
		return Digest{}, false
	}
	return d, true
}

// DeleteObject removes the object d. Deleting a missing object is not an
// error.
func (p *Pool) DeleteObject(ctx context.Context, d Digest) error {
	if err := p.b.Delete(ctx, ObjectName(d)); err != nil {
		return fmt.Errorf("delete object %s: %w", d, err)
	}
	return nil
}

// QuarantineName returns where Quarantine puts the object d.
func QuarantineName(d Digest) string { return quarantinePrefix + d.String() }

// Quarantine copies the stored bytes of d, unchanged, to quarantine/<hex>
// and then deletes the original, so the next backup of that content stores
// it again.
func (p *Pool) Quarantine(ctx context.Context, d Digest) error {
	name := ObjectName(d)
	raw, err := readAll(ctx, p.b, name, MaxObjectSize+headerSize+nonceSize+tagSize+64)
	if err != nil {
		return fmt.Errorf("quarantine object %s: %w", d, err)
	}
	q := QuarantineName(d)
	if err := p.b.Put(ctx, q, bytes.NewReader(raw), int64(len(raw))); err != nil {
		return fmt.Errorf("quarantine object %s: write %s: %w", d, q, err)
	}
	if err := p.b.Delete(ctx, name); err != nil {
		return fmt.Errorf("quarantine object %s: delete original: %w", d, err)
	}
	return nil
}

// PutNamed stores data under a name that is not content-addressed, such
// as "snapshots/<id>". It replaces an existing object of that name
// atomically. The object carries the same header as content objects,
// is encrypted when the pool is, and is integrity-checked by GetNamed.
func (p *Pool) PutNamed(ctx context.Context, name string, kind Kind, data []byte) error {
	if err := checkNamed(name); err != nil {
		return err
	}
	if !kind.valid() {
		return fmt.Errorf("put %s: invalid kind %d", name, kind)
	}
	var sum *Digest
	if p.keys == nil {
		s := plainSum(data)
		sum = &s
	}
	if _, err := p.putEncoded(ctx, name, kind, data, namedBinding(name), sum); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	return nil
}

// GetNamed reads and verifies an object written by PutNamed.
func (p *Pool) GetNamed(ctx context.Context, name string) (Kind, []byte, error) {
	if err := checkNamed(name); err != nil {
		return 0, nil, err
	}
	raw, err := readAll(ctx, p.b, name, MaxObjectSize+headerSize+nonceSize+tagSize+checksumSize+64)
	if err != nil {
		return 0, nil, fmt.Errorf("get %s: %w", name, err)
	}
	kind, plain, err := decodeObject(raw, p.aead(), namedBinding(name), p.keys == nil, plainSum)
	if err != nil {
		return 0, nil, fmt.Errorf("%s at %s: %w", name, p.b.Location(), err)
	}
	return kind, plain, nil
}

// DeleteNamed removes a named object; a missing one is not an error.
func (p *Pool) DeleteNamed(ctx context.Context, name string) error {
	if err := checkNamed(name); err != nil {
		return err
	}
	if err := p.b.Delete(ctx, name); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

func checkNamed(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if name == IdentityName || strings.HasPrefix(name, objectsPrefix) || strings.HasPrefix(name, quarantinePrefix) {
		return fmt.Errorf("%w: %q is reserved for the pool itself", ErrInvalidName, name)
	}
	return nil
}

// Sync is the one durability barrier: everything Put before it returns
// is durable after. A no-op on backends that are durable on Put.
func (p *Pool) Sync(ctx context.Context) error {
	if s, ok := p.b.(Syncer); ok {
		if err := s.Sync(ctx); err != nil {
			return fmt.Errorf("sync %s: %w", p.b.Location(), err)
		}
	}
	return nil
}

// readAll reads a whole backend object, refusing more than max bytes.
func readAll(ctx context.Context, b Backend, name string, max int64) ([]byte, error) {
	return readAllInto(ctx, b, name, max, nil)
}

// readAllInto is readAll that reads into alloc(n)[:0] (capacity ≥ n,
// owned by the caller) when it knows the size n it needs, or into new
// memory when alloc is nil.
func readAllInto(ctx context.Context, b Backend, name string, max int64, alloc func(n int) []byte) ([]byte, error) {
	if db, ok := b.(*DirBackend); ok && db.fd >= 0 {
		return db.readWhole(ctx, name, max, alloc)
	}
	rc, err := b.Get(ctx, name, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var data []byte
	if n := sizeHint(rc); n > 0 && n <= max {
		// One allocation of the right size instead of io.ReadAll's growth.
		if alloc != nil {
			data = alloc(int(n) + 1)[:0]
		} else {
			data = make([]byte, 0, n+1)
		}
	}
	data, err = readInto(data, io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrCorrupt, name, max)
	}
	return data, nil
}

// sizeHint returns the size of a Get body when the backend knows it
// (an *os.File, an S3 body), else 0.
func sizeHint(r io.Reader) int64 {
	switch v := r.(type) {
	case interface{ Stat() (os.FileInfo, error) }:
		if fi, err := v.Stat(); err == nil && fi.Mode().IsRegular() {
			return fi.Size()
		}
	case interface{ Size() int64 }:
		return v.Size()
	}
	return 0
}

// readInto appends all of r to buf, growing it only when needed.
func readInto(buf []byte, r io.Reader) ([]byte, error) {
	if cap(buf) == 0 {
		return io.ReadAll(r)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// CleanTemp removes temporary files older than cutoff that a crashed Put
// left behind, when the backend (under its decorators) is a TempCleaner;
// otherwise it does nothing. It returns how many files it removed.
func (p *Pool) CleanTemp(ctx context.Context, cutoff time.Time) (int, error) {
	b := p.b
	for {
		if tc, ok := b.(TempCleaner); ok {
			n, err := tc.CleanTemp(ctx, cutoff)
			if err != nil {
				return n, fmt.Errorf("clean temporary files at %s: %w", p.b.Location(), err)
			}
			return n, nil
		}
		u, ok := b.(interface{ Unwrap() Backend })
		if !ok {
			return 0, nil
		}
		b = u.Unwrap()
	}
}
