package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fusefs"
	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
)

// mountSnapshotDir stores the local tree src as one snapshot through the
// pool's Writer, with the metadata the FUSE mount must show.
func mountSnapshotDir(t *testing.T, ctx context.Context, p *pool.Pool, host, source, src string, start time.Time) *pool.Manifest {
	t.Helper()
	w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: host, Source: source, Start: start})
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		rel = filepath.ToSlash(rel)
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		e := pool.Entry{Mode: info.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky),
			UID: st.Uid, GID: st.Gid, ModTime: info.ModTime().UnixNano()}
		var r io.Reader
		switch {
		case info.IsDir():
			e.Type = pool.TypeDir
		case info.Mode()&fs.ModeSymlink != 0:
			e.Type = pool.TypeSymlink
			if e.Target, err = os.Readlink(path); err != nil {
				return err
			}
		default:
			e.Type, e.Size = pool.TypeFile, info.Size()
			if st.Nlink > 1 {
				e.HardLink = st.Ino
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		return w.Add(ctx, rel, e, r)
	})
	if err != nil {
		w.Abort()
		t.Fatal(err)
	}
	m, err := w.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMountCommand runs the real binary: `cairn mount` of a pool with a
// snapshot, digests compared through the kernel mount, a second snapshot
// appearing while mounted, then SIGTERM and a clean unmount.
func TestMountCommand(t *testing.T) {
	testenv.Need(t, "fusermount3")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("FUSE mount tests need root here (/dev/fuse is 0600)")
		}
		t.Skip("FUSE mount tests need root")
	}
	ctx := context.Background()
	dir := t.TempDir()
	poolDir := filepath.Join(dir, "pool")
	b, err := pool.OpenBackend(ctx, poolDir, pool.OpenBackendOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.Init(ctx, b, pool.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}

	src := filepath.Join(dir, "src")
	for name, data := range map[string][]byte{
		"etc/hostname":         []byte("web1\n"),
		"home/alice/notes.txt": []byte("hello from alice\n"),
		"var/big.bin":          randomBytes(6<<20 + 1234),
		"empty":                nil,
	} {
		path := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("notes.txt", filepath.Join(src, "home/alice/link")))
	must(os.Link(filepath.Join(src, "etc/hostname"), filepath.Join(src, "home/alice/hostname-hl")))
	must(os.Chown(filepath.Join(src, "home/alice/notes.txt"), 1000, 1001))
	mt := time.Unix(1700000000, 123456789)
	must(os.Chtimes(filepath.Join(src, "home/alice/notes.txt"), mt, mt))
	start := time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)
	mountSnapshotDir(t, ctx, p, "web1", "root", src, start)

	mp := filepath.Join(dir, "mnt")
	must(os.Mkdir(mp, 0o755))
	var stderr lockedBuffer
	cmd := exec.Command(cairnBin, "mount", mp, "--pool", poolDir)
	cmd.Stderr = &stderr
	must(cmd.Start())
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
			fusefs.ClearStale(mp)
		}
	})
	waitFor(t, "the mount", func() bool {
		select {
		case <-exited:
			t.Fatalf("cairn mount exited: %v\n%s", exitErr, stderr.String())
		default:
		}
		ents, err := os.ReadDir(mp)
		return err == nil && len(ents) == 1 && ents[0].Name() == "web1"
	})

	snap := filepath.Join(mp, "web1", "latest", "root")
	n := 0
	must(filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if got, want := fileSum(t, filepath.Join(snap, rel)), fileSum(t, path); got != want {
			t.Errorf("%s: sha256 %s through the mount, want %s", rel, got, want)
		}
		n++
		return nil
	}))
	if n != 5 {
		t.Errorf("compared %d files", n)
	}
	var st, a, hl syscall.Stat_t
	must(syscall.Stat(filepath.Join(snap, "home/alice/notes.txt"), &st))
	if st.Uid != 1000 || st.Gid != 1001 || st.Mode != syscall.S_IFREG|0o640 || st.Size != 17 || time.Unix(st.Mtim.Unix()) != mt {
		t.Errorf("notes.txt stat: uid %d gid %d mode %o size %d mtime %v", st.Uid, st.Gid, st.Mode, st.Size, time.Unix(st.Mtim.Unix()))
	}
	must(syscall.Stat(filepath.Join(snap, "etc/hostname"), &a))
	must(syscall.Stat(filepath.Join(snap, "home/alice/hostname-hl"), &hl))
	if a.Ino != hl.Ino || a.Nlink < 2 {
		t.Errorf("hard links: ino %d/%d nlink %d", a.Ino, hl.Ino, a.Nlink)
	}
	if target, err := os.Readlink(filepath.Join(snap, "home/alice/link")); err != nil || target != "notes.txt" {
		t.Errorf("readlink: %q, %v", target, err)
	}
	if err := os.WriteFile(filepath.Join(snap, "etc/new"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write through the mount: %v, want EROFS", err)
	}

	// A new snapshot shows up without a remount.
	first, err := os.Readlink(filepath.Join(mp, "web1", "latest"))
	must(err)
	must(os.WriteFile(filepath.Join(src, "etc/hostname"), []byte("web1 again\n"), 0o640))
	mountSnapshotDir(t, ctx, p, "web1", "root", src, start.Add(time.Minute))
	waitFor(t, "the second snapshot", func() bool {
		ents, _ := os.ReadDir(filepath.Join(mp, "web1"))
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return len(names) == 3 && slices.Contains(names, first) && slices.Contains(names, "latest")
	})
	waitFor(t, "latest to move", func() bool {
		b, _ := os.ReadFile(filepath.Join(mp, "web1/latest/root/etc/hostname"))
		return string(b) == "web1 again\n"
	})

	must(cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-exited:
		if exitErr != nil {
			t.Errorf("cairn mount after SIGTERM: %v\n%s", exitErr, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("cairn mount still running 30s after SIGTERM\n%s", stderr.String())
	}
	if ok, err := fusefs.Mounted(mp); ok || err != nil {
		t.Errorf("still mounted after SIGTERM: %v %v", ok, err)
	}
	if !strings.Contains(stderr.String(), "mounted read-only") {
		t.Errorf("stderr: %s", stderr.String())
	}
}

func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(7, 11))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestMountUsage(t *testing.T) {
	for _, args := range [][]string{{"mount"}, {"mount", "/tmp"}, {"mount", "--pool", "/nonexistent"}, {"mount", "a", "b", "--pool", "p"}} {
		err := exec.Command(cairnBin, args...).Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("cairn %v: %v, want exit status 2", args, err)
		}
	}
	// A pool that is not there is a plain failure with one line on stderr.
	out, err := exec.Command(cairnBin, "mount", t.TempDir(), "--pool", filepath.Join(t.TempDir(), "nopool")).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.HasPrefix(string(out), "cairn mount: ") {
		t.Errorf("missing pool: %v %q", err, out)
	}
}

func TestParseInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	p := fs.String("pool", "", "")
	v := fs.Bool("v", false, "")
	pos, err := parseInterspersed(fs, []string{"/mnt", "--pool", "P", "-v", "--", "-odd"})
	if err != nil || *p != "P" || !*v || !slices.Equal(pos, []string{"/mnt", "-odd"}) {
		t.Errorf("pos %q pool %q v %v err %v", pos, *p, *v, err)
	}
}
