package pool_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pool/backendtest"
)

func s3Config(s *testenv.S3Server, prefix string) pool.S3Config {
	return pool.S3Config{Endpoint: s.Endpoint, Bucket: s.Bucket, Prefix: prefix, Region: s.Region,
		AccessKey: s.AccessKey, SecretKey: s.SecretKey, Insecure: true}
}

func TestS3Backend(t *testing.T) {
	s := testenv.S3(t)
	ctx := context.Background()
	var n atomic.Int64
	t.Run("Conformance", func(t *testing.T) {
		backendtest.Run(t, func(t *testing.T) pool.Backend {
			b, err := pool.NewS3Backend(ctx, s3Config(s, fmt.Sprintf("conf%d/pool", n.Add(1))))
			if err != nil {
				t.Fatal(err)
			}
			return b
		})
	})
	t.Run("Decorated", func(t *testing.T) {
		backendtest.Run(t, func(t *testing.T) pool.Backend {
			loc := fmt.Sprintf("s3://%s:%s@%s/%s/dec%d?insecure=1&region=%s&verify=1&concurrency=4&rps=10000&burst=100",
				s.AccessKey, s.SecretKey, s.Endpoint, s.Bucket, n.Add(1), s.Region)
			b, err := pool.OpenBackend(ctx, loc, pool.OpenBackendOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(b.Location(), s.SecretKey) {
				t.Fatalf("location %q contains the secret", b.Location())
			}
			return b
		})
	})
	t.Run("Pool", func(t *testing.T) {
		// Credentials from the environment.
		env := func(k string) string {
			return map[string]string{"CAIRN_S3_ACCESS_KEY": s.AccessKey, "CAIRN_S3_SECRET_KEY": s.SecretKey}[k]
		}
		loc := fmt.Sprintf("s3://%s/%s/pool?insecure=1", s.Endpoint, s.Bucket)
		b, err := pool.OpenBackend(ctx, loc, pool.OpenBackendOptions{Getenv: env})
		if err != nil {
			t.Fatal(err)
		}
		kf := filepath.Join(t.TempDir(), "key")
		p, err := pool.Init(ctx, b, pool.InitOptions{Encrypt: true, KeyFile: kf})
		if err != nil {
			t.Fatal(err)
		}
		data := textBytes(3 << 20)
		d, added, err := p.Put(ctx, pool.KindData, data)
		if err != nil || !added {
			t.Fatal(added, err)
		}
		if _, added, _ := p.Put(ctx, pool.KindData, data); added {
			t.Fatal("second put added")
		}
		if err := p.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		p2, err := pool.Open(ctx, b, pool.OpenOptions{KeyFile: kf, ExpectID: p.ID()})
		if err != nil {
			t.Fatal(err)
		}
		if _, got, err := p2.Get(ctx, d); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("get: %v", err)
		}
		if err := p2.Quarantine(ctx, d); err != nil {
			t.Fatal(err)
		}
		if _, _, err := p2.Get(ctx, d); !errors.Is(err, pool.ErrNotFound) {
			t.Fatalf("after quarantine: %v", err)
		}
		// Wrong credentials are a clear, permanent error without the secret.
		bad := fmt.Sprintf("s3://%s:wrong-secret-123@%s/%s?insecure=1", s.AccessKey, s.Endpoint, s.Bucket)
		if _, err := pool.OpenBackend(ctx, bad, pool.OpenBackendOptions{}); err == nil || strings.Contains(err.Error(), "wrong-secret-123") || errors.Is(err, pool.ErrTransient) {
			t.Fatalf("bad credentials: %v", err)
		}
		// A missing bucket is named.
		if _, err := pool.NewS3Backend(ctx, pool.S3Config{Endpoint: s.Endpoint, Bucket: "no-such-bucket", AccessKey: s.AccessKey, SecretKey: s.SecretKey, Insecure: true}); err == nil || !strings.Contains(err.Error(), "no-such-bucket") {
			t.Fatalf("missing bucket: %v", err)
		}
	})
}
