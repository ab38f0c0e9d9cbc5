package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fusefs"
	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
)

// TestCLIReplicationDisaster: a directory target and the real S3 server
// from testenv get every backup; only new objects travel the second time;
// the replicas restore with no catalog (direct verbs on a dir and on
// s3://); after the primary pool is deleted, a new appliance adopts the
// replica, rebuilds its catalog and restores a file identical to the
// original.
func TestCLIReplicationDisaster(t *testing.T) {
	s3 := testenv.S3(t)
	data := t.TempDir()
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	orig := bytes.Repeat([]byte("the original configuration\n"), 3000)
	os.WriteFile(filepath.Join(src, "etc", "app.conf"), orig, 0o644)
	for i := range 30 {
		os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d.txt", i)), []byte(strings.Repeat(fmt.Sprintf("file %d\n", i), 50+i)), 0o644)
	}
	replica := filepath.Join(t.TempDir(), "nas")
	s3loc := fmt.Sprintf("s3://%s:%s@%s/%s/offsite?insecure=1&region=%s", s3.AccessKey, s3.SecretKey, s3.Endpoint, s3.Bucket, s3.Region)

	p := startServe(t, data)
	mustCLI(t, data, "host", "add", "web1", "--method", "local", "--path", src, "--source", "files")
	mustCLI(t, data, "replica", "add", "nas", "--location", replica, "--keep-monthly", "12", "--keep-last", "5")
	mustCLI(t, data, "replica", "add", "s3", "--location", s3loc, "--rps", "500", "--burst", "50", "--concurrency", "4")
	// Bad input: one clear line, non-zero exit.
	if _, errOut, code := cairnCLI(t, data, "replica", "add", "bad", "--kind", "cairn", "--location", "https://b:8443"); code == 0 || !strings.Contains(errOut, "append-only token") {
		t.Fatalf("cairn target without a token: exit %d, %q", code, errOut)
	}
	if out := mustCLI(t, data, "replica", "ls"); strings.Contains(out, s3.SecretKey) || !strings.Contains(out, "nas") {
		t.Fatalf("replica ls: %s", out)
	}

	type status struct {
		ObjectsTotal int   `json:"objects_total"`
		BytesTotal   int64 `json:"bytes_total"`
		CopiedTotal  int   `json:"copied_total"`
		Snapshots    []string
	}
	// sync waits for any run the new snapshot started and runs once more.
	sync := func(name string) status {
		var st status
		if err := json.Unmarshal([]byte(mustCLI(t, data, "replica", "sync", name, "--json")), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	mustCLI(t, data, "backup", "run", "web1", "--wait")
	first, s3first := sync("nas"), sync("s3")
	// One changed file: the second replication sends only its object and
	// the root tree above it.
	os.WriteFile(filepath.Join(src, "f07.txt"), []byte("changed\n"), 0o644)
	mustCLI(t, data, "backup", "run", "web1", "--wait")
	second, s3second := sync("nas"), sync("s3")
	objs, bytes2 := second.ObjectsTotal-first.ObjectsTotal, second.BytesTotal-first.BytesTotal
	t.Logf("first replication: %d objects, %d bytes; second: %d objects, %d bytes; s3: %d then %d objects",
		first.ObjectsTotal, first.BytesTotal, objs, bytes2, s3first.ObjectsTotal, s3second.ObjectsTotal-s3first.ObjectsTotal)
	if first.CopiedTotal != 1 || second.CopiedTotal != 2 || len(second.Snapshots) != 2 || objs != 2 || objs >= first.ObjectsTotal {
		t.Fatalf("second replication: %+v (first %+v)", second, first)
	}
	if len(s3second.Snapshots) != 2 || s3second.ObjectsTotal-s3first.ObjectsTotal != objs {
		t.Fatalf("second s3 replication: %+v", s3second)
	}
	snap := second.Snapshots[0]
	if snap == first.Snapshots[0] {
		snap = second.Snapshots[1]
	}

	// Audit and restore test through the CLI.
	var a struct {
		Lagging bool
		Hosts   []struct {
			Host    string
			Targets []struct {
				Target    string
				Snapshots []string
				Missing   []string
			}
		}
	}
	if err := json.Unmarshal([]byte(mustCLI(t, data, "audit", "--json")), &a); err != nil {
		t.Fatal(err)
	}
	if a.Lagging || len(a.Hosts) != 1 || len(a.Hosts[0].Targets) != 3 {
		t.Fatalf("audit: %+v", a)
	}
	for _, ht := range a.Hosts[0].Targets {
		if len(ht.Snapshots) != 2 || len(ht.Missing) != 0 {
			t.Fatalf("audit of %s: %+v", ht.Target, ht)
		}
	}
	if out := mustCLI(t, data, "verify", "restore-test", "web1"); !strings.Contains(out, "web1: ok: 20 files") {
		t.Fatalf("restore test: %s", out)
	}
	if out := mustCLI(t, data, "verify", "show"); !strings.Contains(out, "web1") {
		t.Fatalf("verify show: %s", out)
	}

	// The replicas are pools: direct verbs need no catalog.
	for _, loc := range []string{replica, s3loc} {
		if out := cliOK(t, nil, "snapshot", "ls", "--pool", loc).stdout; !strings.Contains(out, snap) {
			t.Fatalf("snapshot ls --pool %s: %s", loc, out)
		}
		to := filepath.Join(t.TempDir(), "r")
		cliOK(t, nil, "restore", "--pool", loc, snap+"/etc/app.conf", "--to", to)
		if got, _ := os.ReadFile(filepath.Join(to, "app.conf")); !bytes.Equal(got, orig) {
			t.Fatalf("restore from %s: %d bytes, want %d", loc, len(got), len(orig))
		}
		cliOK(t, nil, "pool", "check", "--pool", loc, "--read-data")
	}

	// And mount: the S3 replica's restore tree over FUSE.
	mountReplica(t, s3loc, "web1/latest/files/etc/app.conf", orig)

	// Disaster: the primary's pool is gone. A new appliance adopts the
	// replica and rebuilds its catalog from it.
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exit %d:\n%s", code, p.stderr)
	}
	os.RemoveAll(filepath.Join(data, "pool"))
	data2 := t.TempDir()
	startServe(t, data2, "--pool", replica)
	var rb struct{ Snapshots int }
	if err := json.Unmarshal([]byte(mustCLI(t, data2, "catalog", "rebuild", "--json")), &rb); err != nil || rb.Snapshots != 2 {
		t.Fatalf("catalog rebuild from the replica: %+v, %v", rb, err)
	}
	to := filepath.Join(t.TempDir(), "restored")
	mustCLI(t, data2, "restore", "web1/"+snap+"/etc/app.conf", "--to", to)
	got, err := os.ReadFile(filepath.Join(to, "app.conf"))
	if err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("restore after the disaster: %d bytes (%v), want the original %d", len(got), err, len(orig))
	}
}

// mountReplica mounts the pool at loc with `cairn mount` and compares one
// file read through the mount.
func mountReplica(t *testing.T, loc, path string, want []byte) {
	t.Helper()
	testenv.Need(t, "fusermount3")
	testenv.NeedRoot(t, "FUSE mounts (/dev/fuse is 0600)")
	mp := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(mp, 0o755)
	var stderr lockedBuffer
	cmd := exec.Command(cairnBin, "mount", mp, "--pool", loc)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
			fusefs.ClearStale(mp)
			t.Errorf("cairn mount still running 30s after SIGTERM\n%s", stderr.String())
		}
	}()
	var got []byte
	waitFor(t, "the replica mount", func() bool {
		select {
		case <-exited:
			t.Fatalf("cairn mount --pool %s exited:\n%s", pool.RedactLocation(loc), stderr.String())
		default:
		}
		var err error
		got, err = os.ReadFile(filepath.Join(mp, path))
		return err == nil
	})
	if !bytes.Equal(got, want) {
		t.Fatalf("%s through the mount of the replica: %d bytes, want %d", path, len(got), len(want))
	}
}

// TestCLIReplicaToAppliance: one `cairn serve` replicates to another
// through an append-only token made with the CLI; the receiving side's
// copy is a pool the direct verbs read.
func TestCLIReplicaToAppliance(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "hello.txt"), []byte("hello offsite\n"), 0o644)
	startServe(t, a)
	pb := startServe(t, b)
	tok := strings.TrimSpace(mustCLI(t, b, "replica", "token", "create", "from-a"))
	if !strings.HasPrefix(tok, "cairn_") {
		t.Fatalf("token create printed %q", tok)
	}
	mustCLI(t, a, "replica", "add", "site-b", "--kind", "cairn", "--location", "http://"+pb.addr, "--target-token", tok)
	mustCLI(t, a, "host", "add", "web1", "--method", "local", "--path", src, "--source", "files")
	mustCLI(t, a, "backup", "run", "web1", "--wait")
	out := mustCLI(t, a, "replica", "sync", "site-b")
	if !strings.Contains(out, "1 snapshots on the target") {
		t.Fatalf("replica sync: %s", out)
	}
	if out := mustCLI(t, b, "replica", "token", "ls"); strings.Contains(out, "bound on first use") {
		t.Fatalf("token not bound after use: %s", out)
	}
	dirs, _ := filepath.Glob(filepath.Join(b, "replicas", "*-*-*-*-*"))
	if len(dirs) != 1 {
		t.Fatalf("replicas on b: %v", dirs)
	}
	cliOK(t, nil, "pool", "check", "--pool", dirs[0], "--read-data")
	ls := cliOK(t, nil, "snapshot", "ls", "--pool", dirs[0]).stdout
	if !strings.Contains(ls, "web1") {
		t.Fatalf("snapshot ls of the received replica: %s", ls)
	}
	// Keys of received replicas: this one is not encrypted.
	id := filepath.Base(dirs[0])
	if out := mustCLI(t, b, "replica", "key", "show", id); !strings.Contains(out, "file pool not encrypted") {
		t.Fatalf("replica key show: %s", out)
	}
	kf := filepath.Join(t.TempDir(), "k")
	os.WriteFile(kf, []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
	if _, errOut, code := cairnCLI(t, b, "replica", "key", "import", id, "--key-file", kf); code == 0 || !strings.Contains(errOut, "not encrypted") {
		t.Fatalf("key import for a plain replica: exit %d, %s", code, errOut)
	}
}
