package sshsrc

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
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/images"
	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
)

type countConn struct {
	net.Conn
	read atomic.Int64
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func dial(t *testing.T, srv *testenv.SSHServer) (*ssh.Client, *countConn) {
	t.Helper()
	nc, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	cc := &countConn{Conn: nc}
	conn, chans, reqs, err := ssh.NewClientConn(cc, srv.Addr, srv.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	c := ssh.NewClient(conn, chans, reqs)
	t.Cleanup(func() { c.Close() })
	return c, cc
}

func newStore(t *testing.T) *images.Store {
	t.Helper()
	b, err := pool.CreateDirBackend(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	s, err := images.Init(context.Background(), b, pool.InitOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeBlock writes pseudo-random block i (AES-CTR keyed by seed) to f.
func writeBlock(t *testing.T, f *os.File, i int64, n int, seed uint64) {
	t.Helper()
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(i))
	c, _ := aes.NewCipher(key[:])
	buf := make([]byte, n)
	cipher.NewCTR(c, make([]byte, 16)).XORKeyStream(buf, buf)
	if _, err := f.WriteAt(buf, i*images.BlockSize); err != nil {
		t.Fatal(err)
	}
}

func imageDigest(t *testing.T, s *images.Store, m *images.Manifest) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, s.Open(context.Background(), m)); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func fileDigest(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return [32]byte(h.Sum(nil))
}

// TestDifferentialPull: a 100-block sparse image (30 data blocks and a
// short tail), then 1% of its blocks rewritten: only that block crosses
// the wire.
func TestDifferentialPull(t *testing.T) {
	testenv.Need(t, "split", "sha256sum", "dd", "stat")
	srv := testenv.SSHD(t)
	ctx := context.Background()
	s := newStore(t)
	path := filepath.Join(srv.Dir, "vm.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const blocks = 100
	size := int64(blocks-1)*images.BlockSize + 1000
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int64{0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99} { // 11 data blocks, the last one short
		writeBlock(t, f, i, min(images.BlockSize, int(size-i*images.BlockSize)), 1)
	}
	c, cc := dial(t, srv)
	var calls, last int64
	progress := func(fetched, _, _ int64) { calls++; last = fetched }
	m1, r1, err := Pull(ctx, c, s, "vm", Options{Path: path, Version: images.VersionOptions{Host: "hv1"}, Progress: progress})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Fetched != 11 || r1.ZeroBlocks != 89 || r1.Stored != 11 || m1.Size != size || m1.HostHash != images.HashSHA256 {
		t.Fatalf("v1: %+v", r1)
	}
	if imageDigest(t, s, m1) != fileDigest(t, path) {
		t.Fatal("v1 reads back different from the file")
	}
	if calls != 11 || last != 11 {
		t.Fatalf("progress: %d calls, last %d", calls, last)
	}

	writeBlock(t, f, 40, images.BlockSize, 2) // 1 of 100 blocks: data
	before := cc.read.Load()
	start := time.Now()
	m2, r2, err := Pull(ctx, c, s, "vm", Options{Path: path, Version: images.VersionOptions{Host: "hv1", Prev: m1}})
	if err != nil {
		t.Fatal(err)
	}
	wire := cc.read.Load() - before
	t.Logf("v2 (1%% of blocks changed): %d bytes on the wire (block data %d, listing %d) for a %d-byte image with %d bytes allocated, in %v",
		wire, r2.DataBytes, r2.ListingBytes, size, int64(11)*images.BlockSize, time.Since(start).Round(time.Millisecond))
	if r2.Fetched != 1 || r2.DataBytes != images.BlockSize || r2.Stored != 1 || r2.Reused != 10 || r2.ZeroBlocks != 89 {
		t.Fatalf("v2: %+v", r2)
	}
	if wire < images.BlockSize || wire > images.BlockSize+256<<10 {
		t.Fatalf("v2 moved %d bytes over the wire; want one 4 MiB block plus < 256 KiB", wire)
	}
	if imageDigest(t, s, m2) != fileDigest(t, path) {
		t.Fatal("v2 reads back different from the file")
	}
	if imageDigest(t, s, m1) == imageDigest(t, s, m2) {
		t.Fatal("v1 changed")
	}

	// Nothing changed: nothing but the listing crosses.
	before = cc.read.Load()
	_, r3, err := Pull(ctx, c, s, "vm", Options{Path: path, Version: images.VersionOptions{Prev: m2}})
	if err != nil || r3.Fetched != 0 || r3.Stored != 0 {
		t.Fatalf("v3: %+v, %v", r3, err)
	}
	if wire := cc.read.Load() - before; wire > 64<<10 {
		t.Fatalf("unchanged pull moved %d bytes", wire)
	}

}

func TestPullErrors(t *testing.T) {
	testenv.Need(t, "split", "sha256sum", "dd", "stat")
	srv := testenv.SSHD(t)
	ctx := context.Background()
	s := newStore(t)
	c, _ := dial(t, srv)
	path := filepath.Join(srv.Dir, "small.img")
	os.WriteFile(path, bytes.Repeat([]byte("x"), 5000), 0o600)

	if _, _, err := Pull(ctx, c, s, "vm", Options{Path: "relative.img"}); err == nil {
		t.Error("relative path accepted")
	}
	if _, _, err := Pull(ctx, c, s, "vm", Options{Path: filepath.Join(srv.Dir, "missing")}); !errors.Is(err, ErrRemoteTool) {
		t.Errorf("missing file: %v", err)
	}
	// A name with a quote is passed as one word, not run.
	odd := filepath.Join(srv.Dir, "it's $(touch pwned).img")
	os.WriteFile(odd, []byte("hello"), 0o600)
	m, _, err := Pull(ctx, c, s, "odd", Options{Path: odd})
	if err != nil || m.Size != 5 {
		t.Fatalf("odd name: %v", err)
	}
	if _, err := os.Stat(filepath.Join(srv.Dir, "pwned")); err == nil {
		t.Fatal("the path was run as a command")
	}

	// The pre/post commands run around the pull.
	mark := filepath.Join(srv.Dir, "marks")
	_, _, err = Pull(ctx, c, s, "odd", Options{Path: odd, Version: images.VersionOptions{Prev: m},
		PreCommand: "echo pre >> " + mark, PostCommand: "echo post >> " + mark})
	if got, _ := os.ReadFile(mark); err != nil || string(got) != "pre\npost\n" {
		t.Fatalf("pre/post: %q, %v", got, err)
	}
	if _, _, err := Pull(ctx, c, s, "odd", Options{Path: odd, PreCommand: "exit 4"}); !errors.Is(err, ErrRemoteTool) {
		t.Fatalf("failing pre-command: %v", err)
	}
	// The source shrinks between the listing and the block stream: a
	// truncated read, nothing committed.
	big := filepath.Join(srv.Dir, "big.img")
	bf, _ := os.Create(big)
	writeBlock(t, bf, 0, images.BlockSize, 1)
	writeBlock(t, bf, 1, 100, 1)
	bf.Close()
	afterListing = func() { os.Truncate(big, images.BlockSize+10) }
	_, _, err = Pull(ctx, c, s, "big", Options{Path: big})
	afterListing = nil
	if !errors.Is(err, images.ErrSourceChanged) {
		t.Fatalf("truncated during the pull: %v", err)
	}

	// A host that floods its listing is cut off at the first bad line.
	old := hashTool
	hashTool = "yes"
	_, rep, err := Pull(ctx, c, s, "vm", Options{Path: path})
	if !errors.Is(err, ErrRemoteTool) || rep.ListingBytes > 64<<20 {
		t.Fatalf("flooding listing: %v after %d bytes", err, rep.ListingBytes)
	}
	hashTool = "no-such-sum"
	defer func() { hashTool = old }()
	_, _, err = Pull(ctx, c, s, "vm", Options{Path: path})
	if !errors.Is(err, ErrRemoteTool) || !strings.Contains(err.Error(), "no-such-sum: not found") {
		t.Fatalf("missing tool: %v", err)
	}
	n := 0
	s.Versions(ctx, func(images.VersionRef) error { n++; return nil })
	if n != 2 {
		t.Fatalf("%d versions; failed pulls must commit nothing", n)
	}
}

func listing(size int64, hashes ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "size %d\n", size)
	for _, h := range hashes {
		b.WriteString(h + "  -\n")
	}
	fmt.Fprintf(&b, "size %d\nend 0\n", size)
	return b.String()
}

func TestParseListing(t *testing.T) {
	h := strings.Repeat("ab", 32)
	good := listing(images.BlockSize+1, h, h)
	size, hs, err := parseListing([]byte(good))
	if err != nil || size != images.BlockSize+1 || len(hs) != 2 || hs[1][0] != 0xab {
		t.Fatalf("good listing: %d %d %v", size, len(hs), err)
	}
	if _, hs, err := parseListing([]byte(listing(0))); err != nil || len(hs) != 0 {
		t.Fatalf("empty image: %v", err)
	}
	bad := map[string]string{
		"too few hashes":  listing(images.BlockSize+1, h),
		"too many hashes": listing(10, h, h),
		"upper hex":       listing(10, strings.ToUpper(h)),
		"short hash":      listing(10, h[:62]),
		"file name":       strings.Replace(listing(10, h), "  -", "  /etc/x", 1),
		"negative size":   strings.Replace(listing(10, h), "size 10", "size -10", 1),
		"huge size":       listing(1 << 62),
		"size changed":    strings.Replace(listing(10, h), "size 10\nend", "size 11\nend", 1),
		"split failed":    strings.Replace(listing(10, h), "end 0", "end 1", 1),
		"no newline":      strings.TrimSuffix(listing(10, h), "\n"),
		"garbage":         "hello\n",
		"nothing":         "",
		"control":         listing(10, h) + "\x1b[2J\n",
	}
	for name, in := range bad {
		_, _, err := parseListing([]byte(in))
		if !errors.Is(err, ErrRemoteTool) && !errors.Is(err, images.ErrSourceChanged) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

func FuzzParseListing(f *testing.F) {
	h := strings.Repeat("0f", 32)
	f.Add([]byte(listing(images.BlockSize+1, h, h)))
	f.Add([]byte(listing(0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		size, hs, err := parseListing(b)
		if err != nil {
			return
		}
		if size < 0 || size > images.MaxImageSize || int64(len(hs)) != (size+images.BlockSize-1)/images.BlockSize {
			t.Fatalf("accepted size %d with %d hashes", size, len(hs))
		}
	})
}

func TestMain(m *testing.M) {
	testenv.KillLeftovers()
	os.Exit(m.Run())
}

// TestParallelHashing: the host hashes ranges at once (HostJobs) with the
// same result as one stream, and leaves no temporary files behind.
func TestParallelHashing(t *testing.T) {
	testenv.Need(t, "split", "sha256sum", "dd", "stat", "mktemp", "nproc")
	srv := testenv.SSHD(t)
	ctx := context.Background()
	path := filepath.Join(srv.Dir, "p.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(29)*images.BlockSize + 77
	f.Truncate(size)
	for _, i := range []int64{0, 1, 5, 13, 14, 22, 29} {
		writeBlock(t, f, i, min(images.BlockSize, int(size-i*images.BlockSize)), 3)
	}
	f.Close()
	leftovers := func() []string {
		var out []string
		ms, _ := filepath.Glob("/tmp/tmp.*/0.rc")
		for _, m := range ms {
			out = append(out, filepath.Dir(m))
		}
		return out
	}
	before := len(leftovers())
	c, _ := dial(t, srv)
	var first *images.Manifest
	for _, jobs := range []int{1, 3, 0, 7} {
		s := newStore(t)
		m, rep, err := Pull(ctx, c, s, "p", Options{Path: path, HostJobs: jobs})
		if err != nil {
			t.Fatalf("jobs %d: %v", jobs, err)
		}
		if rep.Fetched != 7 || imageDigest(t, s, m) != fileDigest(t, path) {
			t.Fatalf("jobs %d: %+v", jobs, rep)
		}
		if first == nil {
			first = m
			continue
		}
		for i := range m.NumBlocks() {
			a, _ := first.HostHashOf(i)
			b, _ := m.HostHashOf(i)
			if a != b {
				t.Fatalf("jobs %d: block %d hashes differently", jobs, i)
			}
		}
	}
	if n := len(leftovers()); n > before {
		t.Fatalf("temporary directories left on the host: %v", leftovers())
	}
	// A hash tool that fails in one range fails the pull.
	old := hashTool
	hashTool = "false"
	defer func() { hashTool = old }()
	for _, jobs := range []int{1, 3} {
		if _, _, err := Pull(ctx, c, newStore(t), "p", Options{Path: path, HostJobs: jobs}); !errors.Is(err, ErrRemoteTool) || !strings.Contains(err.Error(), "block hashing with false failed") {
			t.Fatalf("failing tool, %d jobs: %v", jobs, err)
		}
	}
}
