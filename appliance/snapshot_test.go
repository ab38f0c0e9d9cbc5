package appliance

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"golang.org/x/crypto/ssh"
)

func runCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// loopMount makes a loop-device filesystem of the given type mounted at
// a temporary directory, removed after the test (before is run first).
func loopMount(t *testing.T, fstype string, size int64, before func(mnt string)) string {
	t.Helper()
	testenv.Need(t, "losetup", "mkfs."+fstype, "mount", "umount")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root for loop devices")
		}
		t.Skip("needs root for loop devices")
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	dev := strings.TrimSpace(runCmd(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	runCmd(t, "mkfs."+fstype, "-q", dev)
	mnt := t.TempDir()
	runCmd(t, "mount", dev, mnt)
	t.Cleanup(func() {
		if before != nil {
			before(mnt)
		}
		exec.Command("umount", mnt).Run()
	})
	return mnt
}

// snapSource is an sftp source of srv reading path, with the preset opts
// and the SSH settings the hooks need.
func snapSource(t *testing.T, srv *testenv.SSHServer, path string, opts map[string]string) SourceInput {
	in := sftpSourceInput(t, srv, path, opts)
	in.Options["ssh_port"] = strconv.Itoa(srv.Port)
	in.Options["ssh_user"] = srv.User
	in.Options["ssh_host_key"] = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(srv.HostKey)))
	in.Secret["ssh_key"] = in.Secret["private_key"]
	return in
}

// inSnapshot reports whether the last snapshot of host/data holds name.
func inSnapshot(t *testing.T, e *testEnv, host, name string) bool {
	t.Helper()
	ctx := context.Background()
	last, err := e.s.cat.LastSnapshot(ctx, host, "data", false)
	if err != nil {
		t.Fatal(err)
	}
	root, err := pool.ParseDigest(last.Root)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.s.pool.Lookup(ctx, root, name)
	if errors.Is(err, pool.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func setSnapshotTaken(t *testing.T, fn func(*snapshotPlan)) {
	snapshotTaken = func(_ context.Context, _ int64, p *snapshotPlan) { fn(p) }
	t.Cleanup(func() { snapshotTaken = nil })
}

// TestSnapshotBtrfs backs up from a read-only btrfs snapshot over SSH on
// a real sshd (root on this machine): a file written after the snapshot
// and before the pull is not in the backup, and the snapshot is deleted
// after a good and after a failed pull.
func TestSnapshotBtrfs(t *testing.T) {
	testenv.Need(t, "btrfs")
	mnt := loopMount(t, "btrfs", 128<<20, nil)
	vol := filepath.Join(mnt, "vol")
	runCmd(t, "btrfs", "-q", "subvolume", "create", vol)
	data := filepath.Join(vol, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "before.txt"), []byte("before"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := testenv.SSHD(t)
	e := newEnv(t, Config{})
	var taken []string
	setSnapshotTaken(t, func(p *snapshotPlan) {
		taken = append(taken, p.path)
		if _, err := os.Stat(filepath.Dir(p.path)); err != nil {
			t.Errorf("snapshot path: %v", err)
		}
		if err := os.WriteFile(filepath.Join(data, "after.txt"), []byte("after"), 0o644); err != nil {
			t.Error(err)
		}
	})
	opts := map[string]string{"snapshot": "btrfs", "btrfs_subvolume": vol}
	for _, h := range []struct{ name, path string }{{"good", data}, {"bad", filepath.Join(vol, "missing")}} {
		name := h.name
		addr := srv.Host
		e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Address: &addr, Sources: []SourceInput{snapSource(t, srv, h.path, opts)}}, nil)
	}
	noSnapshots := func() {
		t.Helper()
		if m, _ := filepath.Glob(filepath.Join(vol, ".cairn-*")); len(m) != 0 {
			t.Fatalf("snapshots left behind: %v", m)
		}
		if out := runCmd(t, "btrfs", "subvolume", "list", mnt); strings.Contains(out, "cairn-") {
			t.Fatalf("snapshot subvolumes left behind: %s", out)
		}
	}
	if j := e.waitJob(e.backup("good").ID); j.State != "done" {
		t.Fatalf("backup from a btrfs snapshot: %s %s", j.State, j.Error)
	}
	if len(taken) != 1 || !strings.HasPrefix(taken[0], filepath.Join(vol, ".cairn-")) || filepath.Base(taken[0]) != "data" {
		t.Fatalf("pulled from %q (%d), want under %s", taken, len(taken), vol)
	}
	if !inSnapshot(t, e, "good", "before.txt") || inSnapshot(t, e, "good", "after.txt") {
		t.Fatal("the backup is not the snapshot's content")
	}
	noSnapshots()
	j := e.waitJob(e.backup("bad").ID)
	if j.State != "failed" || len(taken) != 2 {
		t.Fatalf("a pull of a missing path: %s %q (snapshots %v)", j.State, j.Error, taken)
	}
	noSnapshots()
}

// TestSnapshotFsfreeze freezes a loop-mounted ext4 during the pull and
// thaws it afterwards, also after a failed pull.
func TestSnapshotFsfreeze(t *testing.T) {
	testenv.Need(t, "fsfreeze")
	// Never leave a frozen filesystem behind, whatever happened.
	mnt := loopMount(t, "ext4", 16<<20, func(mnt string) { exec.Command("fsfreeze", "-u", mnt).Run() })
	data := filepath.Join(mnt, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "a.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := testenv.SSHD(t)
	e := newEnv(t, Config{})
	frozen := 0
	setSnapshotTaken(t, func(p *snapshotPlan) {
		// Freezing a frozen filesystem fails with EBUSY.
		if out, err := exec.Command("fsfreeze", "-f", mnt).CombinedOutput(); err == nil || !strings.Contains(string(out), "busy") {
			t.Errorf("the filesystem was not frozen during the pull: %v %s", err, out)
		} else {
			frozen++
		}
	})
	opts := map[string]string{"snapshot": "fsfreeze", "fsfreeze_mount": mnt}
	for _, h := range []struct{ name, path string }{{"good", data}, {"bad", filepath.Join(mnt, "missing")}} {
		name := h.name
		addr := srv.Host
		e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Address: &addr, Sources: []SourceInput{snapSource(t, srv, h.path, opts)}}, nil)
	}
	thawed := func() {
		t.Helper()
		// Thawing a filesystem that is not frozen fails with EINVAL.
		if out, err := exec.Command("fsfreeze", "-u", mnt).CombinedOutput(); err == nil {
			t.Fatalf("the filesystem was still frozen after the backup")
		} else if !strings.Contains(string(out), "Invalid argument") {
			t.Fatalf("fsfreeze -u: %v %s", err, out)
		}
	}
	if j := e.waitJob(e.backup("good").ID); j.State != "done" {
		t.Fatalf("backup with fsfreeze: %s %s", j.State, j.Error)
	}
	if !inSnapshot(t, e, "good", "a.txt") {
		t.Fatal("a.txt not backed up")
	}
	thawed()
	if j := e.waitJob(e.backup("bad").ID); j.State != "failed" {
		t.Fatalf("a pull of a missing path: %s %q", j.State, j.Error)
	}
	thawed()
	if frozen != 2 {
		t.Fatalf("frozen during %d pulls, want 2", frozen)
	}
}

// TestSnapshotCommands checks the exact command lines of every preset
// (ZFS and LVM snapshots cannot be taken on this test kernel: no zfs
// module, no device-mapper snapshot target), the path the pull reads,
// and that hostile options are refused before anything runs.
func TestSnapshotCommands(t *testing.T) {
	src := func(path string, o map[string]string) *catalog.Source {
		return &catalog.Source{ID: 7, Name: "data", Path: path, Options: o}
	}
	for _, tc := range []struct {
		path                 string
		opts                 map[string]string
		create, remove, pull string
	}{
		{"/tank/www/site", map[string]string{"snapshot": "zfs", "zfs_dataset": "tank/www", "snapshot_mount": "/tank/www"},
			"zfs snapshot 'tank/www@cairn-42-7'", "zfs destroy 'tank/www@cairn-42-7'", "/tank/www/.zfs/snapshot/cairn-42-7/site"},
		{"/srv", map[string]string{"snapshot": "lvm", "lvm_vg": "vg-0", "lvm_lv": "srv", "lvm_size": "2G", "snapshot_mount": "/srv"},
			"lvcreate -q -s -n 'cairn-42-7' -L '2G' 'vg-0/srv' && mkdir -p '/run/cairn-snapshots/cairn-42-7' && " +
				"mount -o ro '/dev/mapper/vg--0-cairn--42--7' '/run/cairn-snapshots/cairn-42-7'",
			"{ ! mountpoint -q '/run/cairn-snapshots/cairn-42-7' || umount '/run/cairn-snapshots/cairn-42-7'; }; " +
				"rmdir '/run/cairn-snapshots/cairn-42-7' 2>/dev/null; lvremove -q -f 'vg-0/cairn-42-7'",
			"/run/cairn-snapshots/cairn-42-7"},
		{"/home/a", map[string]string{"snapshot": "btrfs", "btrfs_subvolume": "/home"},
			"btrfs -q subvolume snapshot -r '/home' '/home/.cairn-42-7'", "btrfs -q subvolume delete '/home/.cairn-42-7'", "/home/.cairn-42-7/a"},
		{"/var/lib/x", map[string]string{"snapshot": "fsfreeze", "fsfreeze_mount": "/var/lib"},
			"fsfreeze -f '/var/lib'", "fsfreeze -u '/var/lib'", "/var/lib/x"},
	} {
		p, err := snapshotFor(src(tc.path, tc.opts), 42)
		if err != nil {
			t.Fatalf("%v: %v", tc.opts, err)
		}
		if p.create != tc.create || p.remove != tc.remove || p.path != tc.pull {
			t.Errorf("%s:\n create %s\n remove %s\n pull   %s", tc.opts["snapshot"], p.create, p.remove, p.path)
		}
	}
	hostile := []map[string]string{
		{"snapshot": "zfs", "zfs_dataset": "tank/www; reboot", "snapshot_mount": "/tank/www"},
		{"snapshot": "zfs", "zfs_dataset": "-r tank", "snapshot_mount": "/tank"},
		{"snapshot": "zfs", "zfs_dataset": "tank/www", "snapshot_mount": "/tank/www'$(reboot)'"},
		{"snapshot": "zfs", "zfs_dataset": "tank/../x", "snapshot_mount": "/tank"},
		{"snapshot": "lvm", "lvm_vg": "vg`id`", "lvm_lv": "srv", "lvm_size": "1G", "snapshot_mount": "/srv"},
		{"snapshot": "lvm", "lvm_vg": "vg", "lvm_lv": "-fsrv", "lvm_size": "1G", "snapshot_mount": "/srv"},
		{"snapshot": "lvm", "lvm_vg": "vg", "lvm_lv": "srv", "lvm_size": "1G && reboot", "snapshot_mount": "/srv"},
		{"snapshot": "lvm", "lvm_vg": "vg", "lvm_lv": "srv", "lvm_size": "1G", "snapshot_mount": "/srv", "snapshot_dir": "/run/x\nreboot"},
		{"snapshot": "btrfs", "btrfs_subvolume": "/home/../etc"},
		{"snapshot": "btrfs", "btrfs_subvolume": "relative"},
		{"snapshot": "btrfs", "btrfs_subvolume": "/home/-rf"},
		{"snapshot": "btrfs", "btrfs_subvolume": "/home|reboot"},
		{"snapshot": "btrfs", "btrfs_subvolume": "/other"}, // not a prefix of the source path
		{"snapshot": "fsfreeze", "fsfreeze_mount": "/"},
		{"snapshot": "fsfreeze", "fsfreeze_mount": "/home/"},
		{"snapshot": "fsfreeze", "fsfreeze_mount": "/home *"},
		{"snapshot": "nilfs"},
	}
	for _, o := range hostile {
		if p, err := snapshotFor(src("/home/a", o), 1); err == nil {
			t.Errorf("accepted %q: %+v", o, p)
		}
	}
	if got := shq(`it's`); got != `'it'\''s'` {
		t.Errorf("shq = %s", got)
	}
	if p, err := snapshotFor(src("/x", map[string]string{}), 1); p != nil || err != nil {
		t.Errorf("no preset: %v %v", p, err)
	}
}

// TestSnapshotCancel cancels backups while their preset is active (a
// btrfs snapshot exists, an ext4 is frozen): the job ends cancelled, the
// snapshot is deleted and the filesystem thawed.
func TestSnapshotCancel(t *testing.T) {
	testenv.Need(t, "btrfs", "fsfreeze")
	bmnt := loopMount(t, "btrfs", 128<<20, nil)
	vol := filepath.Join(bmnt, "vol")
	runCmd(t, "btrfs", "-q", "subvolume", "create", vol)
	fmnt := loopMount(t, "ext4", 16<<20, func(mnt string) { exec.Command("fsfreeze", "-u", mnt).Run() })
	for _, d := range []string{filepath.Join(vol, "data"), filepath.Join(fmnt, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "a.txt"), []byte("a"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv := testenv.SSHD(t)
	e := newEnv(t, Config{})
	for _, h := range []struct {
		name, path string
		opts       map[string]string
	}{
		{"btrfs", filepath.Join(vol, "data"), map[string]string{"snapshot": "btrfs", "btrfs_subvolume": vol}},
		{"frozen", filepath.Join(fmnt, "data"), map[string]string{"snapshot": "fsfreeze", "fsfreeze_mount": fmnt}},
	} {
		name, addr := h.name, srv.Host
		e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Address: &addr, Sources: []SourceInput{snapSource(t, srv, h.path, h.opts)}}, nil)
	}
	var active []string
	snapshotTaken = func(ctx context.Context, jobID int64, p *snapshotPlan) {
		// The preset is active: check it, then cancel the job and wait
		// until the job's context is cancelled.
		switch p.kind {
		case "btrfs":
			if _, err := os.Stat(filepath.Join(p.path, "a.txt")); err != nil {
				t.Errorf("btrfs snapshot not there: %v", err)
				return
			}
		case "fsfreeze":
			if out, err := exec.Command("fsfreeze", "-f", fmnt).CombinedOutput(); err == nil || !strings.Contains(string(out), "busy") {
				t.Errorf("not frozen: %v %s", err, out)
				return
			}
		}
		active = append(active, p.kind)
		go e.do("socket", "POST", "/api/v1/jobs/"+strconv.FormatInt(jobID, 10)+"/cancel", nil)
		<-ctx.Done()
	}
	t.Cleanup(func() { snapshotTaken = nil })
	for _, host := range []string{"btrfs", "frozen"} {
		j := e.waitJob(e.backup(host).ID)
		if j.State != "cancelled" {
			t.Fatalf("%s: job %s %q, want cancelled", host, j.State, j.Error)
		}
	}
	if strings.Join(active, ",") != "btrfs,fsfreeze" {
		t.Fatalf("presets active at the cancel: %v", active)
	}
	if m, _ := filepath.Glob(filepath.Join(vol, ".cairn-*")); len(m) != 0 {
		t.Fatalf("btrfs snapshot left after the cancel: %v", m)
	}
	if out := runCmd(t, "btrfs", "subvolume", "list", bmnt); strings.Contains(out, "cairn-") {
		t.Fatalf("snapshot subvolume left after the cancel: %s", out)
	}
	if out, err := exec.Command("fsfreeze", "-u", fmnt).CombinedOutput(); err == nil {
		t.Fatal("the filesystem was still frozen after the cancel")
	} else if !strings.Contains(string(out), "Invalid argument") {
		t.Fatalf("fsfreeze -u: %v %s", err, out)
	}
	// The filesystem is writable again.
	if err := os.WriteFile(filepath.Join(fmnt, "data", "b.txt"), []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSourceOptionsValidated: snapshot, jump and checkpoint options are
// checked when a source is added or edited (API, hence also the CLI),
// with an error naming the source, the option and the cause.
func TestSourceOptionsValidated(t *testing.T) {
	e := newEnv(t, Config{})
	hostKey := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	src := func(method string, o map[string]string, secret map[string]string) SourceInput {
		opts := map[string]string{"user": "root"}
		for k, v := range o {
			opts[k] = v
		}
		sec := map[string]string{"password": "pw"}
		for k, v := range secret {
			sec[k] = v
		}
		return SourceInput{Name: "data", Method: method, Path: "/home/a", Options: opts, Secret: sec}
	}
	jumpOK := map[string]string{"jump": "bastion:2222", "jump_host_key": hostKey}
	jumpCred := map[string]string{"jump_password": "jpw"}
	with := func(a, b map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range a {
			out[k] = v
		}
		for k, v := range b {
			out[k] = v
		}
		return out
	}
	for _, tc := range []struct {
		in   SourceInput
		want string
	}{
		{src("sftp", map[string]string{"snapshot": "btrfs", "btrfs_subvolume": "/home/../etc", "ssh_host_key": hostKey}, nil), "btrfs_subvolume"},
		{src("sftp", map[string]string{"snapshot": "btrfs", "btrfs_subvolume": "/other", "ssh_host_key": hostKey}, nil), "not under btrfs_subvolume"},
		{src("sftp", map[string]string{"snapshot": "zfs", "zfs_dataset": "tank/home", "ssh_host_key": hostKey}, nil), "snapshot_mount is required"},
		{src("sftp", map[string]string{"snapshot": "lvm", "lvm_vg": "vg", "lvm_lv": "home", "lvm_size": "1G; reboot", "snapshot_mount": "/home", "ssh_host_key": hostKey}, nil), "lvm_size"},
		{src("sftp", map[string]string{"snapshot": "fsfreeze", "fsfreeze_mount": "/", "ssh_host_key": hostKey}, nil), "never the root filesystem"},
		{src("sftp", map[string]string{"snapshot": "nilfs", "ssh_host_key": hostKey}, nil), "want zfs, lvm, btrfs or fsfreeze"},
		{src("sftp", map[string]string{"snapshot": "btrfs", "btrfs_subvolume": "/home"}, nil), "needs the option ssh_host_key"},
		{src("sftp", map[string]string{"snapshot": "btrfs", "btrfs_subvolume": "/home", "ssh_host_key": "ssh-ed25519 garbage"}, nil), "ssh_host_key"},
		{src("sftp", map[string]string{"btrfs_subvolume": "/home"}, nil), "option btrfs_subvolume is set but snapshot is not"},
		{src("sftp", map[string]string{"jump": "bad host!"}, jumpCred), "bad host!\\\": want [user@]host[:port]"},
		{src("sftp", map[string]string{"jump": "bastion:99999", "jump_host_key": hostKey}, jumpCred), "bad port"},
		{src("sftp", map[string]string{"jump": "bastion"}, jumpCred), "needs the option jump_host_key"},
		{src("sftp", map[string]string{"jump": "bastion", "jump_host_key": "nonsense"}, jumpCred), "jump_host_key"},
		{src("sftp", jumpOK, nil), "needs the credential jump_private_key or jump_password"},
		{src("sftp", jumpOK, map[string]string{"jump_private_key": "not a key"}), "jump_private_key credential: cannot parse"},
		{src("postgres", jumpOK, jumpCred), "only with via=ssh"},
		{src("sftp", map[string]string{"jump_host_key": hostKey}, nil), "option jump_host_key is set but jump is not"},
		{src("sftp", nil, jumpCred), "credential jump_password is set but the option jump is not"},
		{src("sftp", map[string]string{"checkpoint_every": "5ms"}, nil), "checkpoint_every"},
		{src("sftp", map[string]string{"checkpoint_bytes": "lots"}, nil), "checkpoint_bytes"},
		{src("sftp", map[string]string{"checkpoint_bytes": "100K"}, nil), "at least 1MiB"},
		{src("sftp", map[string]string{"checkpoint_files": "-3"}, nil), "checkpoint_files"},
	} {
		name := "h"
		rec := e.do("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{tc.in}})
		body := rec.Body.String()
		if rec.Code != 400 || !strings.Contains(body, "source data") || !strings.Contains(body, tc.want) {
			t.Errorf("options %v secret keys %d: %d %s, want 400 naming %q", tc.in.Options, len(tc.in.Secret), rec.Code, body, tc.want)
		}
		if strings.Contains(body, "jpw") || strings.Contains(body, "\"pw\"") {
			t.Errorf("a credential in the error: %s", body)
		}
	}
	// Good options are stored; a bad edit (PATCH or PUT of the source)
	// is refused and leaves the stored source as it was.
	good := src("sftp", with(jumpOK, map[string]string{"snapshot": "btrfs", "btrfs_subvolume": "/home", "ssh_host_key": hostKey,
		"checkpoint_every": "30s", "checkpoint_bytes": "512MiB", "checkpoint_files": "10000"}), jumpCred)
	name := "h"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{good}}, nil)
	bad := good
	bad.Options = with(good.Options, map[string]string{"btrfs_subvolume": "/etc"})
	rec := e.do("socket", "PATCH", "/api/v1/hosts/h", HostInput{Sources: []SourceInput{bad}})
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "not under btrfs_subvolume") {
		t.Fatalf("PATCH with a bad preset: %d %s", rec.Code, rec.Body)
	}
	bad.Options = with(good.Options, map[string]string{"jump": "x y"})
	rec = e.do("socket", "PUT", "/api/v1/hosts/h/sources/data", bad)
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "jump") {
		t.Fatalf("PUT with a bad jump: %d %s", rec.Code, rec.Body)
	}
	var hb HostBody
	e.must("socket", "GET", "/api/v1/hosts/h", nil, &hb)
	if len(hb.Sources) != 1 || hb.Sources[0].Options["btrfs_subvolume"] != "/home" || hb.Sources[0].Options["jump"] != "bastion:2222" {
		t.Fatalf("stored source after refused edits: %+v", hb.Sources)
	}
	if c, err := checkpointOptions(good.Options); err != nil || c.Every != 30*time.Second || c.Bytes != 512<<20 || c.Files != 10000 {
		t.Fatalf("checkpoint options: %+v %v", c, err)
	}
	if c, _ := checkpointOptions(map[string]string{"checkpoint_every": "0", "checkpoint_bytes": "0"}); c.Every != 0 || c.Bytes != 0 {
		t.Fatalf("checkpoints off: %+v", c)
	}
	if c, _ := checkpointOptions(nil); c.Every != pool.DefaultCheckpoint.Every || c.Bytes != pool.DefaultCheckpoint.Bytes {
		t.Fatalf("default checkpoints: %+v", c)
	}
}
