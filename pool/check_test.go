package pool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// objectFile is the on-disk path of object d in a dir backend.
func objectFile(b *DirBackend, d Digest) string {
	return filepath.Join(b.Location(), filepath.FromSlash(ObjectName(d)))
}

func flipByte(t *testing.T, path string, off int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += len(raw)
	}
	raw[off] ^= 0x10
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

func hasUse(rep CheckReport, snap, path string) bool {
	for _, u := range rep.Affected {
		if u.Snapshot == snap && u.Path == path {
			return true
		}
	}
	return false
}

func TestCheckQuarantineHeal(t *testing.T) {
	ctx := context.Background()
	p, b := structPool(t)
	src := t.TempDir()
	genTree(t, src, 6, 40, 5<<20)
	m1 := backupDir(t, ctx, p, src, "h", "s")
	rep, err := p.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || !rep.OK() || rep.ReadObjects != rep.Objects || rep.Snapshots != 1 {
		t.Fatalf("clean pool: %v, %v", rep.String(), err)
	}
	// A bit flip in a small file's object and in one chunk of the big file.
	small := mustLookup(t, p, m1.Root, "d01/e1/f0001.txt")
	big := mustLookup(t, p, m1.Root, "big0.bin")
	refs, err := p.readChunkList(ctx, big.Content)
	if err != nil || len(refs) < 2 {
		t.Fatalf("big0.bin chunks: %d, %v", len(refs), err)
	}
	flipByte(t, objectFile(b, small.Content), -3)
	flipByte(t, objectFile(b, refs[1].d), 100)

	// Structure-only check does not read data: it sees nothing.
	if rep, err := p.Check(ctx, CheckOptions{}); err != nil || !rep.OK() {
		t.Fatalf("structure check: %v, %v", rep.String(), err)
	}
	rep, err = p.Check(ctx, CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Corrupt) != 2 {
		t.Fatalf("read-data check: %s, corrupt %v", rep.String(), rep.Corrupt)
	}
	if !hasUse(rep, m1.ID, "d01/e1/f0001.txt") || !hasUse(rep, m1.ID, "big0.bin") {
		t.Fatalf("affected paths: %+v", rep.Affected)
	}
	for _, d := range []Digest{small.Content, refs[1].d} {
		if _, err := os.Stat(objectFile(b, d)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("corrupt object %s still in objects/: %v", d, err)
		}
		if _, err := os.Stat(filepath.Join(b.Location(), QuarantineName(d))); err != nil {
			t.Fatalf("corrupt object %s not quarantined: %v", d, err)
		}
	}
	// Now the structure check reports them missing, with the same paths.
	rep, err = p.Check(ctx, CheckOptions{})
	if err != nil || len(rep.Missing) != 2 || !hasUse(rep, m1.ID, "big0.bin") {
		t.Fatalf("after quarantine: %s %+v, %v", rep.String(), rep.Affected, err)
	}
	// Reading the damaged file fails clearly instead of returning garbage.
	if _, err := p.SnapshotFS(ctx, m1).(*TreeFS).Open("d01/e1/f0001.txt"); err == nil {
		f, _ := p.SnapshotFS(ctx, m1).Open("d01/e1/f0001.txt")
		if _, err := f.Read(make([]byte, 10)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("read of quarantined content: %v", err)
		}
	}
	// The next backup of the same content stores it again: healed.
	m2 := backupDir(t, ctx, p, src, "h", "s")
	if m2.BytesNew == 0 {
		t.Fatal("second backup stored nothing new")
	}
	rep, err = p.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("after heal: %s, %v", rep.String(), err)
	}
	compareSnapshot(t, ctx, p, m1, src)
}

func TestCheckStructure(t *testing.T) {
	ctx := context.Background()
	p, b := structPool(t)
	src := t.TempDir()
	genTree(t, src, 7, 30)
	m := backupDir(t, ctx, p, src, "h", "s")
	sub := mustLookup(t, p, m.Root, "d02/e1")
	if err := os.Remove(objectFile(b, sub.Subtree)); err != nil {
		t.Fatal(err)
	}
	if err := p.PutNamed(ctx, "snapshots/20260101T000000Z-bad", KindManifest, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	rep, err := p.Check(ctx, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Missing) != 1 || rep.Missing[0] != sub.Subtree || !hasUse(rep, m.ID, "d02/e1") {
		t.Fatalf("missing tree: %s %+v", rep.String(), rep.Affected)
	}
	if len(rep.BadSnapshots) != 1 || !strings.Contains(rep.BadSnapshots[0], "20260101T000000Z-bad") {
		t.Fatalf("bad manifests: %q", rep.BadSnapshots)
	}
	rep, err = p.Check(ctx, CheckOptions{ReadData: true, Percent: 30})
	if err != nil || rep.ReadObjects == 0 || rep.ReadObjects > rep.Objects {
		t.Fatalf("30%% read: %s, %v", rep.String(), err)
	}
}
