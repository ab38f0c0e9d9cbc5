package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cairn-backup/cairn/appliance"
	"github.com/cairn-backup/cairn/images"
	"github.com/cairn-backup/cairn/internal/testenv"
)

// TestCLIImageReplica: an image snapshot replicates to a directory
// target with the rest; `cairn audit` shows it per target; with the
// appliance stopped, the direct image verbs read it from the replica
// with no catalog (ls, download, restore — the SHA-256 of the original),
// `cairn mount` shows it and `pool check` checks the replica's image pool; after a disaster a
// new appliance adopts the replica's pools and `catalog rebuild` brings
// the image back.
func TestCLIImageReplica(t *testing.T) {
	srv := testenv.SSHD(t)
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	img := filepath.Join(srv.Dir, "vm.img")
	raw := make([]byte, 3*images.BlockSize+777)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 2 * images.BlockSize {
		raw[i] = byte(r.Uint32())
	}
	copy(raw[3*images.BlockSize:], bytes.Repeat([]byte("tail"), 100))
	if err := os.WriteFile(img, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	replica := filepath.Join(tmp, "nas")

	p := startServe(t, data)
	mustCLI(t, data, "host", "add", "vm", "--method", appliance.MethodImageSSH, "--path", img, "--source", "disk",
		"--opt", "host="+srv.Host, "--opt", "port="+strconv.Itoa(srv.Port), "--opt", "user="+srv.User,
		"--secret-file", "private_key="+srv.KeyFile)
	mustCLI(t, data, "replica", "add", "nas", "--location", replica)
	mustCLI(t, data, "backup", "run", "vm", "--wait")
	var st appliance.ReplicaTargetStatus
	if err := json.Unmarshal([]byte(mustCLI(t, data, "replica", "sync", "nas", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Snapshots) != 1 || len(st.ImageVersions) != 1 {
		t.Fatalf("replica sync: %+v", st)
	}
	snap := st.Snapshots[0]
	var a appliance.AuditBody
	if err := json.Unmarshal([]byte(mustCLI(t, data, "audit", "--json")), &a); err != nil {
		t.Fatal(err)
	}
	if len(a.Hosts) != 1 || len(a.Hosts[0].Targets) != 2 {
		t.Fatalf("audit: %+v", a)
	}
	for _, ht := range a.Hosts[0].Targets {
		if len(ht.Images) != 1 || ht.Images[0] != snap || len(ht.Missing) != 0 {
			t.Fatalf("audit of %s: %+v", ht.Target, ht)
		}
	}
	if out := mustCLI(t, data, "audit"); !strings.Contains(out, "IMAGES") {
		t.Fatalf("audit table:\n%s", out)
	}
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exit %d:\n%s", code, p.stderr)
	}

	// No appliance, no catalog: the replica alone.
	var rows []imageDirectRow
	if err := json.Unmarshal([]byte(cliOK(t, nil, "image", "ls", "--pool", replica, "--json").stdout), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Snapshot != snap || !rows[0].Present || rows[0].Size != int64(len(raw)) || rows[0].Host != "vm" {
		t.Fatalf("image ls --pool replica: %+v", rows)
	}
	dl := filepath.Join(tmp, "dl.img")
	res := cliOK(t, nil, "image", "download", snap, "-o", dl, "--pool", replica)
	if got, _ := os.ReadFile(dl); !bytes.Equal(got, raw) || !strings.HasPrefix(res.stdout, hex.EncodeToString(sum[:])) {
		t.Fatalf("image download from the replica: %d bytes, printed %q", len(got), res.stdout)
	}
	// download never overwrites; restore replaces a file.
	cliFail(t, nil, "image", "download", snap, "-o", dl, "--pool", replica)
	os.WriteFile(dl, []byte("something else, longer than nothing"), 0o600)
	cliOK(t, nil, "image", "restore", snap, "--to", dl, "--pool", replica)
	if got, _ := os.ReadFile(dl); !bytes.Equal(got, raw) {
		t.Fatal("image restore from the replica differs")
	}
	// And through FUSE: the replica's restore tree shows the image.
	mountReplica(t, replica, "vm/latest/images/disk.img", raw)
	if out := cliOK(t, nil, "pool", "check", "--pool", replica, "--read-data").stdout; !strings.Contains(out, "images:") {
		t.Fatalf("pool check of the replica does not check its image pool:\n%s", out)
	}
	if r := cliFail(t, nil, "image", "download", "20300101T000000Z-00000000", "-o", filepath.Join(tmp, "x"), "--pool", replica); !strings.Contains(r.stderr, "20300101T000000Z-00000000") {
		t.Fatalf("unknown snapshot: %s", r.stderr)
	}

	// Disaster: a new appliance adopts the replica (file and image
	// pools) and rebuilds its catalog.
	data2 := filepath.Join(tmp, "data2")
	startServe(t, data2, "--pool", replica, "--images", filepath.Join(replica, "images"))
	var rb appliance.RebuildBody
	if err := json.Unmarshal([]byte(mustCLI(t, data2, "catalog", "rebuild", "--json")), &rb); err != nil || rb.Snapshots != 1 {
		t.Fatalf("catalog rebuild: %+v %v", rb, err)
	}
	var list []appliance.ImageBody
	if err := json.Unmarshal([]byte(mustCLI(t, data2, "image", "ls", "--json")), &list); err != nil || len(list) != 1 || list[0].Snapshot != snap {
		t.Fatalf("image ls after the rebuild: %+v %v", list, err)
	}
	dl2 := filepath.Join(tmp, "dl2.img")
	mustCLI(t, data2, "image", "download", snap, "-o", dl2)
	if got, _ := os.ReadFile(dl2); !bytes.Equal(got, raw) {
		t.Fatal("image downloaded from the adopted replica differs")
	}
}

// TestCLIImageReplicaKilled: `cairn serve` is killed (SIGKILL) in the
// middle of a bandwidth-limited copy of an image snapshot; the target
// then holds some blocks and no manifest. Restarted, the appliance
// catches up on its own; the replica checks clean and the image
// downloaded from it has the original's SHA-256.
func TestCLIImageReplicaKilled(t *testing.T) {
	srv := testenv.SSHD(t)
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	img := filepath.Join(srv.Dir, "vm.img")
	raw := make([]byte, 4*images.BlockSize)
	r := rand.New(rand.NewPCG(7, 8))
	for i := range raw {
		raw[i] = byte(r.Uint32())
	}
	os.WriteFile(img, raw, 0o600)
	replica := filepath.Join(tmp, "nas")
	p := startServe(t, data)
	mustCLI(t, data, "host", "add", "vm", "--method", appliance.MethodImageSSH, "--path", img, "--source", "disk",
		"--opt", "host="+srv.Host, "--opt", "port="+strconv.Itoa(srv.Port), "--opt", "user="+srv.User,
		"--secret-file", "private_key="+srv.KeyFile)
	mustCLI(t, data, "backup", "run", "vm", "--wait")
	// 2 MB/s, one block at a time: about two seconds a block.
	mustCLI(t, data, "replica", "add", "nas", "--location", replica, "--bwlimit", "2e6", "--concurrency", "1")
	blocks := func() int {
		n := 0
		filepath.WalkDir(filepath.Join(replica, "images", "objects"), func(_ string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".tmp-") {
				n++
			}
			return nil
		})
		return n
	}
	waitFor(t, "a first block on the target", func() bool { return blocks() >= 1 })
	p.stop(syscall.SIGKILL)
	before := blocks()
	if before >= 4 {
		t.Fatalf("the copy finished before the kill (%d blocks)", before)
	}
	if vs, _ := filepath.Glob(filepath.Join(replica, "images", "images", "*", "*")); len(vs) != 0 {
		t.Fatalf("image manifests before their blocks: %v", vs)
	}
	if ss, _ := filepath.Glob(filepath.Join(replica, "snapshots", "*")); len(ss) != 0 {
		t.Fatalf("a placeholder before its image: %v", ss)
	}
	p = startServe(t, data)
	var st appliance.ReplicaTargetStatus
	waitFor(t, "the catch-up run", func() bool {
		if err := json.Unmarshal([]byte(mustCLI(t, data, "replica", "sync", "nas", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		return st.LastError == "" && len(st.Snapshots) == 1 && len(st.ImageVersions) == 1
	})
	t.Logf("killed after %d of 4 blocks; after the restart %d objects sent", before, st.ObjectsTotal)
	if st.ObjectsTotal > 4-before+1 {
		t.Fatalf("after the restart %d objects sent; want the %d missing blocks and the placeholder's tree", st.ObjectsTotal, 4-before)
	}
	p.stop(syscall.SIGTERM)
	cliOK(t, nil, "pool", "check", "--pool", replica, "--read-data")
	dl := filepath.Join(tmp, "dl.img")
	cliOK(t, nil, "image", "download", st.Snapshots[0], "-o", dl, "--pool", replica)
	if got, _ := os.ReadFile(dl); sha256.Sum256(got) != sha256.Sum256(raw) {
		t.Fatal("the image downloaded from the resumed replica differs")
	}
}
