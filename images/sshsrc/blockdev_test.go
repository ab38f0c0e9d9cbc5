package sshsrc

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/images"
	"github.com/cairn-backup/cairn/internal/testenv"
)

// TestBlockDevicePull pulls a real block device (a loop device over a
// sparse file): its size comes from blockdev, and a changed block written
// through the device is the only one fetched.
func TestBlockDevicePull(t *testing.T) {
	testenv.Need(t, "losetup", "blockdev", "split", "sha256sum", "dd")
	srv := testenv.SSHD(t)
	ctx := context.Background()
	s := newStore(t)
	backing := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(backing)
	if err != nil {
		t.Fatal(err)
	}
	const size = 8 * images.BlockSize
	f.Truncate(size)
	for _, i := range []int64{1, 5, 6} {
		writeBlock(t, f, i, images.BlockSize, 3)
	}
	f.Close()
	out, err := exec.Command("losetup", "-f", "--show", backing).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })

	c, _ := dial(t, srv)
	m1, r1, err := Pull(ctx, c, s, "disk", Options{Path: dev})
	if err != nil {
		t.Fatal(err)
	}
	if m1.Size != size || r1.Fetched != 3 || r1.ZeroBlocks != 5 {
		t.Fatalf("v1 of %s: size %d, %+v", dev, m1.Size, r1)
	}
	if imageDigest(t, s, m1) != fileDigest(t, dev) {
		t.Fatal("v1 differs from the device")
	}
	d, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	writeBlock(t, d, 3, images.BlockSize, 4)
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	d.Close()
	m2, r2, err := Pull(ctx, c, s, "disk", Options{Path: dev, Version: images.VersionOptions{Prev: m1}})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Fetched != 1 || r2.Reused != 3 || r2.DataBytes != images.BlockSize {
		t.Fatalf("v2: %+v", r2)
	}
	if imageDigest(t, s, m2) != fileDigest(t, dev) {
		t.Fatal("v2 differs from the device")
	}
}
