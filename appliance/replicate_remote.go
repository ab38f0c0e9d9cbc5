package appliance

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/appliance/retention"
	"github.com/cairn-backup/cairn/pool"
	"github.com/google/uuid"
)

// Appliance-to-appliance replication. The target appliance keeps each
// primary's replica as a directory pool in DATA/replicas/<pool-id>, and
// exposes it under /api/v1/replica/{pool}/ to its own admins and to
// append-only tokens. An append-only token may list, read and add names,
// never delete them or write a name that exists, so a credential stolen
// from the primary cannot destroy the offsite copy. Every PUT, whoever
// sends it, refuses to overwrite.

const settingReplicaTokens = "replica.tokens"

// ReplicaToken is an append-only token as listed (never the secret).
type ReplicaToken struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Pool    string    `json:"pool,omitempty"` // the replica it is bound to
}

type storedReplicaToken struct {
	Name    string    `json:"name"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
	// Pool is the replica the token is bound to: the first pool it
	// is used for. It is refused for any other.
	Pool string `json:"pool,omitempty"`
}

var replicaTokensMu sync.Mutex

// ReplicaTokenCreated answers POST /api/v1/replica-tokens: the token is
// shown once.
type ReplicaTokenCreated struct {
	Name  string `json:"name"`
	Token string `json:"token"`
}

func (s *Server) replicaTokens(ctx context.Context) ([]storedReplicaToken, error) {
	v, ok, err := s.cat.Setting(ctx, settingReplicaTokens)
	if err != nil || !ok {
		return nil, err
	}
	var ts []storedReplicaToken
	if err := json.Unmarshal([]byte(v), &ts); err != nil {
		return nil, fmt.Errorf("stored append-only tokens: %w", err)
	}
	return ts, nil
}

func (s *Server) saveReplicaTokens(ctx context.Context, ts []storedReplicaToken) error {
	b, _ := json.Marshal(ts)
	return s.cat.SetSetting(ctx, settingReplicaTokens, string(b))
}

// appendOnlyPrincipal returns the principal of an append-only token, or
// nil. Such a principal exists only on the replica routes (auth.go).
func (s *Server) appendOnlyPrincipal(ctx context.Context, hash string, path string) *principal {
	rest, ok := strings.CutPrefix(path, "/api/v1/replica/")
	if !ok {
		return nil
	}
	poolID, _, _ := strings.Cut(rest, "/")
	if u, err := uuid.Parse(poolID); err != nil || u.String() != poolID {
		return nil
	}
	replicaTokensMu.Lock()
	defer replicaTokensMu.Unlock()
	ts, err := s.replicaTokens(ctx)
	if err != nil {
		return nil
	}
	for i, t := range ts {
		if t.Hash != hash {
			continue
		}
		switch t.Pool {
		case poolID:
		case "":
			ts[i].Pool = poolID
			if err := s.saveReplicaTokens(ctx, ts); err != nil {
				return nil
			}
			s.log.Info("append-only token bound to the replica it first wrote", "token", t.Name, "pool", poolID)
		default:
			s.log.Warn("append-only token used for another pool than its own", "token", t.Name, "bound", t.Pool, "asked", poolID)
			return nil
		}
		return &principal{Name: "append-only:" + t.Name, Role: "admin", Via: "append-only token", AppendOnly: true}
	}
	return nil
}

func (s *Server) handleReplicaTokenList(r *http.Request, p *principal) (any, error) {
	ts, err := s.replicaTokens(r.Context())
	if err != nil {
		return nil, err
	}
	out := []ReplicaToken{}
	for _, t := range ts {
		out = append(out, ReplicaToken{Name: t.Name, Created: t.Created, Pool: t.Pool})
	}
	return out, nil
}

func (s *Server) handleReplicaTokenCreate(r *http.Request, p *principal) (any, error) {
	var in struct {
		Name string `json:"name"`
	}
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.Name == "" || len(in.Name) > 64 || !pool.ValidName(in.Name) {
		return nil, badRequest("token name %q: want a short name", in.Name)
	}
	ts, err := s.replicaTokens(r.Context())
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		if t.Name == in.Name {
			return nil, &httpError{http.StatusConflict, fmt.Sprintf("append-only token %s exists", in.Name)}
		}
	}
	tok := newToken()
	replicaTokensMu.Lock()
	defer replicaTokensMu.Unlock()
	if ts, err = s.replicaTokens(r.Context()); err != nil {
		return nil, err
	}
	ts = append(ts, storedReplicaToken{Name: in.Name, Hash: hashToken(tok), Created: s.now().UTC()})
	if err := s.saveReplicaTokens(r.Context(), ts); err != nil {
		return nil, err
	}
	s.log.Info("append-only replication token created", "name", in.Name, "by", p.Name)
	return created{ReplicaTokenCreated{Name: in.Name, Token: tok}}, nil
}

func (s *Server) handleReplicaTokenDelete(r *http.Request, p *principal) (any, error) {
	name := r.PathValue("name")
	replicaTokensMu.Lock()
	defer replicaTokensMu.Unlock()
	ts, err := s.replicaTokens(r.Context())
	if err != nil {
		return nil, err
	}
	kept := ts[:0]
	for _, t := range ts {
		if t.Name != name {
			kept = append(kept, t)
		}
	}
	if len(kept) == len(ts) {
		return nil, notFound("no append-only token %q", name)
	}
	return nil, s.saveReplicaTokens(r.Context(), kept)
}

// replicaStore opens (creating with create) the directory of a received
// replica.
var replicaStoreMu sync.Mutex

func (s *Server) replicaStore(r *http.Request, create bool) (*pool.DirBackend, error) {
	id := strings.ToLower(r.PathValue("pool"))
	if u, err := uuid.Parse(id); err != nil || u.String() != id {
		return nil, badRequest("pool %q: want a pool UUID", r.PathValue("pool"))
	}
	dir := filepath.Join(s.dataDir, "replicas", id)
	if !create {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return nil, notFound("no replica of pool %s here", id)
		}
		return pool.NewDirBackend(dir)
	}
	return pool.CreateDirBackend(dir)
}

// replicaName checks an object name sent to a replica: only the pool's
// own kinds of names.
func replicaName(name string) error {
	if err := pool.ValidateName(name); err != nil {
		return badRequest("name %q: %v", name, err)
	}
	if sub, ok := strings.CutPrefix(name, replicaImagesDir+"/"); ok && replicaImageName(sub) {
		return nil // the nested image pool (replicate_images.go)
	}
	if name != pool.IdentityName && !strings.HasPrefix(name, "objects/") && !strings.HasPrefix(name, "snapshots/") {
		return badRequest("name %q: a replica holds only %s, objects/, snapshots/ and the image pool's images/…", name, pool.IdentityName)
	}
	return nil
}

// replicaEntry is one line of a replica listing (NDJSON).
type replicaEntry struct {
	Name  string `json:"name"`
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime"` // unix nanoseconds
}

func (s *Server) handleReplicaRecvList(w http.ResponseWriter, r *http.Request, p *principal) {
	b, err := s.replicaStore(r, false)
	if err != nil {
		if statusOf(err) == http.StatusNotFound { // nothing received yet: empty
			w.Header().Set("Content-Type", "application/x-ndjson")
			return
		}
		s.writeErr(w, r, err)
		return
	}
	defer b.Close()
	prefix := r.URL.Query().Get("prefix")
	w.Header().Set("Content-Type", "application/x-ndjson")
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	err = b.List(r.Context(), prefix, func(oi pool.ObjectInfo) error {
		return enc.Encode(replicaEntry{Name: oi.Name, Size: oi.Size, MTime: oi.ModTime.UnixNano()})
	})
	if err != nil {
		// Headers are out: end with an error line the client refuses.
		enc.Encode(map[string]string{"error": err.Error()})
	}
	bw.Flush()
}

func (s *Server) handleReplicaRecvGet(w http.ResponseWriter, r *http.Request, p *principal) {
	name := r.PathValue("name")
	if err := replicaName(name); err != nil {
		s.writeErr(w, r, err)
		return
	}
	b, err := s.replicaStore(r, false)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	defer b.Close()
	oi, err := b.Stat(r.Context(), name)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.Header().Set("X-Cairn-Size", strconv.FormatInt(oi.Size, 10))
	w.Header().Set("X-Cairn-Mtime", strconv.FormatInt(oi.ModTime.UnixNano(), 10))
	if r.Method == http.MethodHead {
		return
	}
	off, _ := strconv.ParseInt(r.URL.Query().Get("off"), 10, 64)
	length := int64(-1)
	if v := r.URL.Query().Get("len"); v != "" {
		length, _ = strconv.ParseInt(v, 10, 64)
	}
	rc, err := b.Get(r.Context(), name, max(off, 0), length)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	io.Copy(w, rc)
}

func (s *Server) handleReplicaRecvPut(w http.ResponseWriter, r *http.Request, p *principal) {
	name := r.PathValue("name")
	if err := replicaName(name); err != nil {
		s.writeErr(w, r, err)
		return
	}
	if r.ContentLength < 0 || r.ContentLength > pool.MaxObjectSize+1<<20 {
		s.writeErr(w, r, badRequest("%s: a Content-Length up to %d bytes is required", name, pool.MaxObjectSize+1<<20))
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, r.ContentLength+1))
	if err != nil || int64(len(data)) != r.ContentLength {
		s.writeErr(w, r, badRequest("%s: body shorter or longer than its Content-Length", name))
		return
	}
	if name != pool.IdentityName && name != replicaImagesDir+"/"+pool.IdentityName && !bytes.HasPrefix(data, []byte("CRNO")) {
		s.writeErr(w, r, badRequest("%s: not a cairn object (bad magic)", name))
		return
	}
	replicaStoreMu.Lock()
	defer replicaStoreMu.Unlock()
	b, err := s.replicaStore(r, true)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	defer b.Close()
	if _, err := b.Stat(r.Context(), name); err == nil {
		s.writeErr(w, r, &httpError{http.StatusConflict, fmt.Sprintf("%s exists: replicas are append-only, nothing is overwritten", name)})
		return
	} else if !errors.Is(err, pool.ErrNotFound) {
		s.writeErr(w, r, err)
		return
	}
	manifest := strings.HasPrefix(name, "snapshots/") || strings.HasPrefix(name, replicaImagesDir+"/images/")
	if manifest {
		// What the manifest references is durable before it is listed
		// (the sender's barrier cannot reach this disk).
		if err := b.Sync(r.Context()); err != nil {
			s.writeErr(w, r, err)
			return
		}
	}
	if err := b.Put(r.Context(), name, bytes.NewReader(data), int64(len(data))); err != nil {
		s.writeErr(w, r, err)
		return
	}
	id, _ := replicaPoolID(r)
	if err := s.verifyReceived(r.Context(), id, b, name); err != nil {
		// A sender cannot plant an object that does not match its name.
		b.Delete(context.WithoutCancel(r.Context()), name)
		s.writeErr(w, r, badRequest("%s refused: %v", name, err))
		return
	}
	if manifest {
		// And the manifest itself.
		if err := b.Sync(r.Context()); err != nil {
			s.writeErr(w, r, err)
			return
		}
	}
	if strings.HasPrefix(name, "snapshots/") {
		// Then apply this appliance's retention to the replica.
		if err := s.pruneReceived(r.Context(), id, b); err != nil {
			s.log.Warn("retention of a received replica", "pool", id, "err", err)
		}
	}
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) handleReplicaRecvDelete(w http.ResponseWriter, r *http.Request, p *principal) {
	if p.AppendOnly {
		s.writeErr(w, r, forbidden("%s is an append-only token: it cannot delete", p.Name))
		return
	}
	name := r.PathValue("name")
	if err := replicaName(name); err != nil {
		s.writeErr(w, r, err)
		return
	}
	b, err := s.replicaStore(r, false)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	defer b.Close()
	if err := b.Delete(r.Context(), name); err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// remoteBackend is the client side: a pool.Backend over another
// appliance's replica routes.
type remoteBackend struct {
	base  string // https://host:port/api/v1/replica/<pool>
	token string
	hc    *http.Client
}

var _ pool.Backend = (*remoteBackend)(nil)

func newRemoteBackend(location, token, poolID, fingerprint string) (*remoteBackend, error) {
	u, err := url.Parse(strings.TrimRight(location, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("appliance location %q: want https://host:port", location)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if fingerprint != "" {
		want, err := parseFingerprint(fingerprint)
		if err != nil {
			return nil, err
		}
		// A pinned certificate (appliances use self-signed ones): the
		// chain is not checked, the leaf's SHA-256 must match.
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("no certificate")
				}
				if got := sha256.Sum256(cs.PeerCertificates[0].Raw); !bytes.Equal(got[:], want) {
					return fmt.Errorf("%w: the certificate of %s has fingerprint %s, not the pinned %s", errCertPin, u.Host, Fingerprint(cs.PeerCertificates[0].Raw), fingerprint)
				}
				return nil
			}}
	}
	return &remoteBackend{base: u.String() + "/api/v1/replica/" + poolID, token: token, hc: &http.Client{Timeout: 10 * time.Minute, Transport: tr}}, nil
}

// errCertPin: the other appliance's certificate is not the pinned one
// (not transient: retrying cannot help).
var errCertPin = errors.New("TLS certificate mismatch")

// parseFingerprint reads a SHA-256 fingerprint: 64 hex digits, with or
// without colons, any case.
func parseFingerprint(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("%q is not a SHA-256 fingerprint (64 hex digits, colons allowed)", s)
	}
	return b, nil
}

func (b *remoteBackend) Location() string { return b.base }

func (b *remoteBackend) do(ctx context.Context, method, path string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := b.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, errCertPin) {
			return nil, fmt.Errorf("%s %s: %w", method, b.base+path, err)
		}
		return nil, fmt.Errorf("%w: %s %s: %v", pool.ErrTransient, method, b.base+path, err)
	}
	return resp, nil
}

// statusErr turns a failed response into an error of the Backend contract.
func (b *remoteBackend) statusErr(resp *http.Response, what string) error {
	var e apiErr
	json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&e)
	resp.Body.Close()
	msg := fmt.Sprintf("%s at %s: %s: %s", what, b.base, resp.Status, e.Error)
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s", pool.ErrNotFound, msg)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("%w: %s", pool.ErrTransient, msg)
	}
	return errors.New(msg)
}

func objPath(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "/object/" + strings.Join(parts, "/")
}

func (b *remoteBackend) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	sr := &shortReader{r: r}
	resp, err := b.do(ctx, http.MethodPut, objPath(name), sr, size)
	if err != nil {
		return shortInput(sr, size, name, err)
	}
	if resp.StatusCode == http.StatusConflict && strings.HasPrefix(name, "objects/") {
		resp.Body.Close()
		return nil // content-addressed: the same name is the same content
	}
	if resp.StatusCode/100 != 2 {
		return b.statusErr(resp, "put "+name)
	}
	resp.Body.Close()
	return nil
}

func (b *remoteBackend) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	q := fmt.Sprintf("?off=%d", off)
	if length >= 0 {
		q += fmt.Sprintf("&len=%d", length)
	}
	resp, err := b.do(ctx, http.MethodGet, objPath(name)+q, nil, 0)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, b.statusErr(resp, "get "+name)
	}
	return resp.Body, nil
}

func (b *remoteBackend) Stat(ctx context.Context, name string) (pool.ObjectInfo, error) {
	resp, err := b.do(ctx, http.MethodHead, objPath(name), nil, 0)
	if err != nil {
		return pool.ObjectInfo{}, err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return pool.ObjectInfo{}, fmt.Errorf("stat %s at %s: %w", name, b.base, pool.ErrNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return pool.ObjectInfo{}, b.statusErr(resp, "stat "+name)
	}
	size, _ := strconv.ParseInt(resp.Header.Get("X-Cairn-Size"), 10, 64)
	mt, _ := strconv.ParseInt(resp.Header.Get("X-Cairn-Mtime"), 10, 64)
	return pool.ObjectInfo{Name: name, Size: size, ModTime: time.Unix(0, mt)}, nil
}

func (b *remoteBackend) List(ctx context.Context, prefix string, fn func(pool.ObjectInfo) error) error {
	resp, err := b.do(ctx, http.MethodGet, "/list?prefix="+url.QueryEscape(prefix), nil, 0)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return b.statusErr(resp, "list "+prefix)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var e struct {
			replicaEntry
			Error string `json:"error"`
		}
		if err := dec.Decode(&e); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("%w: list %s at %s: %v", pool.ErrTransient, prefix, b.base, err)
		}
		if e.Error != "" {
			return fmt.Errorf("list %s at %s: %s", prefix, b.base, e.Error)
		}
		if err := fn(pool.ObjectInfo{Name: e.Name, Size: e.Size, ModTime: time.Unix(0, e.MTime)}); err != nil {
			return err
		}
	}
}

func (b *remoteBackend) Delete(ctx context.Context, name string) error {
	resp, err := b.do(ctx, http.MethodDelete, objPath(name), nil, 0)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return b.statusErr(resp, "delete "+name)
	}
	resp.Body.Close()
	return nil
}

// Retention of received replicas: the target appliance prunes what it
// receives by its own policy, per replicated pool (settings
// "replica.received.<pool>.retention"). It runs when a manifest arrives,
// inside that PUT and under the replica lock, so the sender — which lists
// the target again before each snapshot (ReplicateOptions.Relist) —
// never counts on an object the GC has just removed. An encrypted
// replica needs its key imported here to be pruned (replicate_images.go).

func receivedRetentionKey(poolID string) string { return "replica.received." + poolID + ".retention" }

func (s *Server) handleReplicaRetentionGet(r *http.Request, p *principal) (any, error) {
	id, err := replicaPoolID(r)
	if err != nil {
		return nil, err
	}
	var rr ReplicaRetention
	if v, ok, err := s.cat.Setting(r.Context(), receivedRetentionKey(id)); err != nil {
		return nil, err
	} else if ok {
		json.Unmarshal([]byte(v), &rr)
	}
	return rr, nil
}

func (s *Server) handleReplicaRetentionPut(r *http.Request, p *principal) (any, error) {
	if p.AppendOnly {
		return nil, forbidden("%s is an append-only token: it cannot change the replica's retention", p.Name)
	}
	id, err := replicaPoolID(r)
	if err != nil {
		return nil, err
	}
	var rr ReplicaRetention
	if err := decode(r, &rr); err != nil {
		return nil, err
	}
	if rr.Last < 0 || rr.Hourly < 0 || rr.Daily < 0 || rr.Weekly < 0 || rr.Monthly < 0 || rr.Yearly < 0 {
		return nil, badRequest("retention: keep counts must not be negative")
	}
	b, _ := json.Marshal(rr)
	if err := s.cat.SetSetting(r.Context(), receivedRetentionKey(id), string(b)); err != nil {
		return nil, err
	}
	s.log.Info("retention of a received replica set", "pool", id, "policy", rr.policy().String(), "by", p.Name)
	return rr, nil
}

func replicaPoolID(r *http.Request) (string, error) {
	id := strings.ToLower(r.PathValue("pool"))
	if u, err := uuid.Parse(id); err != nil || u.String() != id {
		return "", badRequest("pool %q: want a pool UUID", r.PathValue("pool"))
	}
	return id, nil
}

// pruneReceived applies a received replica's retention and collects its
// garbage. The caller holds replicaStoreMu.
func (s *Server) pruneReceived(ctx context.Context, poolID string, b *pool.DirBackend) error {
	v, ok, err := s.cat.Setting(ctx, receivedRetentionKey(poolID))
	if err != nil || !ok {
		return err
	}
	var rr ReplicaRetention
	if err := json.Unmarshal([]byte(v), &rr); err != nil || rr == (ReplicaRetention{}) {
		return err
	}
	rp, err := s.openReceived(ctx, poolID, b)
	if err != nil {
		return err
	}
	groups := map[string][]retention.Snapshot{}
	if err := rp.Snapshots(ctx, func(m *pool.Manifest) error {
		k := m.Host + "\x00" + m.Source
		groups[k] = append(groups[k], retention.Snapshot{ID: m.ID, Time: m.Start, Complete: m.Status == pool.StatusComplete})
		return nil
	}); err != nil {
		return err
	}
	removed := map[string]bool{}
	for _, snaps := range groups {
		_, remove, _ := retention.Apply(rr.policy(), snaps, time.Local)
		for _, sn := range remove {
			if err := rp.DeleteSnapshot(ctx, sn.ID); err != nil {
				return err
			}
			removed[sn.ID] = true
		}
	}
	if len(removed) == 0 {
		return nil
	}
	rep, err := rp.GC(ctx, pool.GCOptions{Now: s.now})
	if err != nil {
		return err
	}
	s.log.Info("received replica pruned", "pool", poolID, "snapshots_removed", len(removed), "objects_swept", rep.Swept, "bytes_swept", rep.SweptBytes)
	// Image versions go with their placeholder snapshots.
	return s.pruneReceivedImages(ctx, poolID, b, removed)
}

// verifyReceived checks what was just written to a received replica: the
// identity must be a pool identity naming this pool; an object must
// decode to its digest and a manifest must decode, when the replica can
// be read (unencrypted, or its key imported: replicate_images.go).
// Names below images/ are the nested image pool's.
func (s *Server) verifyReceived(ctx context.Context, poolID string, b *pool.DirBackend, name string) error {
	if strings.HasPrefix(name, replicaImagesDir+"/") {
		return s.verifyReceivedImage(ctx, poolID, b, name)
	}
	rp, err := s.openReceived(ctx, poolID, b)
	switch {
	case errors.Is(err, pool.ErrNoKey):
		return nil // encrypted and no key here: the bytes cannot be checked
	case err != nil:
		return err
	}
	switch {
	case strings.HasPrefix(name, "objects/"):
		d, err := pool.ParseDigest(path.Base(name))
		if err != nil || pool.ObjectName(d) != name {
			return fmt.Errorf("not an object name")
		}
		_, _, err = rp.Get(ctx, d)
		return err
	case strings.HasPrefix(name, "snapshots/"):
		_, err := rp.Snapshot(ctx, strings.TrimPrefix(name, "snapshots/"))
		return err
	}
	return nil
}
