package appliance

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/images"
	"github.com/cairn-backup/cairn/internal/testenv"
)

// imageSource is an image-ssh or image-sftp source on a testenv sshd.
func imageSource(t *testing.T, srv *testenv.SSHServer, name, method, path string) SourceInput {
	t.Helper()
	in := sftpSourceInput(t, srv, path, nil)
	in.Name, in.Method = name, method
	return in
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	return b
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return [32]byte(h.Sum(nil))
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// makeExt4 builds a 64 MiB ext4 image at img holding ~24 MiB of known
// files and returns big.bin's digest.
func makeExt4(t *testing.T, img string) [32]byte {
	t.Helper()
	testenv.Need(t, "mkfs.ext4")
	root := t.TempDir()
	big := randBytes(3<<20+123, 7)
	os.WriteFile(filepath.Join(root, "hello.txt"), []byte("hello, image\n"), 0o644)
	os.WriteFile(filepath.Join(root, "big.bin"), big, 0o644)
	os.MkdirAll(filepath.Join(root, "sub"), 0o755)
	os.WriteFile(filepath.Join(root, "sub", "x.dat"), randBytes(200<<10, 8), 0o600)
	for i := range 5 {
		os.WriteFile(filepath.Join(root, fmt.Sprintf("f%d.bin", i)), randBytes(4<<20, uint64(20+i)), 0o644)
	}
	run(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", root, img, "64M")
	return sha256.Sum256(big)
}

var wireRE = regexp.MustCompile(`(\d+) bytes over the wire`)

// jobWire returns the wire bytes an image backup job logged.
func jobWire(t *testing.T, j JobBody) int64 {
	t.Helper()
	for _, ev := range j.Events {
		if m := wireRE.FindStringSubmatch(ev.Message); m != nil {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			return n
		}
	}
	t.Fatalf("job %d logged no wire bytes: %+v", j.ID, j.Events)
	return 0
}

func (e *testEnv) jobOK(j JobBody) JobBody {
	e.t.Helper()
	var full JobBody
	e.must("socket", "GET", fmt.Sprintf("/api/v1/jobs/%d", e.waitJob(j.ID).ID), nil, &full)
	if full.State != catalog.JobDone {
		e.t.Fatalf("job %d (%s): %s: %s; events %+v", full.ID, full.Kind, full.State, full.Error, full.Events)
	}
	return full
}

func (e *testEnv) images(host string) []ImageBody {
	e.t.Helper()
	var out []ImageBody
	e.must("socket", "GET", "/api/v1/images?host="+host, nil, &out)
	return out
}

// TestImageSSHBackupLoopMount is the end-to-end test of issue 9: an ext4
// image with known files is backed up over SSH with differential
// transfer (twice: the second run moves only changed blocks), and over
// SFTP and SMB (source (a)); the restore tree is mounted with real FUSE,
// each image in it is attached read-only to a loop device, mounted, and
// files' digests checked. The
// same bytes come through WebDAV (a range) and the download API (a range
// and a tar), and the older version stays readable.
func TestImageSSHBackupLoopMount(t *testing.T) {
	testenv.NeedRoot(t, "losetup and mount of the FUSE-exposed image")
	testenv.Need(t, "losetup", "mount", "umount", "debugfs", "split", "sha256sum", "dd", "stat")
	srv := testenv.SSHD(t)
	img := filepath.Join(srv.Dir, "disk.img")
	bigSum := makeExt4(t, img)
	v1Sum := fileSum(t, img)

	e := newEnv(t, Config{})
	name := "vm1"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{imageSource(t, srv, "disk", MethodImageSSH, img)}}, nil)
	j1 := e.jobOK(e.backup("vm1"))
	wire1 := jobWire(t, j1)
	list := e.images("vm1")
	if len(list) != 1 || list[0].Size != 64<<20 || list[0].Source != "disk" || !strings.HasSuffix(list[0].Path, "/images/disk.img") {
		t.Fatalf("images after v1: %+v", list)
	}
	// Holes never cross the wire: ~24 MiB of data in 64 MiB.
	if wire1 <= 23<<20 || wire1 >= 40<<20 {
		t.Fatalf("v1 moved %d bytes for a 64 MiB image with ~24 MiB of data", wire1)
	}
	// v1 again, unchanged: only the hash listing crosses the wire. Each
	// version starts in a second of its own: the restore tree names
	// snapshots by the second, and the listing orders them by time.
	nextSecond()
	if w := jobWire(t, e.jobOK(e.backup("vm1"))); w > 256<<10 {
		t.Fatalf("an unchanged image moved %d bytes", w)
	}

	// v2: one new file written into the filesystem.
	newFile := filepath.Join(t.TempDir(), "new.bin")
	os.WriteFile(newFile, randBytes(64<<10, 9), 0o644)
	run(t, "debugfs", "-w", "-R", "write "+newFile+" new.bin", img)
	newSum := fileSum(t, newFile)
	v2Sum := fileSum(t, img)
	nextSecond()
	j2 := e.jobOK(e.backup("vm1"))
	wire2 := jobWire(t, j2)
	// The blocks holding the new file and the metadata it touched, not
	// the image.
	if wire2 > wire1/2 || wire2 < 64<<10 {
		t.Fatalf("v2 moved %d bytes (v1 %d)", wire2, wire1)
	}
	list = e.images("vm1")
	if len(list) != 3 {
		t.Fatalf("images after v2: %+v", list)
	}
	list = []ImageBody{list[0], list[2]}
	if list[0].Time.After(list[1].Time) {
		list[0], list[1] = list[1], list[0]
	}
	t.Logf("wire: v1 %d bytes, v2 %d bytes; stored v2 %d bytes", wire1, wire2, list[1].Stored)

	// Source (a): the same image read over SFTP and from an SMB share.
	smb := testenv.Samba(t)
	raw2, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(smb.Dir, "disk.img"), raw2, 0o644)
	e.must("socket", "PUT", "/api/v1/hosts/vm1/sources/disk-sftp", imageSource(t, srv, "disk-sftp", MethodImageSFTP, img), nil)
	e.must("socket", "PUT", "/api/v1/hosts/vm1/sources/disk-smb", SourceInput{Name: "disk-smb", Method: MethodImageSMB, Path: "/disk.img",
		Options: map[string]string{"host": smb.Host, "port": strconv.Itoa(smb.Port), "share": smb.Share, "user": smb.User},
		Secret:  map[string]string{"password": smb.Password}}, nil)
	var aPaths []string
	for _, src := range []string{"disk-sftp", "disk-smb"} {
		if j := e.backupOf("vm1", src); j.State != catalog.JobDone {
			t.Fatalf("backup of %s: %s %s", src, j.State, j.Error)
		}
	}
	for _, im := range e.images("vm1") {
		if im.Source != "disk" {
			aPaths = append(aPaths, im.Path)
		}
	}
	if len(aPaths) != 2 {
		t.Fatalf("source (a) images: %v", aPaths)
	}

	// The restore tree over real FUSE.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.s.cfg.Mount = filepath.Join(t.TempDir(), "mnt")
	if err := e.s.startMount(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.s.stopMount)
	fuseImg := filepath.Join(e.s.cfg.Mount, list[1].Path)
	if ents, err := os.ReadDir(filepath.Join(e.s.cfg.Mount, "vm1", "latest", "images")); err != nil || len(ents) == 0 {
		t.Fatalf("vm1/latest/images: %v %v", ents, err)
	}
	if fi, err := os.Stat(fuseImg); err != nil || fi.Size() != 64<<20 {
		t.Fatalf("FUSE image: %v %v", fi, err)
	}
	if got := fileSum(t, fuseImg); got != v2Sum {
		t.Fatal("the FUSE image differs from the source image")
	}
	// The placeholder's own directory is hidden; images/ is there.
	ents, err := os.ReadDir(filepath.Dir(filepath.Dir(fuseImg)))
	if err != nil || len(ents) != 1 || ents[0].Name() != "images" {
		t.Fatalf("snapshot time dir: %v %v", ents, err)
	}
	old := filepath.Join(e.s.cfg.Mount, "vm1", list[0].Path[len("vm1/"):])
	if got := fileSum(t, old); got != v1Sum {
		t.Fatalf("v1 through FUSE (%s) differs", old)
	}

	// Each image through FUSE, attached read-only to a loop device and
	// mounted: (b) over SSH, (a) over SFTP and SMB.
	for _, fi := range append([]string{fuseImg}, filepath.Join(e.s.cfg.Mount, aPaths[0]), filepath.Join(e.s.cfg.Mount, aPaths[1])) {
		dev := run(t, "losetup", "-r", "-f", "--show", fi)
		// Detach once: a second "losetup -d" of a number the kernel has
		// handed on would detach another test's device.
		attached, mounted := true, false
		mnt2 := t.TempDir()
		t.Cleanup(func() {
			if mounted {
				exec.Command("umount", mnt2).Run()
			}
			if attached {
				exec.Command("losetup", "-d", dev).Run()
			}
		})
		run(t, "mount", "-t", "ext4", "-o", "ro,noload", dev, mnt2)
		mounted = true
		if got := fileSum(t, filepath.Join(mnt2, "big.bin")); got != bigSum {
			t.Fatalf("big.bin in the loop-mounted FUSE image %s differs", fi)
		}
		if got := fileSum(t, filepath.Join(mnt2, "new.bin")); got != newSum {
			t.Fatalf("new.bin in the loop-mounted FUSE image %s differs", fi)
		}
		run(t, "umount", mnt2)
		mounted = false
		run(t, "losetup", "-d", dev)
		attached = false
	}

	// WebDAV and the download API: random access by range.
	raw, _ := os.ReadFile(img)
	lo, hi := int64(5<<20+17), int64(9<<20+3)
	rng := fmt.Sprintf("bytes=%d-%d", lo, hi)
	for _, path := range []string{
		DAVPrefix + "/" + list[1].Path,
		"/api/v1/snapshots/" + list[1].Snapshot + "/image",
	} {
		req, _ := http.NewRequest("GET", path, nil)
		req.Header.Set("Range", rng)
		w := e.doReq("socket", req)
		if w.Code != http.StatusPartialContent || !bytes.Equal(w.Body.Bytes(), raw[lo:hi+1]) {
			t.Fatalf("GET %s %s: %d, %d bytes", path, rng, w.Code, w.Body.Len())
		}
	}
	w := e.do("socket", "GET", "/api/v1/snapshots/"+list[0].Snapshot+"/image?format=tar", nil)
	tr := tar.NewReader(w.Body)
	hdr, err := tr.Next()
	if err != nil || hdr.Size != 64<<20 {
		t.Fatalf("tar: %v %v", hdr, err)
	}
	h := sha256.New()
	io.Copy(h, tr)
	if [32]byte(h.Sum(nil)) != v1Sum {
		t.Fatal("tar download of v1 differs")
	}
}

// doReq serves a prepared request as as.
func (e *testEnv) doReq(as string, req *http.Request) *httptest.ResponseRecorder {
	e.t.Helper()
	r := httptest.NewRecorder()
	if as == "socket" {
		req = req.WithContext(context.WithValue(req.Context(), peerKey, peer{unix: true, uid: 0}))
	}
	e.s.Handler().ServeHTTP(r, req)
	return r
}

// smallImage: 4 blocks and a tail, block 1 a hole.
func smallImage(seed uint64) []byte {
	b := randBytes(4*images.BlockSize+999, seed)
	clear(b[images.BlockSize : 2*images.BlockSize])
	return b
}

// treeSum reads an image through the appliance's restore tree.
func treeSum(t *testing.T, fsys fs.FS, path string) [32]byte {
	t.Helper()
	f, err := fsys.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return [32]byte(h.Sum(nil))
}

// TestImageFileSources backs up a raw image over SFTP and over SMB: every
// block is read, only the changed block of v2 is stored; both versions
// read back through the restore tree; the pool check and GC cover the
// image pool, and GC removes versions whose snapshots were deleted.
func TestImageFileSources(t *testing.T) {
	ssh := testenv.SSHD(t)
	smb := testenv.Samba(t)
	e := newEnv(t, Config{})
	sftpPath := filepath.Join(ssh.Dir, "vm.img")
	smbSrc := SourceInput{Name: "share-disk", Method: MethodImageSMB, Path: "/vm.img", Options: map[string]string{
		"host": smb.Host, "port": strconv.Itoa(smb.Port), "share": smb.Share, "user": smb.User}, Secret: map[string]string{"password": smb.Password}}
	name := "hyper"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{
		imageSource(t, ssh, "sftp-disk", MethodImageSFTP, sftpPath), smbSrc}}, nil)

	v1 := smallImage(1)
	v2 := append([]byte(nil), v1...)
	copy(v2[3*images.BlockSize:], randBytes(images.BlockSize, 2))
	sums := map[string][32]byte{}
	for k, data := range [][]byte{v1, v2} {
		os.WriteFile(sftpPath, data, 0o600)
		os.WriteFile(filepath.Join(smb.Dir, "vm.img"), data, 0o644)
		e.jobOK(e.backup("hyper"))
		sums[fmt.Sprint(k)] = sha256.Sum256(data)
	}
	list := e.images("hyper")
	if len(list) != 4 {
		t.Fatalf("images: %+v", list)
	}
	tree := e.s.tree()
	e.s.refreshTree()
	// Per source: the older version is v1, the newer v2.
	bySrc := map[string][]ImageBody{}
	for _, im := range list {
		bySrc[im.Source] = append(bySrc[im.Source], im)
	}
	var stored [2]int64
	for src, ims := range bySrc {
		if len(ims) != 2 {
			t.Fatalf("%s: %+v", src, ims)
		}
		if ims[1].Time.Before(ims[0].Time) {
			ims[0], ims[1] = ims[1], ims[0]
		}
		for k, im := range ims {
			if got := treeSum(t, tree, im.Path); got != sums[fmt.Sprint(k)] {
				t.Fatalf("%s v%d read through the tree differs: %x; v1 %x v2 %x; %+v", src, k+1, got, sums["0"], sums["1"], ims)
			}
		}
		stored[0] += ims[0].Stored
		stored[1] += ims[1].Stored
	}
	// v1 stored its 4 data blocks once (the second source dedups against
	// the first), v2 only the changed block.
	if stored[0] < 3*images.BlockSize || stored[0] > 4*images.BlockSize+8192 || stored[1] < images.BlockSize/2 || stored[1] > images.BlockSize+4096 {
		t.Fatalf("stored: v1 %d, v2 %d bytes", stored[0], stored[1])
	}
	var check JobBody
	e.must("socket", "POST", "/api/v1/pool/check", CheckParams{ReadData: true}, &check)
	check = e.jobOK(check)
	var prog struct{ Result CheckResult }
	json.Unmarshal(check.Progress, &prog)
	if r := prog.Result.Images; r == nil || !r.OK || r.Versions != 4 || r.ReadObjects != 5 {
		t.Fatalf("check result: %+v", r)
	}

	// The snapshot's archive download is the image (zip by default, or
	// tar.zst), not the placeholder's empty tree.
	v2snap := bySrc["share-disk"][1]
	w := e.do("socket", "GET", "/api/v1/snapshots/"+v2snap.Snapshot+"/archive/", nil)
	zr, err := zip.NewReader(bytes.NewReader(w.Body.Bytes()), int64(w.Body.Len()))
	if err != nil || len(zr.File) != 1 || !strings.HasSuffix(zr.File[0].Name, "share-disk.img") {
		t.Fatalf("zip archive of an image snapshot: %d %v", w.Code, err)
	}
	rc, _ := zr.File[0].Open()
	h := sha256.New()
	io.Copy(h, rc)
	if [32]byte(h.Sum(nil)) != sums["1"] {
		t.Fatal("zip archive of the image differs")
	}
	w = e.do("socket", "GET", "/api/v1/snapshots/"+v2snap.Snapshot+"/archive/?format=tar.zst", nil)
	zd, err := zstd.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zd)
	if hdr, err := tr.Next(); err != nil || hdr.Size != int64(len(v2)) {
		t.Fatalf("tar.zst archive: %v %v", hdr, err)
	}
	h.Reset()
	io.Copy(h, tr)
	if [32]byte(h.Sum(nil)) != sums["1"] {
		t.Fatal("tar.zst archive of the image differs")
	}
	if w = e.do("socket", "GET", "/api/v1/snapshots/"+v2snap.Snapshot+"/archive/x", nil); w.Code != http.StatusNotFound {
		t.Fatalf("a path inside an image snapshot: %d", w.Code)
	}

	var pb PoolBody
	e.must("socket", "GET", "/api/v1/pool?fresh=1", nil, &pb)
	if pb.Images == nil || pb.Images.Versions != 4 || pb.Images.Objects != 5 || pb.Images.Bytes < 4*images.BlockSize || pb.Images.ID == pb.ID {
		t.Fatalf("pool stats: %+v", pb.Images)
	}
	if m := e.do("socket", "GET", "/metrics", nil); !strings.Contains(m.Body.String(), "cairn_image_pool_versions{pool=\""+pb.Images.ID+"\"} 4") {
		t.Fatalf("metrics lack the image pool:\n%s", m.Body.String())
	}

	// Deleting a snapshot orphans its version: GC removes it after the
	// grace period, with the blocks only it used.
	e.must("socket", "DELETE", "/api/v1/snapshots/"+bySrc["sftp-disk"][0].Snapshot, nil, nil)
	real := e.s.now
	e.s.now = func() time.Time { return real().Add(2 * time.Hour) }
	var gc JobBody
	e.must("socket", "POST", "/api/v1/pool/gc", GCParams{}, &gc)
	gc = e.jobOK(gc)
	var gprog struct{ Result GCResult }
	json.Unmarshal(gc.Progress, &gprog)
	if r := gprog.Result.Images; r == nil || r.Orphans != 1 || r.Versions != 3 || r.Swept != 0 {
		// The orphan's blocks are all shared with the SMB versions.
		t.Fatalf("gc result: %+v", r)
	}
	// A catalog rebuild from the pool keeps the images' sizes.
	e.must("socket", "POST", "/api/v1/catalog/rebuild", nil, nil)
	if l := e.images("hyper"); len(l) != 3 || l[0].Size != int64(len(v1)) {
		t.Fatalf("images after a catalog rebuild: %+v", l)
	}
	if sn, err := e.s.cat.Snapshot(context.Background(), bySrc["share-disk"][0].Snapshot); err != nil || sn.Files != 1 || sn.Bytes != int64(len(v1)) {
		t.Fatalf("rebuilt row: %+v %v", sn, err)
	}
	store, _ := e.s.imageStore(context.Background(), false)
	n := 0
	store.Versions(context.Background(), func(images.VersionRef) error { n++; return nil })
	if n != 3 {
		t.Fatalf("%d versions after gc", n)
	}
}

// backupOf runs a backup of one source of host and returns the final job.
func (e *testEnv) backupOf(host, source string) JobBody {
	e.t.Helper()
	var j JobBody
	e.must("socket", "POST", "/api/v1/hosts/"+host+"/backup", BackupInput{Sources: []string{source}}, &j)
	var full JobBody
	e.must("socket", "GET", fmt.Sprintf("/api/v1/jobs/%d", e.waitJob(j.ID).ID), nil, &full)
	return full
}

func (e *testEnv) imageVersions() int {
	e.t.Helper()
	store, err := e.s.imageStore(context.Background(), false)
	if err != nil || store == nil {
		e.t.Fatalf("image store: %v", err)
	}
	n := 0
	store.Versions(context.Background(), func(images.VersionRef) error { n++; return nil })
	return n
}

// TestImageRestore writes an image back over SSH (dd) and over SFTP:
// only blocks that differ from what is on the host are written, checked
// by the host's sha256sum, and the result is verified by digest.
func TestImageRestore(t *testing.T) {
	testenv.Need(t, "split", "sha256sum", "dd", "stat", "truncate")
	srv := testenv.SSHD(t)
	src := filepath.Join(srv.Dir, "vm.img")
	data := smallImage(5)
	os.WriteFile(src, data, 0o600)
	want := sha256.Sum256(data)
	e := newEnv(t, Config{})
	name := "vm2"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{imageSource(t, srv, "disk", MethodImageSSH, src)}}, nil)
	e.jobOK(e.backup("vm2"))
	snap := e.images("vm2")[0].Snapshot

	restore := func(in ImageRestoreInput) ImageRestoreResult {
		t.Helper()
		var j JobBody
		e.must("socket", "POST", "/api/v1/images/restore", in, &j)
		j = e.jobOK(j)
		var p struct{ Result ImageRestoreResult }
		json.Unmarshal(j.Progress, &p)
		if !p.Result.Verified {
			t.Fatalf("restore not verified: %+v", p.Result)
		}
		return p.Result
	}
	for _, mode := range []string{"ssh", "sftp"} {
		dst := filepath.Join(srv.Dir, "restored-"+mode+".img")
		// A new file: the 4 data blocks are written, the hole is not.
		if r := restore(ImageRestoreInput{Snapshot: snap, Path: dst, Mode: mode}); r.Written != 4 || r.Blocks != 5 {
			t.Fatalf("%s: first restore %+v", mode, r)
		}
		if fileSum(t, dst) != want {
			t.Fatalf("%s: restored image differs", mode)
		}
		// One block damaged on the host: only it is written again.
		f, _ := os.OpenFile(dst, os.O_WRONLY, 0)
		f.WriteAt([]byte("damage"), 2*images.BlockSize+100)
		f.Close()
		if r := restore(ImageRestoreInput{Snapshot: snap, Path: dst, Mode: mode}); r.Written != 1 || r.WrittenBytes != images.BlockSize {
			t.Fatalf("%s: second restore %+v", mode, r)
		}
		if fileSum(t, dst) != want {
			t.Fatalf("%s: repaired image differs", mode)
		}
	}
	// A restore to a directory on the appliance writes <source>.img,
	// sparse.
	to := filepath.Join(t.TempDir(), "r")
	var rj JobBody
	e.must("socket", "POST", "/api/v1/restores", RestoreInput{Snapshot: snap, To: to}, &rj)
	e.jobOK(rj)
	if fileSum(t, filepath.Join(to, "disk.img")) != want {
		t.Fatal("image restored to the appliance differs")
	}
	if fi, err := os.Stat(filepath.Join(to, "disk.img")); err != nil || fi.Sys().(*syscall.Stat_t).Blocks*512 > 4*images.BlockSize+64<<10 {
		t.Fatalf("image restored to the appliance is not sparse: %v", err)
	}
	// Writing to a host overwrites: admins only.
	op := e.user("op", "operator")
	if w := e.do(op, "POST", "/api/v1/images/restore", ImageRestoreInput{Snapshot: snap, Path: filepath.Join(srv.Dir, "x.img")}); w.Code != http.StatusForbidden {
		t.Fatalf("operator image restore: %d %s", w.Code, w.Body)
	}
	// Bad requests are refused with the reason.
	w := e.do("socket", "POST", "/api/v1/images/restore", ImageRestoreInput{Snapshot: snap, Path: "relative.img"})
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "absolute path") {
		t.Fatalf("relative path: %d %s", w.Code, w.Body)
	}
	w = e.do("socket", "POST", "/api/v1/images/restore", ImageRestoreInput{Snapshot: snap, Path: "/x", Mode: "sftp", Device: true})
	if w.Code != http.StatusBadRequest {
		t.Fatalf("device over sftp: %d %s", w.Code, w.Body)
	}
}

// TestImageRestoreBlockDevice restores an image onto a loop block device
// over SSH, writing only the blocks that differ.
func TestImageRestoreBlockDevice(t *testing.T) {
	testenv.NeedRoot(t, "a loop block device as the restore target")
	testenv.Need(t, "losetup", "blockdev", "split", "sha256sum", "dd", "stat")
	srv := testenv.SSHD(t)
	src := filepath.Join(srv.Dir, "vm.img")
	data := smallImage(6)
	os.WriteFile(src, data, 0o600)
	e := newEnv(t, Config{})
	name := "vm3"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{imageSource(t, srv, "disk", MethodImageSSH, src)}}, nil)
	e.jobOK(e.backup("vm3"))
	snap := e.images("vm3")[0].Snapshot

	backing := filepath.Join(t.TempDir(), "dev.img")
	os.WriteFile(backing, randBytes(6*images.BlockSize, 99), 0o600)
	dev := run(t, "losetup", "-f", "--show", backing)
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	var j JobBody
	e.must("socket", "POST", "/api/v1/images/restore", ImageRestoreInput{Snapshot: snap, Path: dev, Device: true}, &j)
	j = e.jobOK(j)
	var p struct{ Result ImageRestoreResult }
	json.Unmarshal(j.Progress, &p)
	// Every block differs from the random device (the hole too).
	if p.Result.Written != 5 || !p.Result.Verified {
		t.Fatalf("device restore: %+v", p.Result)
	}
	got := make([]byte, len(data))
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.ReadFull(f, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("device content differs (%v)", err)
	}
	// A device smaller than the image is refused before anything is written.
	small := filepath.Join(t.TempDir(), "small.img")
	os.WriteFile(small, make([]byte, images.BlockSize), 0o600)
	dev2 := run(t, "losetup", "-f", "--show", small)
	t.Cleanup(func() { exec.Command("losetup", "-d", dev2).Run() })
	e.must("socket", "POST", "/api/v1/images/restore", ImageRestoreInput{Snapshot: snap, Path: dev2, Device: true}, &j)
	if j = e.waitJob(j.ID); j.State != catalog.JobFailed || !strings.Contains(j.Error, "device has") {
		t.Fatalf("small device: %s %s", j.State, j.Error)
	}
}

// changeAfterFirst changes a remote file after the first block was read.
type changeAfterFirst struct {
	r      io.ReaderAt
	change func()
	done   bool
}

func (c *changeAfterFirst) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	if !c.done {
		c.done = true
		c.change()
	}
	return n, err
}

// TestImageBadInput: a source that grows or shrinks mid-read, a remote
// hash tool that is missing or prints something else, and a block device
// truncated between hashing and fetching each fail the job with a clear
// error, and nothing is committed: the earlier versions still read back.
func TestImageBadInput(t *testing.T) {
	testenv.Need(t, "split", "sha256sum", "dd", "stat", "md5sum")
	srv := testenv.SSHD(t)
	pa, pb := filepath.Join(srv.Dir, "a.img"), filepath.Join(srv.Dir, "b.img")
	da, db := smallImage(11), smallImage(12)
	os.WriteFile(pa, da, 0o600)
	os.WriteFile(pb, db, 0o600)
	e := newEnv(t, Config{})
	name := "bad"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{
		imageSource(t, srv, "a", MethodImageSFTP, pa), imageSource(t, srv, "b", MethodImageSSH, pb)}}, nil)
	e.jobOK(e.backup("bad"))
	good := e.images("bad")
	if len(good) != 2 {
		t.Fatalf("images: %+v", good)
	}
	t.Cleanup(func() { imageHooks.reader, imageHooks.afterListing = nil, nil })

	fail := func(what, source, want string) {
		t.Helper()
		j := e.backupOf("bad", source)
		if j.State != catalog.JobFailed || !strings.Contains(j.Error, want) {
			t.Fatalf("%s: job %s: %q, want an error with %q", what, j.State, j.Error, want)
		}
		if n := e.imageVersions(); n != 2 {
			t.Fatalf("%s: %d image versions, want the 2 good ones", what, n)
		}
	}
	// (a) over SFTP: the file grows during the read.
	imageHooks.reader = func(r io.ReaderAt) io.ReaderAt {
		return &changeAfterFirst{r: r, change: func() {
			f, _ := os.OpenFile(pa, os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("more"))
			f.Close()
		}}
	}
	fail("growing source", "a", "changed or was truncated")
	// ... and shrinks during the read (a truncated read).
	os.WriteFile(pa, da, 0o600)
	imageHooks.reader = func(r io.ReaderAt) io.ReaderAt {
		return &changeAfterFirst{r: r, change: func() { os.Truncate(pa, images.BlockSize+10) }}
	}
	fail("shrinking source", "a", "changed or was truncated")
	imageHooks.reader = nil
	os.WriteFile(pa, da, 0o600)

	// (b) over SSH: the file shrinks between the hash listing and the
	// block stream (block 3 changed, so it is fetched).
	db2 := append([]byte(nil), db...)
	copy(db2[3*images.BlockSize:], randBytes(1000, 13))
	os.WriteFile(pb, db2, 0o600)
	imageHooks.afterListing = func() { os.Truncate(pb, 2*images.BlockSize) }
	fail("truncated block stream", "b", "changed or was truncated")
	imageHooks.afterListing = nil
	os.WriteFile(pb, db, 0o600)

	// The host's hash tool is missing, or prints another format.
	setTool := func(tool string) {
		in := imageSource(t, srv, "b", MethodImageSSH, pb)
		in.Options["hash_tool"] = tool
		e.must("socket", "PUT", "/api/v1/hosts/bad/sources/b", in, nil)
	}
	setTool("no-such-sum")
	fail("missing hash tool", "b", "no-such-sum: not found on the host")
	setTool("md5sum")
	fail("md5sum instead of sha256sum", "b", "is not a sha256sum line")
	setTool("sha256sum; touch /tmp/pwned")
	j := e.backupOf("bad", "b")
	if j.State != catalog.JobFailed || !strings.Contains(j.Error, "hash tool") {
		t.Fatalf("hostile hash tool: %s %q", j.State, j.Error)
	}
	setTool("")

	// Nothing was damaged: the good versions read back, and the next
	// backups work.
	tree := e.s.tree()
	e.s.refreshTree()
	for _, im := range good {
		want := map[string][32]byte{"a": sha256.Sum256(da), "b": sha256.Sum256(db)}[im.Source]
		if got := treeSum(t, tree, im.Path); got != want {
			t.Fatalf("%s: the good version differs after the failures", im.Source)
		}
	}
	e.jobOK(e.backup("bad"))
	if n := e.imageVersions(); n != 4 {
		t.Fatalf("%d versions after a good backup, want 4", n)
	}
}

// TestImageRsync pulls a raw image with the rsync puller from a real
// rsync daemon: only the image file of its directory is taken, and v2
// moves an rsync delta, not the image.
func TestImageRsync(t *testing.T) {
	srv := testenv.Rsyncd(t)
	// The daemon serves Dir read-only; files are written as root.
	img := filepath.Join(srv.Dir, "vm.img")
	v1 := smallImage(21)
	os.WriteFile(img, v1, 0o644)
	for _, other := range []string{"vm.im", "vm.img2", "vm.imh", "xm.img", "other.txt"} {
		os.WriteFile(filepath.Join(srv.Dir, other), []byte("not the image"), 0o644)
	}
	os.MkdirAll(filepath.Join(srv.Dir, "vm.img.d"), 0o755)
	e := newEnv(t, Config{})
	name := "rs"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{{Name: "disk", Method: MethodImageRsync, Path: "/vm.img",
		Options: map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "module": srv.Module}}}}, nil)
	wire1 := jobWire(t, e.jobOK(e.backup("rs")))
	v2 := append([]byte(nil), v1...)
	copy(v2[2*images.BlockSize+5000:], randBytes(3000, 22))
	fi1, _ := os.Stat(img)
	os.WriteFile(img, v2, 0o644)
	// Same size and mtime (a write within the same second): still pulled.
	os.Chtimes(img, fi1.ModTime(), fi1.ModTime())
	wire2 := jobWire(t, e.jobOK(e.backup("rs")))
	t.Logf("rsync wire: v1 %d, v2 %d bytes", wire1, wire2)
	if wire1 < 3*images.BlockSize || wire2 > 512<<10 {
		t.Fatalf("wire: v1 %d, v2 %d bytes", wire1, wire2)
	}
	list := e.images("rs")
	if len(list) != 2 {
		t.Fatalf("images: %+v", list)
	}
	tree := e.s.tree()
	e.s.refreshTree()
	for k, want := range [][]byte{v1, v2} {
		if got := treeSum(t, tree, list[k].Path); got != sha256.Sum256(want) {
			t.Fatalf("v%d through the tree differs", k+1)
		}
	}
	// The placeholder holds only the image file (the next delta's basis).
	pm, err := e.s.pool.Snapshot(context.Background(), list[1].Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	es, err := e.s.pool.ReadTree(context.Background(), pm.Root)
	if err != nil || len(es) != 1 || es[0].Name != "vm.img" {
		t.Fatalf("placeholder tree: %+v %v", es, err)
	}
}

func TestOnlyFile(t *testing.T) {
	if _, err := onlyFile("a[b].img"); err == nil {
		t.Fatal("wildcard characters accepted")
	}
	pats, err := onlyFile("vm.img")
	if err != nil {
		t.Fatal(err)
	}
	// rsync's wildmatch negates a class with ! (or ^); path.Match with ^.
	for i, p := range pats {
		pats[i] = strings.ReplaceAll(p, "[!", "[^")
	}
	for _, n := range []string{"vm.im", "vm.img2", "vm.imh", "xm.img", "v", "vm.img.d"} {
		hit := false
		for _, p := range pats {
			if ok, _ := filepath.Match(strings.TrimPrefix(p, "/"), n); ok {
				hit = true
			}
		}
		if !hit {
			t.Errorf("%s is not excluded", n)
		}
	}
	for _, p := range pats {
		if ok, _ := filepath.Match(strings.TrimPrefix(p, "/"), "vm.img"); ok {
			t.Errorf("pattern %s excludes the image", p)
		}
	}
}

// TestImagePoolEncrypted: with an encrypted file pool, the image pool is
// encrypted too, with its own key file, and images read back.
func TestImagePoolEncrypted(t *testing.T) {
	srv := testenv.SSHD(t)
	data := t.TempDir()
	e := newEnv(t, Config{DataDir: data})
	var st StorageBody
	e.must("socket", "POST", "/api/v1/storage", StorageInput{Kind: "dir", Dir: filepath.Join(t.TempDir(), "pool"), Encrypt: true}, &st)
	img := filepath.Join(srv.Dir, "vm.img")
	raw := smallImage(31)
	os.WriteFile(img, raw, 0o600)
	name := "enc"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{imageSource(t, srv, "disk", MethodImageSFTP, img)}}, nil)
	e.jobOK(e.backup("enc"))
	store, err := e.s.imageStore(context.Background(), false)
	if err != nil || !store.Pool().Encrypted() {
		t.Fatalf("image pool: %v, encrypted %v", err, err == nil && store.Pool().Encrypted())
	}
	if fi, err := os.Stat(filepath.Join(data, imagesKeyName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("image key file: %v %v", fi, err)
	}
	list := e.images("enc")
	e.s.refreshTree()
	if len(list) != 1 || treeSum(t, e.s.tree(), list[0].Path) != sha256.Sum256(raw) {
		t.Fatalf("encrypted image does not read back: %+v", list)
	}
	// The plaintext never reaches the image pool's objects.
	filepath.WalkDir(e.s.imagesLocation(), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, raw[:64]) {
				t.Errorf("%s holds plaintext", p)
			}
		}
		return nil
	})
}

// TestImageSnapshotPlans checks the commands an image-ssh source runs
// for its snapshot presets, and that bad options are refused.
func TestImageSnapshotPlans(t *testing.T) {
	src := &catalog.Source{ID: 7, Path: "/dev/vg0/root", Options: map[string]string{
		"snapshot": "lvm", "lvm_vg": "vg-0", "lvm_lv": "root", "lvm_size": "2G"}}
	p, err := imageSnapshot(src, 42)
	if err != nil {
		t.Fatal(err)
	}
	if p.path != "/dev/mapper/vg--0-cairn--42--7" || p.create != "lvcreate -q -s -n 'cairn-42-7' -L '2G' 'vg-0/root'" ||
		p.remove != "lvremove -q -f 'vg-0/cairn-42-7'" {
		t.Fatalf("lvm plan: %+v", p)
	}
	src.Options = map[string]string{"snapshot": "fsfreeze", "fsfreeze_mount": "/srv"}
	if p, err = imageSnapshot(src, 42); err != nil || p.path != "/dev/vg0/root" || p.create != "fsfreeze -f '/srv'" || p.remove != "fsfreeze -u '/srv'" {
		t.Fatalf("fsfreeze plan: %+v %v", p, err)
	}
	for _, bad := range []map[string]string{
		{"snapshot": "lvm", "lvm_vg": "vg0;reboot", "lvm_lv": "root", "lvm_size": "2G"},
		{"snapshot": "lvm", "lvm_vg": "vg0", "lvm_lv": "root", "lvm_size": "2G'"},
		{"snapshot": "fsfreeze", "fsfreeze_mount": "/"},
		{"snapshot": "fsfreeze", "fsfreeze_mount": "/srv/$(x)"},
		{"snapshot": "zfs"},
	} {
		src.Options = bad
		if _, err := imageSnapshot(src, 1); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
}

// TestImageSSHFsfreeze backs up a mounted ext4 block device over SSH with
// the fsfreeze preset and pre/post commands: the file system is frozen
// during the read and thawed after, and the image mounts with the files.
func TestImageSSHFsfreeze(t *testing.T) {
	testenv.NeedRoot(t, "a loop device, mount and fsfreeze")
	testenv.Need(t, "mkfs.ext4", "losetup", "mount", "umount", "fsfreeze", "blockdev", "split", "sha256sum", "dd")
	srv := testenv.SSHD(t)
	tmp := t.TempDir()
	backing := filepath.Join(tmp, "fs.img")
	bigSum := makeExt4(t, backing)
	dev := run(t, "losetup", "-f", "--show", backing)
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	mnt := filepath.Join(tmp, "mnt")
	os.Mkdir(mnt, 0o755)
	run(t, "mount", dev, mnt)
	t.Cleanup(func() { exec.Command("fsfreeze", "-u", mnt).Run(); exec.Command("umount", mnt).Run() })
	marks := filepath.Join(tmp, "marks")
	in := imageSource(t, srv, "root", MethodImageSSH, dev)
	in.Options["snapshot"], in.Options["fsfreeze_mount"] = "fsfreeze", mnt
	in.Options["pre"], in.Options["post"] = "echo pre >> "+marks, "echo post >> "+marks
	in.Options["ssh_host_key"] = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(srv.HostKey)))
	var frozen bool
	imageHooks.afterListing = func() {
		// Frozen while reading: freezing it again fails (EBUSY).
		frozen = exec.Command("fsfreeze", "-f", mnt).Run() != nil
	}
	t.Cleanup(func() { imageHooks.afterListing = nil })
	name := "fz"
	e := newEnv(t, Config{})
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{in}}, nil)
	e.jobOK(e.backup("fz"))
	if !frozen {
		t.Fatal("the file system was not frozen during the read")
	}
	if b, _ := os.ReadFile(marks); string(b) != "pre\npost\n" {
		t.Fatalf("pre/post marks %q", b)
	}
	if err := os.WriteFile(filepath.Join(mnt, "after"), []byte("thawed"), 0o644); err != nil {
		t.Fatalf("write after the backup: %v", err)
	}
	// The image, copied out of the restore tree, mounts with the files.
	list := e.images("fz")
	e.s.refreshTree()
	f, err := e.s.tree().Open(list[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "copy.img")
	o, _ := os.Create(out)
	io.Copy(o, f.(io.Reader))
	o.Close()
	f.Close()
	dev2 := run(t, "losetup", "-r", "-f", "--show", out)
	t.Cleanup(func() { exec.Command("losetup", "-d", dev2).Run() })
	mnt2 := filepath.Join(tmp, "mnt2")
	os.Mkdir(mnt2, 0o755)
	run(t, "mount", "-t", "ext4", "-o", "ro,noload", dev2, mnt2)
	t.Cleanup(func() { exec.Command("umount", mnt2).Run() })
	if fileSum(t, filepath.Join(mnt2, "big.bin")) != bigSum {
		t.Fatal("big.bin in the frozen image differs")
	}
}

// TestImageConnectionTest: the connection test of image sources logs in,
// reports the host key and the image's size; a missing image fails it.
func TestImageConnectionTest(t *testing.T) {
	srv := testenv.SSHD(t)
	img := filepath.Join(srv.Dir, "vm.img")
	os.WriteFile(img, make([]byte, 12345), 0o600)
	e := newEnv(t, Config{})
	name := "ct"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{
		imageSource(t, srv, "a", MethodImageSSH, img), imageSource(t, srv, "b", MethodImageSFTP, img),
		imageSource(t, srv, "c", MethodImageSSH, img+".missing")}}, nil)
	var out []SourceTestBody
	e.must("socket", "POST", "/api/v1/hosts/ct/test", nil, &out)
	fp := ssh.FingerprintSHA256(srv.HostKey)
	if len(out) != 3 {
		t.Fatalf("tests: %+v", out)
	}
	for _, b := range out[:2] {
		if !b.OK || b.Identity["size"] != "12345" || b.Identity["host_key_fingerprint"] != fp {
			t.Fatalf("test of %s: %+v", b.Source, b)
		}
	}
	if out[2].OK || !strings.Contains(out[2].Error, "not readable") {
		t.Fatalf("test of a missing image: %+v", out[2])
	}
}

// TestImageApplianceKey: an image source without credentials logs in with
// the appliance's key (as onboarding installs it), for the connection
// test and the backup.
func TestImageApplianceKey(t *testing.T) {
	srv := testenv.SSHD(t)
	img := filepath.Join(srv.Dir, "vm.img")
	raw := smallImage(41)
	os.WriteFile(img, raw, 0o600)
	e := newEnv(t, Config{})
	_, pub, err := e.s.applianceKey()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(filepath.Dir(srv.KeyFile), "authorized_keys"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(ssh.MarshalAuthorizedKey(pub))
	f.Close()
	in := imageSource(t, srv, "disk", MethodImageSSH, img)
	in.Secret = nil
	name := "ak"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{in}}, nil)
	var out []SourceTestBody
	e.must("socket", "POST", "/api/v1/hosts/ak/test", nil, &out)
	if len(out) != 1 || !out[0].OK {
		t.Fatalf("connection test with the appliance key: %+v", out)
	}
	e.jobOK(e.backup("ak"))
	e.s.refreshTree()
	if l := e.images("ak"); len(l) != 1 || treeSum(t, e.s.tree(), l[0].Path) != sha256.Sum256(raw) {
		t.Fatalf("images: %+v", l)
	}
}

// TestImagePoolS3: the image pool on S3-compatible storage (Config.Images),
// against the real S3 test server.
func TestImagePoolS3(t *testing.T) {
	s3 := testenv.S3(t)
	srv := testenv.SSHD(t)
	e := newEnv(t, Config{Images: fmt.Sprintf("s3://%s:%s@%s/%s/imgs?region=%s&insecure=1", s3.AccessKey, s3.SecretKey, s3.Endpoint, s3.Bucket, s3.Region)})
	img := filepath.Join(srv.Dir, "vm.img")
	raw := smallImage(51)
	os.WriteFile(img, raw, 0o600)
	name := "s3h"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{imageSource(t, srv, "disk", MethodImageSFTP, img)}}, nil)
	e.jobOK(e.backup("s3h"))
	e.s.refreshTree()
	list := e.images("s3h")
	if len(list) != 1 || treeSum(t, e.s.tree(), list[0].Path) != sha256.Sum256(raw) {
		t.Fatalf("images on S3: %+v", list)
	}
	var objs int
	filepath.WalkDir(filepath.Join(s3.Dir, s3.Bucket, "imgs", "objects"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			objs++
		}
		return nil
	})
	if objs != 4 {
		t.Fatalf("%d block objects in the bucket, want 4", objs)
	}
	var pb PoolBody
	e.must("socket", "GET", "/api/v1/pool", nil, &pb)
	if pb.Images == nil || strings.Contains(pb.Images.Location, s3.SecretKey) {
		t.Fatalf("image pool location %+v", pb.Images)
	}
}

// nextSecond waits for the next wall-clock second, so the snapshot a test
// starts next cannot share its second (and its restore-tree name) with the
// one before.
func nextSecond() {
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
}
