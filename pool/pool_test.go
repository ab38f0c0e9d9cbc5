package pool_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/pool"
)

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
