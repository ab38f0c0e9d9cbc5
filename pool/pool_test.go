package pool_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pool/backendtest"
	"github.com/zeebo/blake3"
)

func blake3Sum(b []byte) [32]byte { return blake3.Sum256(b) }

func newDir(t *testing.T) *pool.DirBackend {
	t.Helper()
	b, err := pool.NewDirBackend(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func initPool(t *testing.T, b pool.Backend, encrypt bool) (*pool.Pool, string) {
	t.Helper()
	var kf string
	if encrypt {
		kf = filepath.Join(t.TempDir(), "pool.key")
	}
	p, err := pool.Init(context.Background(), b, pool.InitOptions{Encrypt: encrypt, KeyFile: kf})
	if err != nil {
		t.Fatal(err)
	}
	return p, kf
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func textBytes(n int) []byte {
	var buf bytes.Buffer
	for i := 0; buf.Len() < n; i++ {
		buf.WriteString("line ")
		buf.WriteString(strings.Repeat("abcdefgh"[i%8:], 1+i%5))
		buf.WriteString(" of some compressible text\n")
	}
	return buf.Bytes()[:n]
}

func TestPutGetRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, enc := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[enc], func(t *testing.T) {
			b := newDir(t)
			p, kf := initPool(t, b, enc)
			cases := map[string][]byte{
				"empty":  {},
				"tiny":   []byte("x"),
				"text":   textBytes(300 << 10),
				"random": randBytes(200 << 10),
				"small":  textBytes(100),
			}
			digests := map[string]pool.Digest{}
			for name, data := range cases {
				d, added, err := p.Put(ctx, pool.KindData, data)
				if err != nil || !added {
					t.Fatalf("%s: put: added=%v err=%v", name, added, err)
				}
				if d != p.Hash(data) {
					t.Fatalf("%s: digest mismatch", name)
				}
				digests[name] = d
				if _, added, err := p.Put(ctx, pool.KindData, data); err != nil || added {
					t.Fatalf("%s: second put: added=%v err=%v", name, added, err)
				}
			}
			// Reopen and read back.
			p2, err := pool.Open(ctx, b, pool.OpenOptions{KeyFile: kf, ExpectID: p.ID()})
			if err != nil {
				t.Fatal(err)
			}
			for name, data := range cases {
				kind, got, err := p2.Get(ctx, digests[name])
				if err != nil || kind != pool.KindData || !bytes.Equal(got, data) {
					t.Fatalf("%s: get: kind=%v err=%v equal=%v", name, kind, err, bytes.Equal(got, data))
				}
			}
			// Compressible text must be stored smaller, random not larger than needed.
			fi, err := b.Stat(ctx, p.ObjectName(digests["text"]))
			if err != nil || fi.Size > int64(len(cases["text"]))/2 {
				t.Fatalf("text stored as %d bytes (err %v), want compressed", fi.Size, err)
			}
			fi, _ = b.Stat(ctx, p.ObjectName(digests["random"]))
			if fi.Size > int64(len(cases["random"]))+100 {
				t.Fatalf("random stored as %d bytes", fi.Size)
			}
			n := 0
			if err := p.ListObjects(ctx, func(d pool.Digest, oi pool.ObjectInfo) error {
				n++
				if oi.Name != p.ObjectName(d) || oi.ModTime.IsZero() {
					t.Errorf("list: %v %+v", d, oi)
				}
				return nil
			}); err != nil || n != len(cases) {
				t.Fatalf("list: %d objects, err %v", n, err)
			}
			if err := p.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConcurrentPutSameDigest(t *testing.T) {
	ctx := context.Background()
	p, _ := initPool(t, newDir(t), false)
	data := textBytes(64 << 10)
	var wg sync.WaitGroup
	var mu sync.Mutex
	added := 0
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, a, err := p.Put(ctx, pool.KindData, data)
			if err != nil {
				t.Error(err)
			}
			if a {
				mu.Lock()
				added++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if added != 1 {
		t.Fatalf("added reported %d times, want 1", added)
	}
}

func TestNamed(t *testing.T) {
	ctx := context.Background()
	for _, enc := range []bool{false, true} {
		b := newDir(t)
		p, _ := initPool(t, b, enc)
		data := textBytes(5000)
		if err := p.PutNamed(ctx, "snapshots/abc", pool.KindManifest, data); err != nil {
			t.Fatal(err)
		}
		k, got, err := p.GetNamed(ctx, "snapshots/abc")
		if err != nil || k != pool.KindManifest || !bytes.Equal(got, data) {
			t.Fatalf("enc=%v: get named: %v %v", enc, k, err)
		}
		if _, _, err := p.GetNamed(ctx, "snapshots/missing"); !errors.Is(err, pool.ErrNotFound) {
			t.Fatalf("missing named: %v", err)
		}
		for _, bad := range []string{"../x", "/abs", "objects/ab/cd/x", pool.IdentityName, "a//b"} {
			if err := p.PutNamed(ctx, bad, pool.KindManifest, data); !errors.Is(err, pool.ErrInvalidName) {
				t.Errorf("PutNamed(%q) = %v, want ErrInvalidName", bad, err)
			}
		}
	}
}

func TestInitRefusesExisting(t *testing.T) {
	ctx := context.Background()
	b := newDir(t)
	initPool(t, b, false)
	if _, err := pool.Init(ctx, b, pool.InitOptions{}); !errors.Is(err, pool.ErrExists) {
		t.Fatalf("second init: %v, want ErrExists", err)
	}
	kf := filepath.Join(t.TempDir(), "k")
	os.WriteFile(kf, []byte("keep me"), 0o600)
	if _, err := pool.Init(ctx, newDir(t), pool.InitOptions{Encrypt: true, KeyFile: kf}); !errors.Is(err, pool.ErrExists) {
		t.Fatalf("init over key file: %v, want ErrExists", err)
	}
	if b, _ := os.ReadFile(kf); string(b) != "keep me" {
		t.Fatal("key file overwritten")
	}
}

// objectPath is where the dir backend keeps an object.
func objectPath(b *pool.DirBackend, p *pool.Pool, d pool.Digest) string {
	return filepath.Join(b.Location(), filepath.FromSlash(p.ObjectName(d)))
}

func TestCorruptObjects(t *testing.T) {
	ctx := context.Background()
	for _, enc := range []bool{false, true} {
		b := newDir(t)
		p, _ := initPool(t, b, enc)
		for name, mutate := range map[string]func([]byte) []byte{
			"truncated":   func(b []byte) []byte { return b[:len(b)/2] },
			"empty":       func([]byte) []byte { return nil },
			"bitflip-end": func(b []byte) []byte { b[len(b)-1] ^= 1; return b },
			"bitflip-mid": func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b },
			"kind-edit":   func(b []byte) []byte { b[5] = 2; return b },
			"appended":    func(b []byte) []byte { return append(b, 0) },
		} {
			for _, data := range [][]byte{textBytes(50000), randBytes(50000)} {
				d, _, err := p.Put(ctx, pool.KindData, data)
				if err != nil {
					t.Fatal(err)
				}
				path := objectPath(b, p, d)
				raw, _ := os.ReadFile(path)
				bad := mutate(raw)
				os.WriteFile(path, bad, 0o600)
				_, got, err := p.Get(ctx, d)
				if !errors.Is(err, pool.ErrCorrupt) || got != nil {
					t.Fatalf("enc=%v %s: err=%v", enc, name, err)
				}
				if !strings.Contains(err.Error(), d.String()) || !strings.Contains(err.Error(), b.Location()) {
					t.Fatalf("error does not name object and location: %v", err)
				}
				// Quarantine moves it aside; the next Put heals the pool.
				if err := p.Quarantine(ctx, d); err != nil {
					t.Fatal(err)
				}
				if ok, _ := p.Exists(ctx, d); ok {
					t.Fatal("quarantined object still present")
				}
				if q, err := os.ReadFile(filepath.Join(b.Location(), "quarantine", d.String())); err != nil || !bytes.Equal(q, bad) {
					t.Fatalf("quarantine copy: %v", err)
				}
				if _, added, err := p.Put(ctx, pool.KindData, data); err != nil || !added {
					t.Fatalf("heal: added=%v err=%v", added, err)
				}
				if _, got, err := p.Get(ctx, d); err != nil || !bytes.Equal(got, data) {
					t.Fatalf("after heal: %v", err)
				}
			}
		}
		// Named objects too.
		p.PutNamed(ctx, "snapshots/s", pool.KindManifest, textBytes(3000))
		path := filepath.Join(b.Location(), "snapshots", "s")
		raw, _ := os.ReadFile(path)
		raw[30] ^= 4
		os.WriteFile(path, raw, 0o600)
		if _, _, err := p.GetNamed(ctx, "snapshots/s"); !errors.Is(err, pool.ErrCorrupt) {
			t.Fatalf("enc=%v: corrupt named: %v", enc, err)
		}
		// An object copied to another digest's name is detected.
		d1, _, _ := p.Put(ctx, pool.KindData, []byte("one"))
		d2, _, _ := p.Put(ctx, pool.KindData, []byte("two"))
		raw, _ = os.ReadFile(objectPath(b, p, d1))
		os.WriteFile(objectPath(b, p, d2), raw, 0o600)
		if _, _, err := p.Get(ctx, d2); !errors.Is(err, pool.ErrCorrupt) {
			t.Fatalf("enc=%v: swapped object: %v", enc, err)
		}
		if _, _, err := p.Get(ctx, p.Hash([]byte("never stored"))); !errors.Is(err, pool.ErrNotFound) {
			t.Fatalf("missing object: %v", err)
		}
	}
}

func TestIdentityErrors(t *testing.T) {
	ctx := context.Background()
	// Missing identity: wrong or missing storage, naming the location.
	b := newDir(t)
	_, err := pool.Open(ctx, b, pool.OpenOptions{})
	if !errors.Is(err, pool.ErrIdentity) || !strings.Contains(err.Error(), b.Location()) || !strings.Contains(err.Error(), pool.IdentityName) {
		t.Fatalf("missing identity: %v", err)
	}
	p, _ := initPool(t, b, false)
	// Another pool's ID.
	if _, err := pool.Open(ctx, b, pool.OpenOptions{ExpectID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}); !errors.Is(err, pool.ErrIdentity) || !strings.Contains(err.Error(), p.ID()) {
		t.Fatalf("wrong id: %v", err)
	}
	if err := p.ExpectID(p.ID()); err != nil {
		t.Fatal(err)
	}
	// Damaged or foreign identity files.
	idPath := filepath.Join(b.Location(), pool.IdentityName)
	good, _ := os.ReadFile(idPath)
	for name, content := range map[string]string{
		"garbage":     "\x00\x01not json",
		"foreign":     `{"format":"restic","version":1}`,
		"future":      strings.Replace(string(good), `"version": 1`, `"version": 9`, 1),
		"bad uuid":    strings.Replace(string(good), p.ID(), "not-a-uuid", 1),
		"half":        string(good[:len(good)/2]),
		"mixed crypt": strings.Replace(string(good), `"blake3-256"`, `"keyed-blake3-256"`, 1),
	} {
		os.WriteFile(idPath, []byte(content), 0o600)
		if _, err := pool.Open(ctx, b, pool.OpenOptions{}); !errors.Is(err, pool.ErrIdentity) {
			t.Errorf("%s identity: %v", name, err)
		}
	}
	// Unreadable identity (a directory in its place) is ErrIdentity too.
	os.Remove(idPath)
	os.Mkdir(idPath, 0o700)
	if _, err := pool.Open(ctx, b, pool.OpenOptions{}); !errors.Is(err, pool.ErrIdentity) {
		t.Errorf("unreadable identity: %v", err)
	}
	// A backend that fails to read is ErrIdentity and keeps the cause.
	f := backendtest.NewFaulty(newDir(t))
	initPool(t, f, false)
	f.FailNext(backendtest.OpGet, 1, syscall.EACCES)
	if _, err := pool.Open(ctx, f, pool.OpenOptions{}); !errors.Is(err, pool.ErrIdentity) || !errors.Is(err, syscall.EACCES) {
		t.Errorf("unreadable backend: %v", err)
	}
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	b := newDir(t)
	p, kf := initPool(t, b, true)
	if fi, err := os.Stat(kf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	id, _ := os.ReadFile(filepath.Join(b.Location(), pool.IdentityName))
	key, _ := os.ReadFile(kf)
	if bytes.Contains(id, bytes.TrimSpace(key)) || !bytes.Contains(id, []byte("key_check")) {
		t.Fatal("identity holds the key or lacks the key check")
	}
	data := textBytes(10000)
	d, _, err := p.Put(ctx, pool.KindData, data)
	if err != nil {
		t.Fatal(err)
	}
	if d == pool.Digest(blake3Sum(data)) {
		t.Fatal("encrypted pool uses unkeyed digests")
	}
	if _, err := pool.Open(ctx, b, pool.OpenOptions{}); !errors.Is(err, pool.ErrNoKey) {
		t.Fatalf("no key: %v", err)
	}
	if _, err := pool.Open(ctx, b, pool.OpenOptions{KeyFile: filepath.Join(t.TempDir(), "absent")}); !errors.Is(err, pool.ErrNoKey) {
		t.Fatalf("absent key file: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(junk, []byte("hunter2\n"), 0o600)
	if _, err := pool.Open(ctx, b, pool.OpenOptions{KeyFile: junk}); !errors.Is(err, pool.ErrNoKey) {
		t.Fatalf("junk key file: %v", err)
	}
	// Another pool's key: ErrWrongKey, never a garbage read.
	_, otherKey := initPool(t, newDir(t), true)
	if _, err := pool.Open(ctx, b, pool.OpenOptions{KeyFile: otherKey}); !errors.Is(err, pool.ErrWrongKey) {
		t.Fatalf("wrong key: %v", err)
	}
	p2, err := pool.Open(ctx, b, pool.OpenOptions{KeyFile: kf})
	if err != nil || !p2.Encrypted() {
		t.Fatal(err)
	}
	if _, got, err := p2.Get(ctx, d); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reopened: %v", err)
	}
	// The stored object does not contain the plaintext.
	raw, _ := os.ReadFile(objectPath(b, p, d))
	if bytes.Contains(raw, data[:40]) {
		t.Fatal("plaintext in encrypted object")
	}
	// Init without a key file path.
	if _, err := pool.Init(ctx, newDir(t), pool.InitOptions{Encrypt: true}); !errors.Is(err, pool.ErrNoKey) {
		t.Fatalf("encrypt without key file: %v", err)
	}
}

func TestNoSpace(t *testing.T) {
	ctx := context.Background()
	f := backendtest.NewFaulty(newDir(t))
	p, _ := initPool(t, f, false)
	keep := textBytes(10000)
	dk, _, err := p.Put(ctx, pool.KindData, keep)
	if err != nil {
		t.Fatal(err)
	}
	f.SetSpaceLimit(100 << 10)
	var perr error
	var stored []pool.Digest
	for i := 0; i < 10 && perr == nil; i++ {
		var d pool.Digest
		d, _, perr = p.Put(ctx, pool.KindData, randBytes(40<<10))
		if perr == nil {
			stored = append(stored, d)
		}
	}
	if !errors.Is(perr, syscall.ENOSPC) || !strings.Contains(perr.Error(), "no space left on device") || !strings.Contains(perr.Error(), "objects/") {
		t.Fatalf("ENOSPC error not clear: %v", perr)
	}
	if len(stored) != 2 {
		t.Fatalf("stored %d objects before ENOSPC, want 2", len(stored))
	}
	if err := p.PutNamed(ctx, "snapshots/x", pool.KindManifest, randBytes(200<<10)); !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "snapshots/x") {
		t.Fatalf("named ENOSPC: %v", err)
	}
	// Everything written before is intact.
	f.SetSpaceLimit(-1)
	for _, d := range append(stored, dk) {
		if _, _, err := p.Get(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDeleteAndList(t *testing.T) {
	ctx := context.Background()
	b := newDir(t)
	p, _ := initPool(t, b, false)
	var ds []pool.Digest
	for i := range 20 {
		d, _, _ := p.Put(ctx, pool.KindData, []byte(strings.Repeat("x", i)))
		ds = append(ds, d)
	}
	p.PutNamed(ctx, "snapshots/a", pool.KindManifest, []byte("m"))
	// Junk under objects/ is not listed as an object.
	os.WriteFile(filepath.Join(b.Location(), "objects", "README"), []byte("junk"), 0o600)
	for _, d := range ds[:5] {
		if err := p.DeleteObject(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.DeleteObject(ctx, ds[0]); err != nil {
		t.Fatal("deleting a missing object:", err)
	}
	seen := map[pool.Digest]bool{}
	p.ListObjects(ctx, func(d pool.Digest, oi pool.ObjectInfo) error { seen[d] = true; return nil })
	if len(seen) != 15 {
		t.Fatalf("listed %d objects, want 15", len(seen))
	}
	for _, d := range ds[5:] {
		if !seen[d] {
			t.Fatalf("%s not listed", d)
		}
	}
	if err := p.DeleteNamed(ctx, "snapshots/a"); err != nil {
		t.Fatal(err)
	}
}

func benchmarkPut(b *testing.B, data func(i int) []byte) {
	ctx := context.Background()
	be, err := pool.NewDirBackend(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	p, err := pool.Init(ctx, be, pool.InitOptions{})
	if err != nil {
		b.Fatal(err)
	}
	const size = 1 << 20
	b.SetBytes(size)
	b.ResetTimer()
	var n int64
	var mu sync.Mutex
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			n++
			i := n
			mu.Unlock()
			if _, _, err := p.Put(ctx, pool.KindData, data(int(i))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// sourceText returns n bytes of real text: Go sources from GOROOT
// (compresses about 4:1, like typical text files).
func sourceText(b *testing.B, n int) []byte {
	var buf bytes.Buffer
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		b.Fatalf("go env GOROOT: %v", err)
	}
	filepath.WalkDir(filepath.Join(strings.TrimSpace(string(goroot)), "src", "net"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".go") && buf.Len() < n {
			data, _ := os.ReadFile(p)
			buf.Write(data)
		}
		return nil
	})
	if buf.Len() < n {
		b.Skip("not enough Go sources for text")
	}
	return buf.Bytes()[:n]
}

// BenchmarkPut measures Put of distinct 1 MiB objects on a local
// directory, from GOMAXPROCS goroutines (as the snapshot writer does).
func BenchmarkPut(b *testing.B) {
	text := sourceText(b, 2<<20)
	random := randBytes(1<<20 + 4096)
	b.Run("compressible", func(b *testing.B) {
		benchmarkPut(b, func(i int) []byte { return text[i%4096 : i%4096+1<<20] })
	})
	b.Run("random", func(b *testing.B) {
		benchmarkPut(b, func(i int) []byte { return random[i%4096 : i%4096+1<<20] })
	})
}

// BenchmarkGet measures Get (read, decompress, verify) of 1 MiB objects.
func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	be, err := pool.NewDirBackend(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	p, _ := pool.Init(ctx, be, pool.InitOptions{})
	for name, data := range map[string][]byte{"compressible": sourceText(b, 1<<20), "random": randBytes(1 << 20)} {
		d, _, err := p.Put(ctx, pool.KindData, data)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(1 << 20)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := p.Get(ctx, d); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func TestPutDigestSize(t *testing.T) {
	ctx := context.Background()
	for _, enc := range []bool{false, true} {
		p, _ := initPool(t, newDir(t), enc)
		for _, data := range [][]byte{textBytes(100000), randBytes(5000), nil} {
			d := p.Hash(data)
			added, stored, err := p.PutDigestSize(ctx, pool.KindData, d, data)
			if err != nil || !added {
				t.Fatal(added, err)
			}
			oi, err := p.Backend().Stat(ctx, p.ObjectName(d))
			if err != nil || oi.Size != stored {
				t.Fatalf("enc=%v: stored %d, stat %d (%v)", enc, stored, oi.Size, err)
			}
			if added, stored, err := p.PutDigestSize(ctx, pool.KindData, d, data); added || stored != 0 || err != nil {
				t.Fatalf("second put: %v %d %v", added, stored, err)
			}
		}
	}
}
