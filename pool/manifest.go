package pool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Snapshot manifests (FORMAT.md §7): JSON objects of KindManifest stored
// by name at snapshots/<id>. The ID sorts by start time.

const snapshotsPrefix = "snapshots/"

// ManifestFormat is the version of the manifest JSON this code writes.
const ManifestFormat = 1

// Snapshot status values.
const (
	StatusComplete = "complete"
	StatusPartial  = "partial" // some entries failed; see Errors
)

// A Manifest describes one snapshot.
type Manifest struct {
	ID         string            `json:"id"`
	Host       string            `json:"host"`
	Source     string            `json:"source"`
	Start      time.Time         `json:"start"`
	End        time.Time         `json:"end"`
	Root       Digest            `json:"root"`
	Status     string            `json:"status"`
	Files      int64             `json:"files"`
	Dirs       int64             `json:"dirs"`
	Bytes      int64             `json:"bytes"`
	BytesNew   int64             `json:"bytes_new"`
	Errors     []string          `json:"errors,omitempty"`
	ErrorCount int               `json:"error_count"`
	Labels     map[string]string `json:"labels,omitempty"`
	Format     int               `json:"format"`
	// RootEntry is the source root directory's own metadata (mode,
	// owner, mtime, xattrs, extra), encoded as a one-entry tree
	// (FORMAT.md §7) whose entry is named after Source and whose subtree
	// is Root. Absent in manifests written before it existed; use the
	// method RootDir to read it.
	RootEntry []byte `json:"root_entry,omitempty"`
	// Checkpoint marks the manifest of a backup still running or cut
	// short (killed) at a checkpoint (FORMAT.md §7): Status is partial
	// and open directories hold only the entries stored by then. The
	// final manifest of the same ID replaces it.
	Checkpoint bool `json:"checkpoint,omitempty"`
}

// RootDir returns the snapshot root directory as an Entry named ".":
// the metadata the puller gave for "." with Subtree = Root. For a
// manifest without a stored root entry (written by an older Cairn) it is
// a plain 0755 directory with the snapshot's start time as its mtime.
func (m *Manifest) RootDir() Entry {
	if e, err := decodeRootEntry(m.RootEntry, m.Root); err == nil && e != nil {
		return *e
	}
	return Entry{Name: ".", Type: TypeDir, Mode: 0o755, ModTime: m.Start.UnixNano(), Subtree: m.Root}
}

// encodeRootEntry stores the root directory's entry as a one-entry tree.
func encodeRootEntry(e Entry, source string, root Digest) ([]byte, error) {
	e.Name, e.Type, e.Subtree = source, TypeDir, root
	e.Content, e.Chunked, e.Size, e.Target, e.Rdev, e.HardLink = Digest{}, false, 0, "", 0, 0
	return appendTree(nil, []Entry{e})
}

// decodeRootEntry returns nil, nil when b is empty.
func decodeRootEntry(b []byte, root Digest) (*Entry, error) {
	if len(b) == 0 {
		return nil, nil
	}
	es, err := DecodeTree(b)
	if err != nil {
		return nil, fmt.Errorf("root entry: %w", err)
	}
	if len(es) != 1 || es[0].Type != TypeDir || es[0].Subtree != root {
		return nil, errors.New("root entry: not one directory entry pointing at the root tree")
	}
	e := es[0]
	e.Name = "."
	return &e, nil
}

// newSnapshotID returns a sortable ID: the start time in UTC, then random.
func newSnapshotID(start time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return start.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

func validSnapshotID(id string) bool {
	return ValidName(id) && !strings.HasPrefix(id, ".tmp-") && !strings.ContainsAny(id, "\\")
}

func (p *Pool) putManifest(ctx context.Context, m *Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("snapshot %s: encode manifest: %w", m.ID, err)
	}
	if err := p.PutNamed(ctx, snapshotsPrefix+m.ID, KindManifest, data); err != nil {
		return fmt.Errorf("snapshot %s: %w", m.ID, err)
	}
	return nil
}

// Snapshot reads and validates the manifest of snapshot id. A missing one
// is ErrNotFound; an unreadable or invalid one ErrCorrupt.
func (p *Pool) Snapshot(ctx context.Context, id string) (*Manifest, error) {
	if !validSnapshotID(id) {
		return nil, fmt.Errorf("snapshot %q: %w", id, ErrInvalidName)
	}
	kind, data, err := p.GetNamed(ctx, snapshotsPrefix+id)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", id, err)
	}
	if kind != KindManifest {
		return nil, fmt.Errorf("snapshot %s: %w: object is a %s", id, ErrCorrupt, kind)
	}
	m := new(Manifest)
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w: %v", id, ErrCorrupt, err)
	}
	switch {
	case m.ID != id:
		err = fmt.Errorf("manifest names snapshot %q", m.ID)
	case m.Format != ManifestFormat:
		err = fmt.Errorf("unknown manifest format %d", m.Format)
	case !ValidName(m.Host) || !ValidName(m.Source):
		err = fmt.Errorf("invalid host %q or source %q", m.Host, m.Source)
	case m.Root.IsZero():
		err = errors.New("no root tree")
	case m.Status != StatusComplete && m.Status != StatusPartial:
		err = fmt.Errorf("unknown status %q", m.Status)
	case m.Checkpoint && m.Status != StatusPartial:
		err = fmt.Errorf("checkpoint manifest with status %q, want partial", m.Status)
	default:
		_, err = decodeRootEntry(m.RootEntry, m.Root)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w: %v", id, ErrCorrupt, err)
	}
	p.rememberRoot(m)
	return m, nil
}

// rememberRoot lets Lookup(root, ".") answer with the root directory's
// real metadata for snapshots this process has written or read.
func (p *Pool) rememberRoot(m *Manifest) {
	if len(m.RootEntry) == 0 {
		return
	}
	st := p.state()
	st.roots.remove(m.Root)
	st.roots.add(m.Root, m.RootDir(), 256+len(m.RootEntry))
}

// SnapshotIDs returns the IDs of all snapshots, sorted (oldest first).
func (p *Pool) SnapshotIDs(ctx context.Context) ([]string, error) {
	var ids []string
	err := p.Backend().List(ctx, snapshotsPrefix, func(oi ObjectInfo) error {
		id := strings.TrimPrefix(oi.Name, snapshotsPrefix)
		if validSnapshotID(id) {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list snapshots at %s: %w", p.Location(), err)
	}
	slices.Sort(ids)
	return ids, nil
}

// Snapshots calls fn for every snapshot, oldest first. An unreadable
// manifest stops the listing with its error (GC must never go on without
// one); Check reports them one by one instead.
func (p *Pool) Snapshots(ctx context.Context, fn func(*Manifest) error) error {
	ids, err := p.SnapshotIDs(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := p.Snapshot(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

// DeleteSnapshot removes a snapshot's manifest. Its objects stay until GC.
func (p *Pool) DeleteSnapshot(ctx context.Context, id string) error {
	if !validSnapshotID(id) {
		return fmt.Errorf("delete snapshot %q: %w", id, ErrInvalidName)
	}
	if err := p.DeleteNamed(ctx, snapshotsPrefix+id); err != nil {
		return fmt.Errorf("delete snapshot %s: %w", id, err)
	}
	return nil
}

// ReadTree reads and decodes the tree object d. Decoded trees are cached;
// callers must not modify the returned slice or its entries' maps.
func (p *Pool) ReadTree(ctx context.Context, d Digest) ([]Entry, error) {
	st := p.state()
	if v, ok := st.trees.get(d); ok {
		return v.([]Entry), nil
	}
	kind, data, err := p.Get(ctx, d)
	if err != nil {
		return nil, err
	}
	if kind != KindTree {
		return nil, fmt.Errorf("object %s: %w: is a %s, want a tree", d, ErrCorrupt, kind)
	}
	es, err := DecodeTree(data)
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", d, err)
	}
	st.trees.add(d, es, len(data)+64*len(es))
	return es, nil
}

// Lookup returns the entry at the slash-separated path below the tree
// root. "." or "" is the root itself (a directory entry named "."): its
// metadata is that of the most recent snapshot with this root tree that
// this process wrote or read (Snapshot, Snapshots, Writer.Finish), else a
// plain 0755 directory. (*Manifest).RootDir is exact; SnapshotFS uses it.
func (p *Pool) Lookup(ctx context.Context, root Digest, path string) (Entry, error) {
	e := Entry{Name: ".", Type: TypeDir, Mode: 0o755, Subtree: root}
	if v, ok := p.state().roots.get(root); ok {
		e = v.(Entry)
	}
	if path == "." || path == "" {
		return e, nil
	}
	for el := range strings.SplitSeq(path, "/") {
		if e.Type != TypeDir {
			return Entry{}, fmt.Errorf("lookup %s: %q is not a directory: %w", path, e.Name, ErrNotFound)
		}
		es, err := p.ReadTree(ctx, e.Subtree)
		if err != nil {
			return Entry{}, fmt.Errorf("lookup %s: %w", path, err)
		}
		i, ok := slices.BinarySearchFunc(es, el, func(x Entry, name string) int { return strings.Compare(x.Name, name) })
		if !ok {
			return Entry{}, fmt.Errorf("lookup %s: %w", path, ErrNotFound)
		}
		e = es[i]
	}
	return e, nil
}
