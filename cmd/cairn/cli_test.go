package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// Tests of the direct verbs (pool, snapshot, ls, restore), driving the
// real binary built by TestMain (serve_test.go).

type cliResult struct {
	stdout, stderr string
	code           int
}

// cliRun runs cairn with args and the environment env (on top of a
// clean one without CAIRN_* variables).
func cliRun(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	return cliRunAs(t, nil, env, args...)
}

func cliRunAs(t *testing.T, cred *syscall.Credential, env []string, args ...string) cliResult {
	t.Helper()
	bin := cairnBin
	if cred != nil {
		bin = cliBinFor(t)
	}
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "CAIRN_PROGRESS=lines")
	cmd.Env = append(cmd.Env, env...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run cairn %q: %v", args, err)
	}
	return cliResult{out.String(), errb.String(), code}
}

// cliPublicDir is a temporary directory every user may write, for runs
// as nobody (t.TempDir's parents are private).
func cliPublicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cairn-cli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// cliBinFor returns a copy of the binary that another user can run.
func cliBinFor(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(cairnBin)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(cliPublicDir(t), "cairn")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// cliOK runs cairn and fails the test unless it exits 0.
func cliOK(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	r := cliRun(t, env, args...)
	if r.code != 0 {
		t.Fatalf("cairn %q: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// cliFail runs cairn, wants a non-zero exit and returns stderr's one
// error line.
func cliFail(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	r := cliRun(t, env, args...)
	if r.code == 0 {
		t.Fatalf("cairn %q: exit 0, want failure\nstdout: %s\nstderr: %s", args, r.stdout, r.stderr)
	}
	return r
}

var snapIDRe = regexp.MustCompile(`^\d{8}T\d{6}Z-[0-9a-f]{8}$`)

func cliSnapshot(t *testing.T, poolDir, host, src string, extra ...string) string {
	t.Helper()
	args := append([]string{"snapshot", "create", "--pool", poolDir, "--host", host}, extra...)
	r := cliOK(t, nil, append(args, src)...)
	id := strings.TrimSpace(r.stdout)
	if !snapIDRe.MatchString(id) {
		t.Fatalf("snapshot create printed %q, want only a snapshot ID", r.stdout)
	}
	return id
}

func cliWrite(t *testing.T, p string, data []byte, perm fs.FileMode, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

func cliRand(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint64())
	}
	return b
}

// cliTree builds the scenario tree: odd names, sizes from empty to
// chunked, modes with special bits, ns mtimes, symlinks of every kind,
// hard links, an empty directory and a FIFO.
func cliTree(t *testing.T, dir string) {
	t.Helper()
	mt := func(i int) time.Time { return time.Unix(1_650_000_000+int64(i)*3600, int64(i)*123_457) }
	cliWrite(t, filepath.Join(dir, "big.bin"), cliRand(1, 5<<20+333), 0o644, mt(1))
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog\n"), 40_000)
	cliWrite(t, filepath.Join(dir, "docs", "text.txt"), text, 0o640, mt(2))
	cliWrite(t, filepath.Join(dir, "docs", "empty"), nil, 0o600, mt(3))
	cliWrite(t, filepath.Join(dir, "docs", "caf\u00e9"), []byte("nfc"), 0o644, mt(4))
	cliWrite(t, filepath.Join(dir, "docs", "cafe\u0301"), []byte("nfd"), 0o644, mt(5))
	cliWrite(t, filepath.Join(dir, "docs", "new\nline"), []byte("nl"), 0o644, mt(6))
	cliWrite(t, filepath.Join(dir, "docs", "-dash"), []byte("dash"), 0o644, mt(7))
	cliWrite(t, filepath.Join(dir, "docs", strings.Repeat("L", 255)), []byte("long"), 0o644, mt(8))
	cliWrite(t, filepath.Join(dir, "bin", "suid"), []byte("#!/bin/sh\necho\n"), 0o755|fs.ModeSetuid, mt(9))
	cliWrite(t, filepath.Join(dir, "bin", "ro"), []byte("read only"), 0o444, mt(10))
	for i := range 30 {
		cliWrite(t, filepath.Join(dir, "many", fmt.Sprintf("f%02d", i)), cliRand(uint64(100+i), 100+i*313), 0o644, mt(20+i))
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Link(filepath.Join(dir, "docs", "text.txt"), filepath.Join(dir, "hardlink.txt")))
	must(os.Symlink("docs/text.txt", filepath.Join(dir, "rel-link")))
	must(os.Symlink("/etc/hostname", filepath.Join(dir, "abs-link")))
	must(os.Symlink("../../outside", filepath.Join(dir, "docs", "out-link")))
	must(os.Symlink("does-not-exist", filepath.Join(dir, "dangling")))
	must(os.Mkdir(filepath.Join(dir, "emptydir"), 0o750))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	must(os.Mkdir(filepath.Join(dir, "sticky"), 0o755))
	must(os.Chmod(filepath.Join(dir, "sticky"), 0o1777|fs.ModeSticky))
	// Directory mtimes last, after their contents exist.
	for i, d := range []string{"docs", "bin", "many", "emptydir", "sticky"} {
		must(os.Chtimes(filepath.Join(dir, d), mt(60+i), mt(60+i)))
	}
	must(unix.Lutimes(filepath.Join(dir, "rel-link"), []unix.Timeval{{Sec: 1_600_000_000}, {Sec: 1_600_000_000, Usec: 7}}))
}

// cliInfo is what a restore must reproduce of one path.
type cliInfo struct {
	Type   fs.FileMode
	Perm   fs.FileMode // with setuid/setgid/sticky
	UID    uint32
	GID    uint32
	MTime  int64
	Size   int64
	SHA    string
	Target string
	Links  string // for hard links: the first path (sorted) sharing the inode
}

// cliScan records every path below root (root itself excluded).
func cliScan(t *testing.T, root string) map[string]cliInfo {
	t.Helper()
	out := map[string]cliInfo{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fi, _ := os.Lstat(p)
		in := cliInfo{Type: fi.Mode().Type(), Perm: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky),
			UID: st.Uid, GID: st.Gid, MTime: st.Mtim.Nano()}
		switch {
		case fi.Mode().IsRegular():
			in.Size = st.Size
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			in.SHA = hex.EncodeToString(sum[:])
			if st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					in.Links = first
				} else {
					inodes[st.Ino] = rel
					in.Links = rel
				}
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			in.Target, _ = os.Readlink(p)
			in.Perm = 0 // symlink permissions are meaningless on Linux
		}
		out[rel] = in
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func cliCompare(t *testing.T, want, got map[string]cliInfo) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("restore lacks %q", p)
			continue
		}
		if g != w {
			t.Errorf("%q restored as %+v, want %+v", p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("restore has extra %q", p)
		}
	}
}

func cliDiff(t *testing.T, a, b string) {
	t.Helper()
	// diff cannot compare FIFOs; cliCompare covers them.
	out, err := exec.Command("diff", "-r", "--no-dereference", "-x", "fifo", a, b).CombinedOutput()
	if err != nil {
		t.Errorf("diff -r %s %s: %v\n%s", a, b, err, out)
	}
}

func TestCLISnapshotRestoreRoundTrip(t *testing.T) {
	if _, err := exec.LookPath("diff"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("diff not installed")
		}
		t.Skip("diff not installed")
	}
	tmp := t.TempDir()
	poolDir, src := filepath.Join(tmp, "pool"), filepath.Join(tmp, "src")
	cliTree(t, src)
	orig := cliScan(t, src)

	r := cliOK(t, nil, "pool", "init", "--pool", poolDir)
	if !strings.Contains(r.stdout, "created pool") {
		t.Errorf("pool init said %q", r.stdout)
	}
	id1 := cliSnapshot(t, poolDir, "web1", src)

	// Restore into a new directory: identical tree.
	out1 := filepath.Join(tmp, "out1")
	cliOK(t, nil, "restore", "--pool", poolDir, id1, "--to", out1)
	cliCompare(t, orig, cliScan(t, out1))
	cliDiff(t, src, out1)

	// No change: every non-empty file is skipped, nothing new stored but
	// the manifest.
	var res struct {
		ID       string `json:"id"`
		Status   string `json:"status"`
		Files    int64  `json:"files"`
		Skipped  int64  `json:"skipped"`
		BytesNew int64  `json:"bytes_new"`
		Previous string `json:"previous"`
	}
	r = cliOK(t, nil, "snapshot", "create", "--pool", poolDir, "--host", "web1", "--json", src)
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("snapshot create --json: %v\n%s", err, r.stdout)
	}
	var nonEmpty int64
	for _, in := range orig {
		if in.Type == 0 && in.Size > 0 {
			nonEmpty++
		}
	}
	if res.Skipped != nonEmpty || res.BytesNew != 0 || res.Previous != id1 || res.Status != "complete" {
		t.Errorf("second snapshot: %+v; want %d skipped, 0 bytes new, previous %s", res, nonEmpty, id1)
	}
	if !strings.Contains(r.stderr, fmt.Sprintf("%d unchanged files skipped", nonEmpty)) {
		t.Errorf("summary line does not report the skipped files: %s", r.stderr)
	}

	// Mutate: change, delete, add. The old snapshot still restores the
	// old tree; the new one the new tree.
	cliWrite(t, filepath.Join(src, "many", "f03"), []byte("changed content"), 0o644, time.Unix(1_700_000_000, 0))
	if err := os.Remove(filepath.Join(src, "many", "f04")); err != nil {
		t.Fatal(err)
	}
	cliWrite(t, filepath.Join(src, "many", "zz-new"), []byte("new file"), 0o600, time.Time{})
	mutated := cliScan(t, src)
	id3 := cliSnapshot(t, poolDir, "web1", src)

	out2 := filepath.Join(tmp, "out2")
	cliOK(t, nil, "restore", "--pool", poolDir, id1, "--to", out2)
	cliCompare(t, orig, cliScan(t, out2))
	out3 := filepath.Join(tmp, "out3")
	cliOK(t, nil, "restore", "--pool", poolDir, "latest", "--to", out3, "--host", "web1")
	cliCompare(t, mutated, cliScan(t, out3))
	cliDiff(t, src, out3)

	// A subdirectory and a single file.
	out4 := filepath.Join(tmp, "out4")
	cliOK(t, nil, "restore", "--pool", poolDir, id3[:20]+"/docs", "--to", out4)
	if data, err := os.ReadFile(filepath.Join(out4, "text.txt")); err != nil || !bytes.Contains(data, []byte("lazy dog")) {
		t.Errorf("restore of a subdirectory: %v", err)
	}
	if fi, err := os.Stat(out4); err != nil || fi.ModTime().UnixNano() != orig["docs"].MTime {
		t.Errorf("restored subdirectory root did not take the directory's mtime: %v", err)
	}
	out5 := filepath.Join(tmp, "out5")
	cliOK(t, nil, "restore", "--pool", poolDir, id1+"/many/f03", "--to", out5)
	got := cliScan(t, out5)
	if len(got) != 1 || got["f03"] != orig["many/f03"] {
		t.Errorf("single-file restore: %+v, want f03 = %+v", got, orig["many/f03"])
	}

	// Listings.
	r = cliOK(t, nil, "snapshot", "ls", "--pool", poolDir)
	for _, id := range []string{id1, res.ID, id3} {
		if !strings.Contains(r.stdout, id) {
			t.Errorf("snapshot ls lacks %s:\n%s", id, r.stdout)
		}
	}
	var list []struct{ ID, Host, Source, Status string }
	r = cliOK(t, nil, "snapshot", "ls", "--pool", poolDir, "--host", "web1", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 3 || list[0].ID != id1 || list[0].Source != "src" {
		t.Errorf("snapshot ls --json: %v %+v", err, list)
	}
	r = cliOK(t, nil, "snapshot", "ls", "--pool", poolDir, "--host", "nobody", "--json")
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("snapshot ls of an unknown host: %q", r.stdout)
	}
	r = cliOK(t, nil, "ls", "--pool", poolDir, id1+"/bin")
	if !regexp.MustCompile(`(?m)^-rwsr-xr-x +root +root +15 .* suid$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^-r--r--r-- .* ro$`).MatchString(r.stdout) {
		t.Errorf("ls long listing:\n%s", r.stdout)
	}
	r = cliOK(t, nil, "ls", "--pool", poolDir, id1)
	if !strings.Contains(r.stdout, "rel-link -> docs/text.txt") || !strings.Contains(r.stdout, "drwxrwxrwt") {
		t.Errorf("ls of the root:\n%s", r.stdout)
	}
	var entries []struct {
		Name, Type, Perm, Target string
		Size                     int64
		MTimeNs                  int64 `json:"mtime_ns"`
	}
	r = cliOK(t, nil, "ls", "--pool", poolDir, "--json", id1+"/docs")
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
		t.Fatalf("ls --json: %v", err)
	}
	names := []string{}
	for _, e := range entries {
		names = append(names, e.Name)
		if e.Name == "text.txt" && (e.Size != orig["docs/text.txt"].Size || e.MTimeNs != orig["docs/text.txt"].MTime || e.Perm != "0640") {
			t.Errorf("ls --json text.txt: %+v", e)
		}
	}
	if !slices.Contains(names, "new\nline") || !slices.Contains(names, "caf\u00e9") || !slices.Contains(names, "cafe\u0301") {
		t.Errorf("ls --json names %q", names)
	}
	r = cliFail(t, nil, "ls", "--pool", poolDir, id1+"/nope")
	if !strings.Contains(r.stderr, "nope: no such file or directory") {
		t.Errorf("ls of a missing path: %q", r.stderr)
	}

	// Stats.
	var st struct {
		Snapshots   int   `json:"snapshots"`
		Objects     int64 `json:"objects"`
		StoredBytes int64 `json:"stored_bytes"`
	}
	r = cliOK(t, nil, "pool", "stats", "--pool", poolDir, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Snapshots != 3 || st.Objects == 0 || st.StoredBytes == 0 {
		t.Errorf("pool stats --json: %v %+v", err, st)
	}
	// The text compresses: stored is well below the source size.
	var srcBytes int64
	for _, in := range orig {
		srcBytes += in.Size
	}
	if st.StoredBytes >= srcBytes {
		t.Errorf("stored %d bytes for %d bytes of source (with a hard link and compressible text)", st.StoredBytes, srcBytes)
	}
	cliOK(t, nil, "pool", "check", "--pool", poolDir, "--read-data")
}

// TestCLICorruptionCheckAndHeal flips a bit in a stored object: check
// --read-data fails naming the snapshot and path, and the next snapshot
// of the same content heals the pool.
func TestCLICorruptionCheckAndHeal(t *testing.T) {
	tmp := t.TempDir()
	poolDir, src := filepath.Join(tmp, "pool"), filepath.Join(tmp, "src")
	cliWrite(t, filepath.Join(src, "keep", "a.txt"), bytes.Repeat([]byte("alpha "), 1000), 0o644, time.Time{})
	cliWrite(t, filepath.Join(src, "victim.bin"), cliRand(9, 200_000), 0o644, time.Time{})
	cliOK(t, nil, "pool", "init", "--pool", poolDir)
	id := cliSnapshot(t, poolDir, "db1", src)
	cliOK(t, nil, "pool", "check", "--pool", poolDir, "--read-data")

	var entries []struct {
		Name    string `json:"name"`
		Content string `json:"content"`
	}
	r := cliOK(t, nil, "ls", "--pool", poolDir, "--json", id+"/victim.bin")
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil || len(entries) != 1 || len(entries[0].Content) != 64 {
		t.Fatalf("ls --json victim.bin: %v %s", err, r.stdout)
	}
	d := entries[0].Content
	obj := filepath.Join(poolDir, "objects", d[:2], d[2:4], d)
	data, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x10
	if err := os.WriteFile(obj, data, 0o600); err != nil {
		t.Fatal(err)
	}

	// Structure alone does not re-read data: the object still exists.
	cliOK(t, nil, "pool", "check", "--pool", poolDir)
	r = cliFail(t, nil, "pool", "check", "--pool", poolDir, "--read-data")
	if !strings.Contains(r.stdout, "corrupt object "+d) || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "victim.bin") {
		t.Errorf("check report does not name the object, snapshot and path:\n%s", r.stdout)
	}
	if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 1 || !strings.Contains(lines[0], id) || !strings.Contains(lines[0], "victim.bin") {
		t.Errorf("stderr should be one line naming snapshot and path: %q", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(poolDir, "quarantine", d)); err != nil {
		t.Errorf("corrupt object not quarantined: %v", err)
	}
	// The damaged file does not restore silently.
	r = cliFail(t, nil, "restore", "--pool", poolDir, id, "--to", filepath.Join(tmp, "bad"))
	if !strings.Contains(r.stderr, "victim.bin") {
		t.Errorf("restore of a damaged snapshot: %q", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(tmp, "bad", "keep", "a.txt")); err != nil {
		t.Errorf("undamaged files were not restored: %v", err)
	}

	// Heal: the unchanged file is skipped against the previous snapshot,
	// its content is found missing, read again and stored again.
	cliSnapshot(t, poolDir, "db1", src)
	cliOK(t, nil, "pool", "check", "--pool", poolDir, "--read-data")
	out := filepath.Join(tmp, "healed")
	cliOK(t, nil, "restore", "--pool", poolDir, id, "--to", out)
	cliDiff(t, src, out)
}

func TestCLIGC(t *testing.T) {
	tmp := t.TempDir()
	poolDir, src := filepath.Join(tmp, "pool"), filepath.Join(tmp, "src")
	cliWrite(t, filepath.Join(src, "shared"), []byte("in both snapshots"), 0o644, time.Time{})
	cliWrite(t, filepath.Join(src, "gone"), cliRand(3, 50_000), 0o644, time.Time{})
	cliOK(t, nil, "pool", "init", "--pool", poolDir)
	id1 := cliSnapshot(t, poolDir, "h", src)
	if err := os.Remove(filepath.Join(src, "gone")); err != nil {
		t.Fatal(err)
	}
	id2 := cliSnapshot(t, poolDir, "h", src)
	// Forget the first snapshot: its own objects become garbage.
	if err := os.Remove(filepath.Join(poolDir, "snapshots", id1)); err != nil {
		t.Fatal(err)
	}
	countObjects := func() int {
		n := 0
		filepath.WalkDir(filepath.Join(poolDir, "objects"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
		return n
	}
	before := countObjects()

	r := cliOK(t, nil, "pool", "gc", "--pool", poolDir, "--dry-run")
	if !strings.Contains(r.stdout, "would delete 0 ") || !regexp.MustCompile(`kept [1-9]\d* younger than 1h0m0s`).MatchString(r.stdout) {
		t.Errorf("gc --dry-run within the grace period: %s", r.stdout)
	}
	r = cliOK(t, nil, "pool", "gc", "--pool", poolDir, "--dry-run", "--grace", "0")
	m := regexp.MustCompile(`would delete (\d+) unreferenced objects \(([^)]+)\)`).FindStringSubmatch(r.stdout)
	if m == nil || m[1] == "0" {
		t.Fatalf("gc --dry-run --grace 0: %s", r.stdout)
	}
	if n := countObjects(); n != before {
		t.Fatalf("dry run deleted objects: %d → %d", before, n)
	}
	var rep struct {
		DryRun bool
		Swept  int
	}
	r = cliOK(t, nil, "pool", "gc", "--pool", poolDir, "--grace", "0", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.DryRun || fmt.Sprint(rep.Swept) != m[1] {
		t.Errorf("gc --json: %v %+v, dry run said %s", err, rep, m[1])
	}
	if n := countObjects(); n != before-rep.Swept {
		t.Errorf("objects %d → %d after sweeping %d", before, n, rep.Swept)
	}
	cliOK(t, nil, "pool", "check", "--pool", poolDir, "--read-data")
	cliOK(t, nil, "restore", "--pool", poolDir, id2, "--to", filepath.Join(tmp, "out"))
}

func TestCLIErrors(t *testing.T) {
	tmp := t.TempDir()
	oneLine := func(t *testing.T, r cliResult, want ...string) {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if len(lines) != 1 {
			t.Errorf("stderr has %d lines, want one: %q", len(lines), r.stderr)
		}
		for _, w := range want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("stderr %q does not say %q", r.stderr, w)
			}
		}
	}
	missing := filepath.Join(tmp, "no-such-pool")
	oneLine(t, cliFail(t, nil, "snapshot", "ls", "--pool", missing), "no cairn pool at "+missing)
	if _, err := os.Stat(missing); err == nil {
		t.Error("opening a missing pool created its directory")
	}
	notPool := t.TempDir()
	oneLine(t, cliFail(t, nil, "ls", "--pool", notPool, "latest"), "no cairn pool at "+notPool)
	oneLine(t, cliFail(t, nil, "snapshot", "ls"), "no --pool given")

	poolDir := filepath.Join(tmp, "pool")
	cliOK(t, nil, "pool", "init", "--pool", poolDir)
	oneLine(t, cliFail(t, nil, "pool", "init", "--pool", poolDir), "already exists")
	env := []string{"CAIRN_POOL=" + poolDir}
	oneLine(t, cliFail(t, env, "ls", "latest"), "no snapshots in pool")
	oneLine(t, cliFail(t, env, "restore", "0000", "--to", filepath.Join(tmp, "x")), `no snapshot "0000"`)
	oneLine(t, cliFail(t, env, "snapshot", "create", "--host", "h", filepath.Join(tmp, "nope")), "no such file or directory")
	oneLine(t, cliFail(t, env, "snapshot", "create", "--host", "a/b", tmp), "must be non-empty names")
	if r := cliRun(t, env, "pool", "check", "--read-data=200"); r.code != 2 || !strings.Contains(r.stderr, "want a percentage in (0, 100]") {
		t.Errorf("bad --read-data: exit %d, %q", r.code, r.stderr)
	}
	if r := cliRun(t, env, "snapshot", "create", tmp); r.code != 2 {
		t.Errorf("snapshot create without --host: exit %d, want 2 (usage)", r.code)
	}
	r := cliOK(t, env, "snapshot", "ls", "--json")
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("empty pool snapshot ls --json = %q", r.stdout)
	}
}

func TestCLIEncryptedPool(t *testing.T) {
	tmp := t.TempDir()
	poolDir, src, key := filepath.Join(tmp, "pool"), filepath.Join(tmp, "src"), filepath.Join(tmp, "pool.key")
	cliWrite(t, filepath.Join(src, "secret.txt"), []byte("attack at dawn"), 0o600, time.Time{})
	r := cliOK(t, nil, "pool", "init", "--pool", poolDir, "--encrypt", "--key-file", key)
	if !strings.Contains(r.stdout, key) {
		t.Errorf("init does not point at the key file: %s", r.stdout)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v", err)
	}
	r = cliFail(t, nil, "snapshot", "ls", "--pool", poolDir)
	if !strings.Contains(r.stderr, "encrypted") {
		t.Errorf("no key: %q", r.stderr)
	}
	other := filepath.Join(tmp, "other.key")
	cliOK(t, nil, "pool", "init", "--pool", filepath.Join(tmp, "pool2"), "--encrypt", "--key-file", other)
	r = cliFail(t, nil, "snapshot", "ls", "--pool", poolDir, "--key-file", other)
	if !strings.Contains(r.stderr, "wrong encryption key") {
		t.Errorf("wrong key: %q", r.stderr)
	}
	env := []string{"CAIRN_POOL=" + poolDir, "CAIRN_KEY_FILE=" + key}
	r = cliOK(t, env, "snapshot", "create", "--host", "h", src)
	id := strings.TrimSpace(r.stdout)
	out := filepath.Join(tmp, "out")
	cliOK(t, env, "restore", id, "--to", out)
	if data, err := os.ReadFile(filepath.Join(out, "secret.txt")); err != nil || string(data) != "attack at dawn" {
		t.Errorf("restored %q, %v", data, err)
	}
	// Nothing in the pool shows the plaintext.
	filepath.WalkDir(poolDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("attack at dawn")) || bytes.Contains(b, []byte("secret.txt")) {
				t.Errorf("%s holds plaintext", p)
			}
		}
		return nil
	})
}

// TestCLIRestoreStaysInside restores into a directory an attacker
// prepared: a symlink where the snapshot has a directory, and a hard link
// to an outside file where it has a file. Nothing outside may change.
func TestCLIRestoreStaysInside(t *testing.T) {
	tmp := t.TempDir()
	poolDir, src := filepath.Join(tmp, "pool"), filepath.Join(tmp, "src")
	cliWrite(t, filepath.Join(src, "sub", "x"), []byte("from the snapshot"), 0o644, time.Time{})
	cliWrite(t, filepath.Join(src, "file"), []byte("from the snapshot"), 0o644, time.Time{})
	cliOK(t, nil, "pool", "init", "--pool", poolDir)
	id := cliSnapshot(t, poolDir, "h", src)

	victimDir := filepath.Join(tmp, "victim")
	cliWrite(t, filepath.Join(victimDir, "precious"), []byte("untouched"), 0o644, time.Time{})
	out := filepath.Join(tmp, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victimDir, filepath.Join(out, "sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(victimDir, "precious"), filepath.Join(out, "file")); err != nil {
		t.Fatal(err)
	}
	r := cliFail(t, nil, "restore", "--pool", poolDir, id, "--to", out)
	if !strings.Contains(r.stderr, "sub: exists and is not a directory") {
		t.Errorf("restore over a planted symlink: %q", r.stderr)
	}
	if data, _ := os.ReadFile(filepath.Join(victimDir, "precious")); string(data) != "untouched" {
		t.Errorf("restore wrote through a planted hard link: %q", data)
	}
	if _, err := os.Lstat(filepath.Join(victimDir, "x")); err == nil {
		t.Error("restore followed a planted symlink")
	}
	if data, _ := os.ReadFile(filepath.Join(out, "file")); string(data) != "from the snapshot" {
		t.Errorf("out/file = %q", data)
	}
}

// TestCLIPartialSnapshot: an unreadable file makes the snapshot partial,
// with a warning and exit status 0. Root reads everything, so as root the
// binary runs as nobody.
func TestCLIPartialSnapshot(t *testing.T) {
	tmp := t.TempDir()
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
		tmp = cliPublicDir(t)
	}
	poolDir, src := filepath.Join(tmp, "pool"), filepath.Join(tmp, "src")
	cliWrite(t, filepath.Join(src, "ok.txt"), []byte("fine"), 0o644, time.Time{})
	cliWrite(t, filepath.Join(src, "locked.txt"), []byte("secret"), 0o000, time.Time{})
	if err := os.Chmod(src, 0o755); err != nil {
		t.Fatal(err)
	}
	r := cliRunAs(t, cred, nil, "pool", "init", "--pool", poolDir)
	if r.code != 0 {
		t.Fatalf("pool init: %s", r.stderr)
	}
	r = cliRunAs(t, cred, nil, "snapshot", "create", "--pool", poolDir, "--host", "h", "--json", src)
	if r.code != 0 {
		t.Fatalf("partial snapshot: exit %d: %s", r.code, r.stderr)
	}
	var res struct {
		Status     string   `json:"status"`
		Errors     []string `json:"errors"`
		ErrorCount int      `json:"error_count"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	if res.Status != "partial" || res.ErrorCount != 1 || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "locked.txt") || !strings.Contains(res.Errors[0], "permission denied") {
		t.Errorf("manifest %+v", res)
	}
	if !strings.Contains(r.stderr, "warning: snapshot") || !strings.Contains(r.stderr, "is partial") {
		t.Errorf("no partial warning: %s", r.stderr)
	}
}

func TestProgressFormatting(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 5 << 20: "5.0 MiB", 3 << 40: "3.0 TiB"} {
		if got := fmtBytes(n); got != want {
			t.Errorf("fmtBytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := fmtDuration(3*time.Hour + 2*time.Minute + 5*time.Second); got != "3:02:05" {
		t.Errorf("fmtDuration = %q", got)
	}
	now := time.Unix(1000, 0)
	var buf bytes.Buffer
	p := &progress{w: &buf, verb: "snapshot", totalBytes: 100 << 20, width: 100, lineEvery: time.Second,
		now: func() time.Time { return now }, start: now.Add(-10 * time.Second), lastLine: now.Add(-2 * time.Second)}
	p.Set(progressState{Files: 42, Bytes: 50 << 20, Skipped: 3, Errors: 1, Path: "a/b\nc"})
	p.tick()
	want := "cairn snapshot: 42 files, 50.0 MiB of ~100.0 MiB, 5.0 MiB/s, 3 unchanged, 1 errors, ETA 0:10, at \"a/b\\nc\"\n"
	if buf.String() != want {
		t.Errorf("progress line\n got %q\nwant %q", buf.String(), want)
	}
	p.tty = true
	buf.Reset()
	p.tick()
	if s := buf.String(); !strings.HasPrefix(s, "\r\x1b[K[============            ]  50% 42 files 50.0 MiB 5.0 MiB/s 1 err ETA 0:10") || len(s) > 3+100 {
		t.Errorf("progress bar %q", s)
	}
}

// TestCLIS3Pool runs the round trip on a pool in a real S3 server, with
// the credentials in the environment, not in the location.
func TestCLIS3Pool(t *testing.T) {
	s3 := testenv.S3(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	cliTree(t, src)
	loc := fmt.Sprintf("s3://%s/%s/cli-test?region=%s&insecure=1", s3.Endpoint, s3.Bucket, s3.Region)
	env := []string{"CAIRN_POOL=" + loc, "CAIRN_S3_ACCESS_KEY=" + s3.AccessKey, "CAIRN_S3_SECRET_KEY=" + s3.SecretKey}
	cliOK(t, env, "pool", "init")
	r := cliOK(t, env, "snapshot", "create", "--host", "s3host", src)
	id := strings.TrimSpace(r.stdout)
	r = cliOK(t, env, "snapshot", "create", "--host", "s3host", "--json", src)
	var res struct{ Skipped int64 }
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Skipped == 0 {
		t.Errorf("second snapshot on S3: %v, skipped %d", err, res.Skipped)
	}
	out := filepath.Join(tmp, "out")
	cliOK(t, env, "restore", id, "--to", out)
	cliCompare(t, cliScan(t, src), cliScan(t, out))
	cliOK(t, env, "pool", "check", "--read-data=50")
	r = cliOK(t, env, "pool", "stats")
	if !strings.Contains(r.stdout, "s3://") || strings.Contains(r.stdout+r.stderr, s3.SecretKey) {
		t.Errorf("pool stats on S3:\n%s", r.stdout)
	}
	// Wrong credentials: one clear line, no secret in it.
	bad := []string{"CAIRN_POOL=" + loc, "CAIRN_S3_ACCESS_KEY=" + s3.AccessKey, "CAIRN_S3_SECRET_KEY=wrong-secret-value"}
	r = cliFail(t, bad, "snapshot", "ls")
	if strings.Contains(r.stderr, "wrong-secret-value") || len(strings.Split(strings.TrimSpace(r.stderr), "\n")) != 1 {
		t.Errorf("bad credentials: %q", r.stderr)
	}
}

// cliPTY opens a pseudo-terminal pair, or skips when the kernel offers
// none (a container without devpts).
func cliPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		ptyMissing(t, "no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		ptyMissing(t, "unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		ptyMissing(t, "pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		ptyMissing(t, "open pty slave: %v", err)
	}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 100}); err != nil {
		t.Fatal(err)
	}
	return m, s
}

// TestCLIProgressBarOnTerminal: with stderr on a terminal, snapshot
// create draws a bar there and still prints only the ID on stdout.
func TestCLIProgressBarOnTerminal(t *testing.T) {
	tmp := t.TempDir()
	poolDir, src := filepath.Join(tmp, "pool"), filepath.Join(tmp, "src")
	cliWrite(t, filepath.Join(src, "f"), []byte("data"), 0o644, time.Time{})
	cliOK(t, nil, "pool", "init", "--pool", poolDir)
	master, slave := cliPTY(t)
	cmd := exec.Command(cairnBin, "snapshot", "create", "--pool", poolDir, "--host", "tty", src)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	read := make(chan []byte, 1)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			b.Write(buf[:n])
			if err != nil { // EIO once the child closed the terminal
				read <- b.Bytes()
				return
			}
		}
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("snapshot create on a terminal: %v", err)
	}
	tty := string(<-read)
	if !snapIDRe.MatchString(strings.TrimSpace(out.String())) {
		t.Errorf("stdout %q", out.String())
	}
	if !strings.Contains(tty, "\r\x1b[K[") || !strings.Contains(tty, " files ") || !strings.Contains(tty, "cairn snapshot: ") {
		t.Errorf("terminal got no progress bar: %q", tty)
	}
}

func TestCLIExcludeAndSourceName(t *testing.T) {
	tmp := t.TempDir()
	poolDir, src := filepath.Join(tmp, "pool"), filepath.Join(tmp, "src")
	for _, p := range []string{"keep.txt", "app.log", "cache/blob", "sub/app.log", "sub/keep"} {
		cliWrite(t, filepath.Join(src, p), []byte(p), 0o644, time.Time{})
	}
	cliOK(t, nil, "pool", "init", "--pool", poolDir)
	id := cliSnapshot(t, poolDir, "h", src, "--source", "etc", "--exclude", "*.log", "--exclude", "cache")
	out := filepath.Join(tmp, "out")
	cliOK(t, nil, "restore", "--pool", poolDir, id, "--to", out)
	got := slices.Sorted(func(yield func(string) bool) {
		for p := range cliScan(t, out) {
			if !yield(p) {
				return
			}
		}
	})
	if want := []string{"keep.txt", "sub", "sub/keep"}; !slices.Equal(got, want) {
		t.Errorf("restored %q, want %q", got, want)
	}
	var list []struct{ Source string }
	r := cliOK(t, nil, "snapshot", "ls", "--pool", poolDir, "--source", "etc", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0].Source != "etc" {
		t.Errorf("snapshot ls --source etc: %v %q", err, r.stdout)
	}
}

// ptyMissing fails under CI=true (where pseudo-terminals must work) and
// skips elsewhere, e.g. in a container without devpts.
func ptyMissing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
