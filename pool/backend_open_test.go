package pool_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

func TestOpenBackend(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, loc := range []string{dir, "file://" + dir, "file://" + dir + "?concurrency=4&retries=2&verify=1&rps=1000"} {
		b, err := pool.OpenBackend(ctx, loc, pool.OpenBackendOptions{})
		if err != nil {
			t.Fatalf("%s: %v", loc, err)
		}
		if b.Location() != dir {
			t.Fatalf("%s: location %q", loc, b.Location())
		}
		if _, ok := b.(pool.Syncer); !ok {
			t.Fatalf("%s: not a Syncer", loc)
		}
		if err := b.Put(ctx, "x/y", strings.NewReader("1"), 1); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(t.TempDir(), "not", "here")
	if _, err := pool.OpenBackend(ctx, missing, pool.OpenBackendOptions{}); !errors.Is(err, pool.ErrNotFound) {
		t.Fatalf("missing dir: %v", err)
	}
	if _, err := pool.OpenBackend(ctx, missing, pool.OpenBackendOptions{Create: true}); err != nil {
		t.Fatalf("create: %v", err)
	}
	for loc, want := range map[string]string{
		"ftp://host/x":              `unknown scheme "ftp"`,
		"file://" + dir + "?rsp=10": `unknown parameter "rsp"`,
		"file://" + dir + "?rps=x":  `rps="x"`,
		"file://remote/x":           "must be local",
		"":                          "empty location",
	} {
		if _, err := pool.OpenBackend(ctx, loc, pool.OpenBackendOptions{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", loc, err, want)
		}
	}
}

func TestOpenS3Errors(t *testing.T) {
	ctx := context.Background()
	noEnv := func(string) string { return "" }
	_, err := pool.OpenBackend(ctx, "s3://127.0.0.1:1/bucket", pool.OpenBackendOptions{Getenv: noEnv})
	if err == nil || !strings.Contains(err.Error(), "CAIRN_S3_ACCESS_KEY") {
		t.Fatalf("no credentials: %v", err)
	}
	// Unreachable server: retried, then a transient error that names the
	// location and never shows the secret.
	noSleep := pool.DecorateOptions{Sleep: func(context.Context, time.Duration) error { return nil }}
	_, err = pool.OpenBackend(ctx, "s3://AKID:s3cr3tvalue@127.0.0.1:1/bucket/pfx?insecure=1&region=eu-west-1", pool.OpenBackendOptions{Getenv: noEnv, Decorate: noSleep})
	if err == nil || strings.Contains(err.Error(), "s3cr3tvalue") || !errors.Is(err, pool.ErrTransient) ||
		!strings.Contains(err.Error(), "s3://***@127.0.0.1:1/bucket/pfx") || !strings.Contains(err.Error(), "giving up after 9 attempts") {
		t.Fatalf("unreachable: %v", err)
	}
	env := func(k string) string {
		return map[string]string{"CAIRN_S3_ACCESS_KEY": "AKID", "CAIRN_S3_SECRET_KEY": "envs3cr3t"}[k]
	}
	_, err = pool.OpenBackend(ctx, "s3://127.0.0.1:1/bucket?insecure=maybe", pool.OpenBackendOptions{Getenv: env})
	if err == nil || !strings.Contains(err.Error(), "insecure") {
		t.Fatalf("bad insecure: %v", err)
	}
	if got := pool.RedactLocation("s3://AKID:secret@host:9000/b/p?x=1"); got != "s3://***@host:9000/b/p?x=1" {
		t.Fatalf("redact: %q", got)
	}
	if got := pool.RedactLocation("/plain/path"); got != "/plain/path" {
		t.Fatalf("redact path: %q", got)
	}
}
