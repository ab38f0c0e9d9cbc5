package webdav

import (
	"context"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
)

// storeDir stores the local tree src as one snapshot through the pool's
// Writer.
func storeDir(t testing.TB, ctx context.Context, p *pool.Pool, host, source, src string, start time.Time) {
	t.Helper()
	w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: host, Source: source, Start: start})
	must(t, err)
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		e := pool.Entry{Mode: info.Mode().Perm(), UID: st.Uid, GID: st.Gid, ModTime: info.ModTime().UnixNano()}
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
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		return w.Add(ctx, filepath.ToSlash(rel), e, r)
	})
	if err != nil {
		w.Abort()
		t.Fatal(err)
	}
	_, err = w.Finish(ctx)
	must(t, err)
}

// TestPoolShare serves a real pool's restore tree: PROPFIND, GET digests,
// Range, rclone copy, and a new snapshot appearing.
func TestPoolShare(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := pool.OpenBackend(ctx, filepath.Join(dir, "pool"), pool.OpenBackendOptions{Create: true})
	must(t, err)
	p, err := pool.Init(ctx, b, pool.InitOptions{})
	must(t, err)
	src := filepath.Join(dir, "src")
	files := map[string][]byte{
		"etc/hostname":      []byte("web1\n"),
		"home/alice/a.txt":  []byte("alice\n"),
		"home/alice/b c.md": []byte("# b c\n"),
		"var/big.bin":       big(5<<20 + 3),
		"empty":             nil,
	}
	for name, data := range files {
		path := filepath.Join(src, name)
		must(t, os.MkdirAll(filepath.Dir(path), 0o755))
		must(t, os.WriteFile(path, data, 0o644))
	}
	must(t, os.Symlink("a.txt", filepath.Join(src, "home/alice/link")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(src, "home/alice/abs")))
	t1 := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	storeDir(t, ctx, p, "web1", "root", src, t1)
	srv := newServer(t, p.FS(ctx), "/dav")
	snap1 := t1.Format(pool.SnapshotTimeFormat)

	_, got := propfind(t, srv.URL+"/dav/web1/latest/root/home/alice/", "1")
	base := "/dav/web1/latest/root/home/alice/"
	want := []string{base, base + "a.txt", base + "b c.md", base + "link"}
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, want) {
		t.Errorf("PROPFIND hrefs %q, want %q", keys, want)
	}
	if e := got[base+"a.txt"]; e.length != "6" || e.etag == "" || e.modified == "" {
		t.Errorf("a.txt props %+v", e)
	}
	for name, data := range files {
		for _, snap := range []string{"latest", snap1} {
			resp, body := do(t, "GET", srv.URL+"/dav/web1/"+snap+"/root/"+name, nil, "")
			if resp.StatusCode != 200 || sum(body) != sum(data) {
				t.Errorf("GET %s/%s: %d, %d bytes", snap, name, resp.StatusCode, len(body))
			}
		}
	}
	resp, body := do(t, "GET", srv.URL+"/dav/web1/latest/root/var/big.bin", map[string]string{"Range": "bytes=-100"}, "")
	if resp.StatusCode != http.StatusPartialContent || sum(body) != sum(files["var/big.bin"][5<<20+3-100:]) {
		t.Errorf("range: %d, %d bytes", resp.StatusCode, len(body))
	}

	// A new snapshot appears without restarting the handler.
	t2 := t1.Add(time.Hour)
	must(t, os.WriteFile(filepath.Join(src, "etc/hostname"), []byte("web1 v2\n"), 0o644))
	storeDir(t, ctx, p, "web1", "root", src, t2)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := do(t, "GET", srv.URL+"/dav/web1/latest/root/etc/hostname", nil, "")
		if string(body) == "web1 v2\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("latest still serves %q", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, hosts := propfind(t, srv.URL+"/dav/web1/", "1")
	if _, ok := hosts["/dav/web1/"+t2.Format(pool.SnapshotTimeFormat)+"/"]; !ok || len(hosts) != 4 {
		t.Errorf("web1 listing: %v", slices.Sorted(maps.Keys(hosts)))
	}

	t.Run("rclone", func(t *testing.T) {
		testenv.Need(t, "rclone")
		out := t.TempDir()
		cmd := exec.Command("rclone", "--config", "/dev/null", "--retries", "1", "copy",
			"--webdav-url", srv.URL+"/dav/web1/"+snap1+"/root", ":webdav:", out)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("rclone: %v\n%s", err, b)
		}
		files["home/alice/link"] = files["home/alice/a.txt"]
		n := 0
		must(t, filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(out, path)
			data, ok := files[filepath.ToSlash(rel)]
			b, err := os.ReadFile(path)
			if !ok || err != nil || sum(b) != sum(data) {
				t.Errorf("%s: expected=%v err=%v sha256 %s want %s", rel, ok, err, sum(b), sum(data))
			}
			n++
			return nil
		}))
		if n != len(files) {
			t.Errorf("rclone copied %d files, want %d", n, len(files))
		}
	})
}
