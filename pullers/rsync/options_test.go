package rsync_test

import (
	"context"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/pullertest"
	"github.com/cairn-backup/cairn/pullers/rsync"
)

func TestRegistered(t *testing.T) {
	p, err := pullers.Get(rsync.Method)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(*rsync.Puller); !ok {
		t.Fatalf("Get(%q) = %T", rsync.Method, p)
	}
}

func walk(t *testing.T, sfs fs.FS) []string {
	t.Helper()
	var out []string
	err := fs.WalkDir(sfs, ".", func(p string, _ fs.DirEntry, err error) error {
		out = append(out, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestExcludesAndOneFS: Source.Excludes reach the sender; one_file_system
// keeps a mount point but not what is mounted on it.
func TestExcludesAndOneFS(t *testing.T) {
	s := testenv.Rsyncd(t)
	for _, f := range []string{"keep/a", "keep/skip.tmp", "cache/x", "deep/cache/y", "mnt/.keep"} {
		p := filepath.Join(s.Dir, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mnt := filepath.Join(s.Dir, "mnt")
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v", err)
		}
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(mnt, "on-tmpfs"), []byte("other fs"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := pullertest.NewPool(t)
	src := daemonSource(s, s.Module, "/")
	src.Excludes = []string{"*.tmp", "/cache"}
	src.Options["one_file_system"] = "true"
	m, err := pullOnce(t, p, rsync.New(), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := walk(t, p.SnapshotFS(ctx, m))
	want := []string{".", "deep", "deep/cache", "deep/cache/y", "keep", "keep/a", "mnt"}
	if !slices.Equal(got, want) {
		t.Fatalf("snapshot %q, want %q", got, want)
	}

	src.Excludes = nil
	delete(src.Options, "one_file_system")
	m, err = pullOnce(t, p, rsync.New(), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := walk(t, p.SnapshotFS(ctx, m)); !slices.Contains(got, "mnt/on-tmpfs") || !slices.Contains(got, "keep/skip.tmp") {
		t.Fatalf("without options: %q", got)
	}
	rep, err := p.Check(ctx, pool.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("pool check: %v %s", err, rep.String())
	}
}

// TestCancel: cancelling the context mid-transfer ends the pull at once
// with the context's error, and the aborted snapshot leaves the pool
// consistent.
func TestCancel(t *testing.T) {
	s := testenv.Rsyncd(t)
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(s.Dir, "f"+string(rune('a'+i))), make([]byte, 8<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := pullertest.NewPool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	err = rsync.New().Pull(ctx, &pullers.Job{Source: daemonSource(s, s.Module, "/"), Sink: w,
		Progress: func(pr pullers.Progress) {
			if pr.Path == "fb" {
				cancel()
			}
		}})
	w.Abort()
	if err != context.Canceled {
		t.Fatalf("cancelled pull: %v", err)
	}
	rep, err := p.Check(context.Background(), pool.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("pool check: %v %s", err, rep.String())
	}
}

// TestOwnerNamesSSH: the sender's uid/gid name lists reach Entry.User
// and Entry.Group; numeric_ids turns them off.
func TestOwnerNamesSSH(t *testing.T) {
	testenv.Need(t, "rsync")
	s := testenv.SSHD(t)
	f := filepath.Join(s.Dir, "owned")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(f, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	wantU, wantG := lookupNames(t, 65534)
	p := pullertest.NewPool(t)
	for _, numeric := range []bool{false, true} {
		src := sshSource(t, s, s.Dir)
		if numeric {
			src.Options["numeric_ids"] = "true"
			wantU, wantG = "", ""
		}
		m, err := pullOnce(t, p, rsync.New(), src, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := fs.Stat(p.SnapshotFS(context.Background(), m), "owned")
		if err != nil {
			t.Fatal(err)
		}
		e := st.Sys().(*pool.Entry)
		if e.UID != 65534 || e.GID != 65534 || e.User != wantU || e.Group != wantG {
			t.Errorf("numeric=%v: owner %d:%d %q:%q, want 65534:65534 %q:%q", numeric, e.UID, e.GID, e.User, e.Group, wantU, wantG)
		}
	}
}

func lookupNames(t *testing.T, id int) (string, string) {
	t.Helper()
	u, err := user.LookupId(strconv.Itoa(id))
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(strconv.Itoa(id))
	if err != nil {
		t.Fatal(err)
	}
	return u.Username, g.Name
}

// TestSortOrder: names that sort differently with and without a
// directory's trailing slash; each file must get its own content (the
// file index is the position in rsync's sorted list).
func TestSortOrder(t *testing.T) {
	s := testenv.Rsyncd(t)
	files := []string{"a-x", "a/b", "a/b-c", "a/b/c", "a.b", "a0", "a/ ", "b", "b/a", "-", "a!"}
	for _, f := range files {
		p := filepath.Join(s.Dir, f)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
	}
	for _, f := range files {
		p := filepath.Join(s.Dir, f)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			continue
		}
		if err := os.WriteFile(p, []byte("content of "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := pullertest.NewPool(t)
	m, err := pullOnce(t, p, rsync.New(), daemonSource(s, s.Module, "/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.ErrorCount != 0 {
		t.Fatalf("errors: %q", m.Errors)
	}
	sfs := p.SnapshotFS(context.Background(), m)
	n := 0
	for _, f := range files {
		if st, err := os.Stat(filepath.Join(s.Dir, f)); err == nil && st.IsDir() {
			continue
		}
		b, err := fs.ReadFile(sfs, f)
		if err != nil || string(b) != "content of "+f {
			t.Errorf("%s: %q %v", f, b, err)
		}
		n++
	}
	if n < 8 {
		t.Fatalf("only %d files checked", n)
	}
}
