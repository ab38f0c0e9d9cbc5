package webdav

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// hideHost is a view of a tree without one host (as the appliance's
// per-user filter is), forwarding Lstat.
type hideHost struct {
	fs.FS
	host string
}

func (h hideHost) hidden(name string) bool {
	return name == h.host || strings.HasPrefix(name, h.host+"/")
}

func (h hideHost) Open(name string) (fs.File, error) {
	if h.hidden(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return h.FS.Open(name)
}

func (h hideHost) Lstat(name string) (fs.FileInfo, error) {
	if h.hidden(name) {
		return nil, &fs.PathError{Op: "lstat", Path: name, Err: fs.ErrNotExist}
	}
	return fs.Lstat(h.FS, name)
}

func (h hideHost) ReadLink(name string) (string, error) {
	if h.hidden(name) {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrNotExist}
	}
	return fs.ReadLink(h.FS, name)
}

// cachePool stores two hosts with a few files (one chunked) in a pool.
func cachePool(t *testing.T) (*pool.Pool, map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	b, err := pool.OpenBackend(ctx, filepath.Join(dir, "pool"), pool.OpenBackendOptions{Create: true})
	must(t, err)
	p, err := pool.Init(ctx, b, pool.InitOptions{})
	must(t, err)
	files := map[string][]byte{
		"a/b/c/small.txt": []byte("small\n"),
		"a/b/big.bin":     big(5<<20 + 333),
	}
	for i := range 20 {
		files[fmt.Sprintf("many/f%02d.dat", i)] = []byte(strings.Repeat(fmt.Sprint(i), 100+i))
	}
	for _, host := range []string{"pub", "secret"} {
		src := filepath.Join(dir, "src-"+host)
		for name, data := range files {
			p := filepath.Join(src, name)
			must(t, os.MkdirAll(filepath.Dir(p), 0o755))
			must(t, os.WriteFile(p, data, 0o644))
		}
		storeDir(t, ctx, p, host, "root", src, time.Unix(1700000000, 0))
	}
	return p, files
}

// Handlers over different views of one tree share a Cache: what one view
// put in it never shows a host the other hides, and every answer has the
// right bytes.
func TestSharedCacheKeepsHostsHidden(t *testing.T) {
	p, files := cachePool(t)
	tree := p.FS(context.Background())
	cache := NewCache(CacheOptions{})
	opts := Options{Cache: cache, Immutable: PoolLayout}
	all := httptest.NewServer(NewHandlerOptions(tree, "/dav", opts))
	t.Cleanup(all.Close)
	some := httptest.NewServer(NewHandlerOptions(hideHost{FS: tree, host: "secret"}, "/dav", opts))
	t.Cleanup(some.Close)

	// The full view lists and reads the secret host, filling the cache.
	snap := time.Unix(1700000000, 0).UTC().Format(pool.SnapshotTimeFormat)
	for _, dir := range []string{"", "a/", "a/b/", "a/b/c/", "many/"} {
		resp, _ := do(t, "PROPFIND", all.URL+"/dav/secret/"+snap+"/root/"+dir, map[string]string{"Depth": "1"}, "")
		if resp.StatusCode != http.StatusMultiStatus {
			t.Fatalf("PROPFIND %s: %s", dir, resp.Status)
		}
	}
	for name, data := range files {
		resp, b := do(t, "GET", all.URL+"/dav/secret/latest/root/"+name, nil, "")
		if resp.StatusCode != 200 || sum(b) != sum(data) {
			t.Fatalf("GET %s: %s, %d bytes", name, resp.Status, len(b))
		}
	}
	if cache.Len() < len(files) {
		t.Fatalf("cache holds %d entries after walking %d files", cache.Len(), len(files))
	}
	// The filtered view: the secret host does not exist, at any depth,
	// by any method, by snapshot time or through latest.
	for _, u := range []string{
		"/dav/secret/", "/dav/secret/latest/root/a/b/c/small.txt", "/dav/secret/" + snap + "/root/a/b/big.bin",
		"/dav/secret/" + snap + "/root/many/", "/dav/secret/" + snap + "/root/a/b/c/",
	} {
		for _, m := range []string{"GET", "HEAD", "PROPFIND"} {
			resp, _ := do(t, m, some.URL+u, map[string]string{"Depth": "0"}, "")
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s %s through the filtered view: %s, want 404", m, u, resp.Status)
			}
		}
	}
	// …while its own host is served, with the right bytes.
	for name, data := range files {
		resp, b := do(t, "GET", some.URL+"/dav/pub/latest/root/"+name, nil, "")
		if resp.StatusCode != 200 || sum(b) != sum(data) {
			t.Errorf("GET pub %s: %s", name, resp.Status)
		}
	}
	// Content typed by extension without sniffing.
	resp, _ := do(t, "GET", some.URL+"/dav/pub/latest/root/a/b/c/small.txt", nil, "")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("small.txt: Content-Type %q", ct)
	}
	resp, _ = do(t, "GET", some.URL+"/dav/pub/latest/root/many/f01.dat", nil, "")
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("f01.dat: Content-Type %q", ct)
	}
}

// The Lstat cache is bounded and forgets the least recently used first.
func TestStatCacheBound(t *testing.T) {
	c := NewCache(CacheOptions{MaxEntries: 3})
	info := fakeInfo{}
	for _, n := range []string{"a/b/1", "a/b/2", "a/b/3"} {
		c.addStat(n, info)
	}
	c.stat("a/b/1") // 2 is now the least recent
	c.addStat("a/b/4", info)
	if c.Len() != 3 {
		t.Fatalf("%d entries, bound 3", c.Len())
	}
	if _, ok := c.stat("a/b/2"); ok {
		t.Error("the least recently used entry was kept")
	}
	for _, n := range []string{"a/b/1", "a/b/3", "a/b/4"} {
		if _, ok := c.stat(n); !ok {
			t.Errorf("%s was evicted", n)
		}
	}
}

type fakeInfo struct{ fs.FileInfo }

// Concurrent GETs and Range requests of a chunked file through one cache
// much smaller than the file return the right bytes.
func TestConcurrentRangeThroughCache(t *testing.T) {
	p, files := cachePool(t)
	cache := NewCache(CacheOptions{BlockBytes: 4 << 20})
	srv := httptest.NewServer(NewHandlerOptions(p.FS(context.Background()), "/dav", Options{Cache: cache}))
	t.Cleanup(srv.Close)
	data := files["a/b/big.bin"]
	u := srv.URL + "/dav/pub/latest/root/a/b/big.bin"
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for g := range 6 {
		wg.Go(func() {
			for k := range 6 {
				from := (g*7 + k*13) * 97531 % len(data)
				to := min(len(data)-1, from+(1<<20)+g*1000)
				req, _ := http.NewRequest("GET", u, nil)
				if k%3 != 0 {
					req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, to))
				} else {
					from, to = 0, len(data)-1
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				b := make([]byte, 0, to-from+1)
				buf := make([]byte, 64<<10)
				for {
					n, err := resp.Body.Read(buf)
					b = append(b, buf[:n]...)
					if err != nil {
						break
					}
				}
				resp.Body.Close()
				if sum(b) != sum(data[from:to+1]) {
					errs <- fmt.Errorf("GET %d-%d: %d bytes, wrong content", from, to, len(b))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := cache.Blocks(); st.Bytes > 4<<20 || st.Fetches == 0 {
		t.Errorf("block cache %+v: bound 4 MiB not kept, or not used", st)
	}
}
