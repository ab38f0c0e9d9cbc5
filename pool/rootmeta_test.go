package pool

import (
	"context"
	"encoding/json"
	"io/fs"
	"testing"
	"time"
)

// TestRootDirMetadata: the root directory's own metadata survives the
// manifest round trip and shows in Lookup(".") and SnapshotFS Stat(".").
func TestRootDirMetadata(t *testing.T) {
	ctx := context.Background()
	p, b := structPool(t)
	mt := time.Date(2021, 5, 6, 7, 8, 9, 123456789, time.UTC).UnixNano()
	rootIn := Entry{
		Type: TypeDir, Mode: fs.ModeSticky | 0o750, UID: 1001, GID: 1002, User: "alice", Group: "staff", ModTime: mt,
		Xattrs: map[string][]byte{"user.note": []byte("root\x00bytes")}, Extra: map[string]string{"smb.attrs": "0x10"},
	}
	w, err := p.NewWriter(ctx, SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(ctx, ".", rootIn, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(ctx, "sub", Entry{Type: TypeDir, Mode: 0o700}, nil); err != nil {
		t.Fatal(err)
	}
	m, err := w.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check := func(where string, e Entry) {
		t.Helper()
		if e.Name != "." || e.Type != TypeDir || e.Mode != fs.ModeSticky|0o750 || e.UID != 1001 || e.GID != 1002 ||
			e.User != "alice" || e.Group != "staff" || e.ModTime != mt || e.Subtree != m.Root ||
			string(e.Xattrs["user.note"]) != "root\x00bytes" || e.Extra["smb.attrs"] != "0x10" {
			t.Fatalf("%s: root entry %+v", where, e)
		}
	}
	check("manifest", m.RootDir())
	e, err := p.Lookup(ctx, m.Root, ".")
	if err != nil {
		t.Fatal(err)
	}
	check("Lookup", e)

	// A fresh process (new Pool on the same directory) reads it back.
	p2, err := Open(ctx, b, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := p2.Snapshot(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	check("reread manifest", m2.RootDir())
	fi, err := fs.Stat(p2.SnapshotFS(ctx, m2), ".")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != fs.ModeDir|fs.ModeSticky|0o750 || !fi.ModTime().Equal(time.Unix(0, mt)) {
		t.Fatalf("SnapshotFS Stat(.): mode %v mtime %v", fi.Mode(), fi.ModTime())
	}
	check("SnapshotFS Sys", *fi.Sys().(*Entry))
	e, err = p2.Lookup(ctx, m.Root, ".")
	if err != nil {
		t.Fatal(err)
	}
	check("Lookup after Snapshot", e)
	// In the pool view, the source directory carries the root's metadata.
	pfi, err := fs.Stat(p2.FS(ctx), "h/"+m.Start.Format(SnapshotTimeFormat)+"/s")
	if err != nil || pfi.Mode() != fs.ModeDir|fs.ModeSticky|0o750 {
		t.Fatalf("pool view: %v %v", pfi, err)
	}

	// A manifest without root_entry (an older writer) still reads, and
	// its root is a plain directory.
	old := *m
	old.ID = newSnapshotID(m.Start.Add(time.Second))
	old.RootEntry = nil
	data, _ := json.Marshal(&old)
	if err := p.PutNamed(ctx, snapshotsPrefix+old.ID, KindManifest, data); err != nil {
		t.Fatal(err)
	}
	p3, _ := Open(ctx, b, OpenOptions{})
	mo, err := p3.Snapshot(ctx, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	if re := mo.RootDir(); re.Mode != 0o755 || re.Subtree != m.Root || re.ModTime != m.Start.UnixNano() {
		t.Fatalf("old manifest root: %+v", re)
	}
	if e, _ := p3.Lookup(ctx, m.Root, "."); e.Mode != 0o755 {
		t.Fatalf("old manifest Lookup(.): %+v", e)
	}

	// A root entry that does not match the root tree is corrupt.
	bad := *m
	bad.ID = newSnapshotID(m.Start.Add(2 * time.Second))
	bad.RootEntry, _ = encodeRootEntry(rootIn, "s", Digest{1})
	data, _ = json.Marshal(&bad)
	p.PutNamed(ctx, snapshotsPrefix+bad.ID, KindManifest, data)
	if _, err := p.Snapshot(ctx, bad.ID); err == nil {
		t.Fatal("mismatched root entry accepted")
	}
}
