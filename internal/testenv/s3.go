package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// The S3 test server: VersityGW, an Apache-2.0 S3 gateway with a POSIX
// directory backend (buckets are directories, objects are files). Keep in
// sync with install-deps.sh.
const (
	s3Module  = "github.com/versity/versitygw/cmd/versitygw"
	s3Version = "v1.8.0"
	s3Binary  = "versitygw"
)

// S3Server is a running S3-compatible server started by S3.
type S3Server struct {
	Endpoint  string // "127.0.0.1:port", plain HTTP, path-style bucket lookup
	AccessKey string
	SecretKey string
	Bucket    string // already created, empty
	Region    string // "us-east-1"
	// Dir is the backend directory: Dir/<bucket>/<key> are the objects.
	Dir string
	Pid int
}

// Client returns a minio-go client for the server (path-style, no TLS).
func (s *S3Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:       false,
		Region:       s.Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatalf("testenv: s3 client for %s: %v", s.Endpoint, err)
	}
	return c
}

// CacheDir is where testenv keeps things built or initialised once per
// machine: the S3 server binary and database templates. It is
// $CAIRN_TESTENV_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/cairn-testenv,
// outside the repository.
func CacheDir() string {
	if d := os.Getenv("CAIRN_TESTENV_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "cairn-testenv")
	}
	return filepath.Join(os.TempDir(), "cairn-testenv-cache")
}

var (
	s3BinOnce sync.Once
	s3BinPath string
	s3BinErr  error
)

// s3Bin returns the VersityGW binary from the cache dir, building it with
// go install if it is missing (once per process, serialised across
// processes by a lock file). install-deps.sh normally built it already.
func s3Bin(t testing.TB) string {
	t.Helper()
	s3BinOnce.Do(func() { s3BinPath, s3BinErr = buildS3Bin() })
	if s3BinErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("testenv: s3 server: %v", s3BinErr)
		}
		t.Skipf("testenv: s3 server: %v (run `make deps`)", s3BinErr)
	}
	return s3BinPath
}

func buildS3Bin() (string, error) {
	dir := filepath.Join(CacheDir(), "bin")
	path := filepath.Join(dir, s3Binary)
	stamp := path + ".version"
	present := func() bool {
		b, err := os.ReadFile(stamp)
		return err == nil && strings.TrimSpace(string(b)) == s3Version && isExec(path)
	}
	if present() {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if present() { // another process built it while we waited
		return path, nil
	}
	goBin := findBin("go")
	if goBin == "" {
		return "", fmt.Errorf("%s missing and no go toolchain to build %s@%s", path, s3Module, s3Version)
	}
	cmd := exec.Command(goBin, "install", "-trimpath", "-ldflags=-s -w", s3Module+"@"+s3Version)
	cmd.Dir = "/" // outside any module, so the project's go.mod is not used
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", s3Module, s3Version, err, out)
	}
	if err := os.WriteFile(stamp, []byte(s3Version+"\n"), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// S3 starts VersityGW (posix backend on a temp dir) on 127.0.0.1 with a
// random root access key and secret, waits for its health endpoint, and
// creates one empty bucket.
//
// The binary is built once per machine by `make deps` into CacheDir()/bin
// (never into the repo); if it is missing, S3 builds it with go install,
// which takes a minute or two. Gotchas handled: keys are passed in the
// environment, not argv (no secrets in ps); VGW_* variables of the caller's
// environment are not inherited; the bucket is addressed path-style.
func S3(t testing.TB) *S3Server {
	t.Helper()
	vgw := s3Bin(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	mustMkdir(t, data, 0o755)
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ak, sk := "cairn"+randomSecret(6), randomSecret(20)
	cmd := exec.Command(vgw, "--port", addr, "--health", "/health", "--quiet", "posix", data)
	cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir,
		"ROOT_ACCESS_KEY=" + ak, "ROOT_SECRET_KEY=" + sk,
	}
	d := startDaemon(t, "versitygw", cmd, filepath.Join(dir, "versitygw.log"))
	hc := &http.Client{Timeout: 2 * time.Second}
	d.waitReady(t, "GET /health on "+addr, func() error {
		resp, err := hc.Get("http://" + addr + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health: %s", resp.Status)
		}
		return nil
	})
	s := &S3Server{Endpoint: addr, AccessKey: ak, SecretKey: sk, Bucket: "cairn-test", Region: "us-east-1", Dir: data, Pid: d.Pid()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client(t).MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{Region: s.Region}); err != nil {
		t.Fatalf("testenv: s3 %s: create bucket %s: %v\nlog tail:\n%s", addr, s.Bucket, err, logTail(d.logPath))
	}
	return s
}
