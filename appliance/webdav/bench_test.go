package webdav

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// BenchmarkShare measures a real pool's share: PROPFIND Depth 1 of a
// directory of 500 files, and GET of a 40 MiB file.
func BenchmarkShare(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	for i := range 500 {
		p := filepath.Join(src, "a/b/c/many", fmt.Sprintf("f%04d.txt", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.Repeat("x", i)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "large.bin"), big(40<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	bk, err := pool.OpenBackend(ctx, filepath.Join(dir, "pool"), pool.OpenBackendOptions{Create: true})
	if err != nil {
		b.Fatal(err)
	}
	p, err := pool.Init(ctx, bk, pool.InitOptions{})
	if err != nil {
		b.Fatal(err)
	}
	storeDir(b, ctx, p, "bench", "root", src, time.Unix(1700000000, 0))
	srv := newServerB(b, p)
	b.Run("propfind-500", func(b *testing.B) {
		for b.Loop() {
			req, _ := http.NewRequest("PROPFIND", srv+"/dav/bench/latest/root/a/b/c/many/", strings.NewReader(""))
			req.Header.Set("Depth", "1")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 207 || n < 500*100 {
				b.Fatalf("%d, %d bytes", resp.StatusCode, n)
			}
		}
	})
	b.Run("get-40MiB", func(b *testing.B) {
		b.SetBytes(40 << 20)
		for b.Loop() {
			resp, err := http.Get(srv + "/dav/bench/latest/root/large.bin")
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n != 40<<20 {
				b.Fatalf("%d bytes", n)
			}
		}
	})
}

func newServerB(b *testing.B, p *pool.Pool) string {
	srv := httptest.NewServer(NewHandler(p.FS(context.Background()), "/dav"))
	b.Cleanup(srv.Close)
	return srv.URL
}
