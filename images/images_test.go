package images

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

func newStore(t testing.TB, encrypt bool) *Store {
	t.Helper()
	dir := t.TempDir()
	b, err := pool.CreateDirBackend(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	o := pool.InitOptions{}
	if encrypt {
		o = pool.InitOptions{Encrypt: true, KeyFile: filepath.Join(dir, "key")}
	}
	s, err := Init(context.Background(), b, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fill writes block i of img with pseudo-random bytes from seed (AES-CTR,
// fast under -race), or a compressible pattern when seed is negative.
func fill(img []byte, i int, seed uint64) {
	end := min((i+1)*BlockSize, len(img))
	blk := img[i*BlockSize : end]
	if int64(seed) < 0 {
		pat := fmt.Appendf(nil, "cairn image block %d ", i)
		copy(blk, bytes.Repeat(pat, len(blk)/len(pat)+1))
		return
	}
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(i))
	c, _ := aes.NewCipher(key[:])
	clear(blk)
	cipher.NewCTR(c, make([]byte, 16)).XORKeyStream(blk, blk)
}

// testImages returns v1 and v2 of an image of 11 blocks (the last one
// short): v2 changes blocks 1 and 7, fills hole 5 and zeroes block 9.
func testImages() (v1, v2 []byte, changedV2 int64) {
	size := 10*BlockSize + 12345
	v1 = make([]byte, size)
	for _, i := range []int{0, 1, 2, 3, 7, 9, 10} {
		fill(v1, i, 1)
	}
	fill(v1, 2, ^uint64(0)) // compressible
	v2 = bytes.Clone(v1)
	fill(v2, 1, 2)
	fill(v2, 7, 2)
	fill(v2, 5, 2)
	clear(v2[9*BlockSize : 10*BlockSize])
	return v1, v2, 3
}

func ingest(t *testing.T, s *Store, img []byte, prev *Manifest) (*Manifest, Stats) {
	t.Helper()
	m, st, err := s.IngestReaderAt(context.Background(), "vm1.disk", bytes.NewReader(img), int64(len(img)),
		IngestOptions{VersionOptions: VersionOptions{Host: "hv1", Source: "sftp:/vm/disk.img", Prev: prev}})
	if err != nil {
		t.Fatal(err)
	}
	return m, st
}

func checkRead(t *testing.T, s *Store, m *Manifest, want []byte, random bool) {
	t.Helper()
	ctx := context.Background()
	// Reload from the pool so the stored manifest is what is read.
	m2, err := s.Load(ctx, m.Name, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	im := s.Open(ctx, m2)
	if im.Size() != int64(len(want)) {
		t.Fatalf("size %d, want %d", im.Size(), len(want))
	}
	all := make([]byte, len(want))
	if n, err := im.ReadAt(all, 0); n != len(want) || (err != nil && err != io.EOF) {
		t.Fatalf("full read: %d, %v", n, err)
	}
	if sha256.Sum256(all) != sha256.Sum256(want) {
		t.Fatalf("version %s: full read differs", m.ID)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		if len(want) == 0 || !random {
			break
		}
		wg.Go(func() {
			r := rand.New(rand.NewPCG(7, uint64(g)))
			for range 6 {
				off := r.Int64N(int64(len(want)))
				if g == 0 {
					off = int64(r.IntN(11))*BlockSize - 3 // across block boundaries
					off = max(off, 0)
				}
				n := 1 + r.IntN(BlockSize+BlockSize/2)
				buf := make([]byte, n)
				got, err := im.ReadAt(buf, off)
				exp := want[off:min(off+int64(n), int64(len(want)))]
				if got != len(exp) || (got < n) != (err == io.EOF) || (err != nil && err != io.EOF) {
					t.Errorf("ReadAt(%d, %d) = %d, %v; want %d", n, off, got, err, len(exp))
					return
				}
				if !bytes.Equal(buf[:got], exp) {
					t.Errorf("ReadAt(%d, %d): wrong bytes", n, off)
					return
				}
			}
		})
	}
	wg.Wait()
	if n, err := im.ReadAt(make([]byte, 1), int64(len(want))); n != 0 || err != io.EOF {
		t.Fatalf("read at end: %d, %v", n, err)
	}
	fi, err := im.Stat()
	if err != nil || fi.Name() != m.Name+".img" || fi.Size() != int64(len(want)) || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o444 {
		t.Fatalf("stat: %v %v", fi, err)
	}
	if len(want) < 5 {
		return
	}
	if _, err := im.Seek(-5, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	tail, _ := io.ReadAll(im)
	if !bytes.Equal(tail, want[len(want)-5:]) {
		t.Fatal("Seek/Read of the tail differs")
	}
}

func TestVersionsDedupReadGC(t *testing.T) {
	ctx := context.Background()
	for _, enc := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "encrypted"}[enc]
		t.Run(name, func(t *testing.T) {
			s := newStore(t, enc)
			v1, v2, changed := testImages()
			m1, st1 := ingest(t, s, v1, nil)
			if st1.Blocks != 11 || st1.ZeroBlocks != 4 || st1.Stored != 7 || st1.Skipped != 0 {
				t.Fatalf("v1 stats %+v", st1)
			}
			if m1.DataBlocks() != 7 || m1.NumBlocks() != 11 {
				t.Fatalf("v1 manifest: %d data of %d blocks", m1.DataBlocks(), m1.NumBlocks())
			}
			m2, st2 := ingest(t, s, v2, m1)
			if st2.Stored != changed || st2.Skipped != 4 || st2.ZeroBlocks != 4 || st2.BytesRead != int64(len(v2)) {
				t.Fatalf("v2 stats %+v: want %d stored, 4 skipped, 4 zero", st2, changed)
			}
			// Without a basis the unchanged blocks dedup by digest.
			_, st3 := ingest(t, s, v2[:len(v2)-12345], nil)
			if st3.Stored != 0 || st3.Skipped != 6 {
				t.Fatalf("v3 stats %+v: want nothing stored", st3)
			}
			checkRead(t, s, m2, v2, true)
			if enc {
				return // the rest does not depend on encryption (and pure-Go XChaCha is slow under -race)
			}
			checkRead(t, s, m1, v1, true)

			objects := func() map[pool.Digest]bool {
				got := map[pool.Digest]bool{}
				s.p.ListObjects(ctx, func(d pool.Digest, _ pool.ObjectInfo) error { got[d] = true; return nil })
				return got
			}
			before := objects()
			if len(before) != 10 {
				t.Fatalf("%d block objects, want 10", len(before))
			}
			// v1-only blocks: 1, 7 and 9.
			only := map[pool.Digest]bool{}
			for _, i := range []int64{1, 7, 9} {
				d, _, _ := m1.Block(i)
				only[d] = true
			}
			if err := s.Delete(ctx, m1.Name, m1.ID); err != nil {
				t.Fatal(err)
			}
			rep, err := s.GC(ctx, pool.GCOptions{})
			if err != nil || rep.Swept != 0 || rep.Kept != 3 {
				t.Fatalf("gc within the grace period: %+v, %v", rep, err)
			}
			later := func() time.Time { return time.Now().Add(2 * time.Hour) }
			rep, err = s.GC(ctx, pool.GCOptions{DryRun: true, Now: later})
			if err != nil || rep.Swept != 3 || rep.Versions != 2 || len(objects()) != 10 {
				t.Fatalf("dry run: %+v, %v", rep, err)
			}
			rep, err = s.GC(ctx, pool.GCOptions{Now: later})
			if err != nil || rep.Swept != 3 {
				t.Fatalf("gc: %+v, %v", rep, err)
			}
			after := objects()
			for d := range before {
				if after[d] == only[d] {
					t.Errorf("block %s: present=%v after GC, v1-only=%v", d, after[d], only[d])
				}
			}
			checkRead(t, s, m2, v2, false)
			crep, err := s.Check(ctx, pool.CheckOptions{ReadData: true})
			if err != nil || !crep.OK() || crep.ReadObjects != 7 || crep.Versions != 2 {
				t.Fatalf("check after gc: %v, %v", crep.String(), err)
			}
		})
	}
}

func TestCheckFindsCorruptAndMissing(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, false)
	v1, _, _ := testImages()
	m, _ := ingest(t, s, v1, nil)
	bad, _, _ := m.Block(3)
	gone, _, _ := m.Block(10)
	path := filepath.Join(s.p.Location(), filepath.FromSlash(pool.ObjectName(bad)))
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0x40
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.p.DeleteObject(ctx, gone); err != nil {
		t.Fatal(err)
	}
	// A reader never returns the damaged bytes.
	_, err = s.Open(ctx, m).ReadAt(make([]byte, 10), 3*BlockSize+5)
	if !errors.Is(err, pool.ErrCorrupt) {
		t.Fatalf("read of corrupt block: %v", err)
	}
	// Structure only: the missing block.
	rep, err := s.Check(ctx, pool.CheckOptions{})
	if err != nil || len(rep.Missing) != 1 || rep.Missing[0] != gone || len(rep.Corrupt) != 0 {
		t.Fatalf("structure check: %s %+v, %v", rep.String(), rep, err)
	}
	rep, err = s.Check(ctx, pool.CheckOptions{ReadData: true})
	if err != nil || len(rep.Corrupt) != 1 || rep.Corrupt[0] != bad || rep.OK() {
		t.Fatalf("read-data check: %s, %v", rep.String(), err)
	}
	uses := map[int64]bool{}
	for _, u := range rep.Affected {
		if u.Name != m.Name || u.ID != m.ID {
			t.Errorf("affected %+v", u)
		}
		uses[u.Block] = true
	}
	if len(uses) != 2 || !uses[3] || !uses[10] {
		t.Fatalf("affected blocks %v, want 3 and 10", uses)
	}
	if _, err := os.Stat(filepath.Join(s.p.Location(), filepath.FromSlash(pool.QuarantineName(bad)))); err != nil {
		t.Fatalf("corrupt block not quarantined: %v", err)
	}
	// The next ingest of that content heals the pool.
	_, st := ingest(t, s, v1, m)
	if st.Stored != 2 {
		t.Fatalf("healing ingest stored %d blocks, want 2", st.Stored)
	}
	if rep, err := s.Check(ctx, pool.CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check after heal: %s, %v", rep.String(), err)
	}
	checkRead(t, s, m, v1, false)

	// A damaged manifest is reported, and GC refuses to sweep.
	mpath := filepath.Join(s.p.Location(), "images", m.Name, m.ID)
	raw, _ = os.ReadFile(mpath)
	raw[30] ^= 1
	os.WriteFile(mpath, raw, 0o600)
	rep, err = s.Check(ctx, pool.CheckOptions{})
	if err != nil || len(rep.BadVersions) != 1 {
		t.Fatalf("check with bad manifest: %s, %v", rep.String(), err)
	}
	if _, err := s.GC(ctx, pool.GCOptions{Grace: -1}); !errors.Is(err, pool.ErrCorrupt) {
		t.Fatalf("gc with a bad manifest: %v", err)
	}
}

type shortReader struct {
	r    io.ReaderAt
	size int64
}

func (s shortReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.size {
		return 0, io.EOF
	}
	if rest := s.size - off; int64(len(p)) > rest {
		n, _ := s.r.ReadAt(p[:rest], off)
		return n, io.EOF
	}
	return s.r.ReadAt(p, off)
}

func TestSourceChanged(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, false)
	v1, _, _ := testImages()
	cases := map[string]struct {
		r    io.ReaderAt
		size int64
	}{
		"truncated": {shortReader{bytes.NewReader(v1), int64(len(v1)) - 100}, int64(len(v1))},
		"grew":      {bytes.NewReader(v1), int64(len(v1)) - 100},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := s.IngestReaderAt(ctx, "x", c.r, c.size, IngestOptions{})
			if !errors.Is(err, ErrSourceChanged) {
				t.Fatalf("err %v, want ErrSourceChanged", err)
			}
		})
	}
	n := 0
	s.Versions(ctx, func(VersionRef) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d versions committed by failed ingests", n)
	}
}

// A version writer's basis stays intact through a GC even when the basis
// manifest is deleted meanwhile.
func TestGCKeepsWriterBlocks(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, false)
	v1, _, _ := testImages()
	m1, _ := ingest(t, s, v1, nil)
	w, err := s.NewVersion(ctx, m1.Name, m1.Size, VersionOptions{Prev: m1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, m1.Name, m1.ID); err != nil {
		t.Fatal(err)
	}
	rep, err := s.GC(ctx, pool.GCOptions{Grace: -1})
	if err != nil || rep.Swept != 0 || rep.KeptInUse != 7 {
		t.Fatalf("gc during a write: %+v, %v", rep, err)
	}
	for i := range m1.NumBlocks() {
		if err := w.Reuse(i); err != nil {
			t.Fatal(err)
		}
	}
	m2, st, err := w.Commit(ctx)
	if err != nil || st.Reused != 7 {
		t.Fatalf("commit: %+v, %v", st, err)
	}
	checkRead(t, s, m2, v1, false)
	if rep, err := s.GC(ctx, pool.GCOptions{Grace: -1}); err != nil || rep.Swept != 0 {
		t.Fatalf("gc after commit: %+v, %v", rep, err)
	}
}

func TestOpenRefusesFilePool(t *testing.T) {
	ctx := context.Background()
	b, err := pool.CreateDirBackend(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Init(ctx, b, pool.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, b, pool.OpenOptions{}, nil); !errors.Is(err, ErrNotImagePool) {
		t.Fatalf("open file pool as images: %v", err)
	}
	s := newStore(t, false)
	if _, err := Open(ctx, s.p.Backend(), pool.OpenOptions{ExpectID: s.p.ID()}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestNames(t *testing.T) {
	for _, n := range []string{"", ".", "..", ".x", "a/b", "a b", "a\x00", string(make([]byte, 129))} {
		if validName(n) == nil {
			t.Errorf("name %q accepted", n)
		}
	}
	for _, n := range []string{"vm1.disk", "web_1-root", "A"} {
		if err := validName(n); err != nil {
			t.Errorf("name %q refused: %v", n, err)
		}
	}
	id := newVersionID(time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC))
	if validID(id) != nil || id[:16] != "20261123T200000." {
		t.Errorf("version id %q", id)
	}
}

func TestEmptyImage(t *testing.T) {
	s := newStore(t, false)
	m, st := ingest(t, s, nil, nil)
	if st.Blocks != 0 || m.NumBlocks() != 0 {
		t.Fatalf("empty image: %+v", st)
	}
	checkRead(t, s, m, []byte{}, true)
}
