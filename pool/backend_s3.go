package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config describes an S3-compatible bucket.
type S3Config struct {
	Endpoint  string // host:port
	Bucket    string
	Prefix    string // optional key prefix inside the bucket, without slashes at the ends
	Region    string // optional; "us-east-1" when empty
	AccessKey string
	SecretKey string
	Insecure  bool              // plain HTTP instead of HTTPS
	Transport http.RoundTripper // optional
}

// S3Backend stores each name as an object key (Prefix + "/" + name) in one
// bucket. S3 PUTs are atomic and durable on return, so it has no Sync.
// minio-go's own retries are off: the retry decorator is the one place
// that retries.
type S3Backend struct {
	c        *minio.Client
	bucket   string
	prefix   string // "" or "dir/" — always ends in "/"
	location string
}

var _ Backend = (*S3Backend)(nil)

// NewS3Backend connects to the bucket and checks that it exists.
func NewS3Backend(ctx context.Context, cfg S3Config) (*S3Backend, error) {
	prefix := strings.Trim(cfg.Prefix, "/")
	loc := "s3://" + cfg.Endpoint + "/" + cfg.Bucket
	if prefix != "" {
		if err := ValidateName(prefix); err != nil {
			return nil, fmt.Errorf("s3 %s: bad prefix: %w", loc, err)
		}
		loc += "/" + prefix
		prefix += "/"
	}
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, fmt.Errorf("s3 %s: endpoint and bucket are required", loc)
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       !cfg.Insecure,
		Region:       region,
		BucketLookup: minio.BucketLookupPath,
		Transport:    cfg.Transport,
		MaxRetries:   1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", loc, err)
	}
	b := &S3Backend{c: c, bucket: cfg.Bucket, prefix: prefix, location: loc}
	ok, err := c.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, b.wrap("connect", "", err)
	}
	if !ok {
		return nil, fmt.Errorf("s3 %s: bucket %q does not exist", loc, cfg.Bucket)
	}
	return b, nil
}

// Location returns s3://endpoint/bucket[/prefix], without credentials.
func (b *S3Backend) Location() string { return b.location }

func (b *S3Backend) key(name string) string { return b.prefix + name }

// wrap names what failed and maps S3 errors onto the Backend contract:
// a missing key is ErrNotFound; throttling, 5xx and network failures are
// ErrTransient.
func (b *S3Backend) wrap(op, name string, err error) error {
	where := b.location
	if name != "" {
		where += "/" + name
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s %s: %w", op, where, err)
	}
	if class := s3Class(err); class != nil {
		return fmt.Errorf("%s %s: %w: %v", op, where, class, err)
	}
	return fmt.Errorf("%s %s: %w", op, where, err)
}

func s3Class(err error) error {
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "NoSuchKey", "NotFound":
		return ErrNotFound
	case "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "RequestLimitExceeded",
		"Throttling", "ThrottlingException", "TooManyRequests", "XMinioServerNotInitialized", "OperationAborted":
		return ErrTransient
	}
	switch {
	case resp.StatusCode == http.StatusNotFound && resp.Code != "NoSuchBucket":
		return ErrNotFound
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout:
		return ErrTransient
	}
	// Network trouble is transient; a client-side mistake wrapped in a
	// *url.Error (such as a short body) is not.
	var oe *net.OpError
	var ne net.Error
	switch {
	case errors.As(err, &oe),
		errors.As(err, &ne) && ne.Timeout(),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE),
		// minio-go turns an EOF before the response into a plain
		// "Connection closed by foreign host" error (no io.EOF to match).
		minio.IsNetworkOrHostDown(err, false):
		return ErrTransient
	}
	return nil
}

func (b *S3Backend) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// A seekable input (the pool's bytes.Reader) goes to minio as is, so it
	// can sign and send it without a copy; its length is checked up front.
	// Other inputs are counted, to tell a short input from a network error.
	cr := &countReader{r: r}
	var in io.Reader = cr
	if sk, ok := r.(io.Seeker); ok && size >= 0 {
		cur, err1 := sk.Seek(0, io.SeekCurrent)
		end, err2 := sk.Seek(0, io.SeekEnd)
		if _, err3 := sk.Seek(cur, io.SeekStart); err1 == nil && err2 == nil && err3 == nil {
			if end-cur < size {
				return fmt.Errorf("put %s/%s: short input: %d of %d bytes", b.location, name, end-cur, size)
			}
			in = r
		}
	}
	info, err := b.c.PutObject(ctx, b.bucket, b.key(name), in, size, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
	})
	if err != nil {
		if cr.eof && size >= 0 && cr.n < size {
			// Our input's fault, not the network's: never transient.
			return fmt.Errorf("put %s/%s: short input: %d of %d bytes", b.location, name, cr.n, size)
		}
		return b.wrap("put", name, err)
	}
	if size >= 0 && info.Size != size {
		return fmt.Errorf("put %s/%s: stored %d bytes, want %d", b.location, name, info.Size, size)
	}
	return nil
}

// countReader notices an input that ends before its declared size.
type countReader struct {
	r   io.Reader
	n   int64
	eof bool
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err == io.EOF {
		c.eof = true
	}
	return n, err
}

// s3Body maps read errors of a streaming body onto the contract.
type s3Body struct {
	rc   io.ReadCloser
	b    *S3Backend
	name string
	size int64
}

// Size is the body's length, a hint for readers that buffer it.
func (s *s3Body) Size() int64 { return s.size }

func (s *s3Body) Read(p []byte) (int, error) {
	n, err := s.rc.Read(p)
	if err != nil && err != io.EOF {
		err = s.b.wrap("read", s.name, err)
	}
	return n, err
}

func (s *s3Body) Close() error { return s.rc.Close() }

// Get sends one GET (with a Range header for a part) and streams its body.
// It does not use minio.Object, which re-requests with an ETag
// precondition and so fails when the name is overwritten meanwhile.
func (b *S3Backend) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("get %s/%s: negative offset %d", b.location, name, off)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if length == 0 {
		if _, err := b.Stat(ctx, name); err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		opts.SetRange(off, off+length-1)
	case off > 0:
		opts.SetRange(off, 0)
	}
	rc, oi, _, err := minio.Core{Client: b.c}.GetObject(ctx, b.bucket, b.key(name), opts)
	if err != nil {
		resp := minio.ToErrorResponse(err)
		if resp.Code == "InvalidRange" || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
			// The object exists but off is at or past its end.
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, b.wrap("get", name, err)
	}
	return &s3Body{rc: rc, b: b, name: name, size: oi.Size}, nil
}

func (b *S3Backend) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	if err := ValidateName(name); err != nil {
		return ObjectInfo{}, err
	}
	oi, err := b.c.StatObject(ctx, b.bucket, b.key(name), minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, b.wrap("stat", name, err)
	}
	return ObjectInfo{Name: name, Size: oi.Size, ModTime: oi.LastModified}, nil
}

func (b *S3Backend) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := validPrefix(prefix); err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := b.c.ListObjects(lctx, b.bucket, minio.ListObjectsOptions{Prefix: b.key(prefix), Recursive: true})
	var err error
	for oi := range ch {
		if err != nil {
			continue // drain after cancel so the lister goroutine ends
		}
		if oi.Err != nil {
			err = b.wrap("list", prefix, oi.Err)
			cancel()
			continue
		}
		name := strings.TrimPrefix(oi.Key, b.prefix)
		if ValidateName(name) != nil {
			continue // not ours (or a key no Backend call could have made)
		}
		if ferr := fn(ObjectInfo{Name: name, Size: oi.Size, ModTime: oi.LastModified}); ferr != nil {
			err = ferr
			cancel()
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

func (b *S3Backend) Delete(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := b.c.RemoveObject(ctx, b.bucket, b.key(name), minio.RemoveObjectOptions{}); err != nil {
		if errors.Is(s3Class(err), ErrNotFound) {
			return nil
		}
		return b.wrap("delete", name, err)
	}
	return nil
}
