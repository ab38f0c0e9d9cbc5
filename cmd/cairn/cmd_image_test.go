package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cairn-backup/cairn/appliance"
	"github.com/cairn-backup/cairn/fusefs"
	"github.com/cairn-backup/cairn/images"
	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
)

// TestCLIImage drives the image verbs against a real `cairn serve` and
// sshd: an image-ssh source is added and backed up, `image ls` lists it,
// `image download` writes it back sparse and identical, `image restore`
// writes it to the host (only differing blocks); then, with the
// appliance stopped, `pool check` checks the image pool next to the
// pool, and a corrupt block fails it.
func TestCLIImage(t *testing.T) {
	testenv.Need(t, "split", "sha256sum", "dd", "stat", "truncate")
	srv := testenv.SSHD(t)
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	img := filepath.Join(srv.Dir, "vm.img")
	raw := make([]byte, 3*images.BlockSize+500)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < images.BlockSize; i++ {
		raw[i] = byte(r.Uint32())
	}
	copy(raw[2*images.BlockSize:], bytes.Repeat([]byte("cairn "), 1000))
	if err := os.WriteFile(img, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, data)
	defer p.stop(os.Interrupt)
	mustCLI(t, data, "host", "add", "vm", "--method", appliance.MethodImageSSH, "--path", img, "--source", "disk",
		"--opt", "host="+srv.Host, "--opt", "port="+strconv.Itoa(srv.Port), "--opt", "user="+srv.User,
		"--secret-file", "private_key="+srv.KeyFile)
	mustCLI(t, data, "backup", "run", "vm", "--wait")
	var list []appliance.ImageBody
	if err := json.Unmarshal([]byte(mustCLI(t, data, "image", "ls", "vm", "--json")), &list); err != nil || len(list) != 1 {
		t.Fatalf("image ls: %v %+v", err, list)
	}
	if out := mustCLI(t, data, "image", "ls"); !strings.Contains(out, list[0].Path) {
		t.Fatalf("image ls table lacks %s:\n%s", list[0].Path, out)
	}
	dl := filepath.Join(tmp, "dl.img")
	mustCLI(t, data, "image", "download", list[0].Snapshot, "-o", dl)
	if got, _ := os.ReadFile(dl); !bytes.Equal(got, raw) {
		t.Fatal("downloaded image differs")
	}
	// The holes (blocks 1 and 3) stay holes.
	if fi, err := os.Stat(dl); err != nil {
		t.Fatal(err)
	} else if alloc := fi.Sys().(*syscall.Stat_t).Blocks * 512; alloc > 2*images.BlockSize+64<<10 {
		t.Fatalf("downloaded image allocates %d bytes: not sparse", alloc)
	}
	dst := filepath.Join(srv.Dir, "back.img")
	if _, errOut, code := cairnCLI(t, data, "image", "restore", list[0].Snapshot, "--path", dst); code != 0 ||
		!strings.Contains(errOut, "2 of 4 blocks differed and were written") {
		t.Fatalf("image restore: exit %d: %s", code, errOut)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, raw) {
		t.Fatal("restored image differs")
	}
	if _, errOut, code := cairnCLI(t, data, "image", "restore", list[0].Snapshot, "--path", "rel.img"); code == 0 || !strings.Contains(errOut, "absolute path") {
		t.Fatalf("relative restore path: exit %d, %s", code, errOut)
	}
	if out := mustCLI(t, data, "pool", "stats"); !strings.Contains(out, "1 versions, 2 blocks") {
		t.Fatalf("pool stats lack the image pool:\n%s", out)
	}
	p.stop(os.Interrupt)

	// Direct: `cairn mount --pool DATA/pool` shows the image too.
	testenv.NeedRoot(t, "the FUSE mount of cairn mount")
	mp := filepath.Join(tmp, "mnt")
	os.Mkdir(mp, 0o755)
	var stderr lockedBuffer
	cmd := exec.Command(cairnBin, "mount", mp, "--pool", filepath.Join(data, "pool"))
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
			fusefs.ClearStale(mp)
		}
	})
	fuseImg := filepath.Join(mp, list[0].Path)
	waitFor(t, "the image in the mount", func() bool {
		select {
		case <-exited:
			t.Fatalf("cairn mount exited:\n%s", stderr.String())
		default:
		}
		_, err := os.Stat(fuseImg)
		return err == nil
	})
	if got, err := os.ReadFile(fuseImg); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("the image through cairn mount differs (%v)", err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	<-exited

	// Direct: pool check finds DATA/images next to DATA/pool.
	res := cliOK(t, nil, "pool", "check", "--pool", filepath.Join(data, "pool"), "--read-data")
	if !strings.Contains(res.stdout, "images: 1 image versions") || !strings.Contains(res.stdout, "no errors") {
		t.Fatalf("pool check output:\n%s", res.stdout)
	}
	var objs []string
	filepath.WalkDir(filepath.Join(data, "images", "objects"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			objs = append(objs, p)
		}
		return nil
	})
	if len(objs) != 2 {
		t.Fatalf("image pool objects: %v", objs)
	}
	b, _ := os.ReadFile(objs[0])
	b[len(b)-1] ^= 0xff
	os.WriteFile(objs[0], b, 0o600)
	res = cliFail(t, nil, "pool", "check", "--pool", filepath.Join(data, "pool"), "--read-data")
	if !strings.Contains(res.stderr, "image pool") || !strings.Contains(res.stderr, "1 corrupt") {
		t.Fatalf("pool check of a corrupt image block: %s", res.stderr)
	}
}

// TestDirectImagesKey: an encrypted image pool in the appliance layout is
// opened with DATA/images.key, found next to it.
func TestDirectImagesKey(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	b, err := pool.CreateDirBackend(filepath.Join(data, "images"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := images.Init(ctx, b, pool.InitOptions{Encrypt: true, KeyFile: filepath.Join(data, "images.key")}, nil); err != nil {
		t.Fatal(err)
	}
	s, err := directImages(ctx, "", filepath.Join(data, "images"), filepath.Join(data, "pool.key"))
	if err != nil || s == nil || !s.Pool().Encrypted() {
		t.Fatalf("open: %v", err)
	}
	// Next to DATA/pool without --images.
	if s, err := directImages(ctx, filepath.Join(data, "pool"), "", ""); err != nil || s == nil {
		t.Fatalf("sibling: %v", err)
	}
}
