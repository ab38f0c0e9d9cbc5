package pool

import (
	"errors"
	"net/url"
	"testing"
)

// TestS3ClassConnectionClosed: minio-go reports a connection closed before
// the response as a plain "Connection closed by foreign host" error; it is
// transient (retried), like the EOF it replaces. Found by the S3 fault
// proxy of internal/torture.
func TestS3ClassConnectionClosed(t *testing.T) {
	err := &url.Error{Op: "Get", URL: "http://127.0.0.1:1/b/o",
		Err: errors.New("Connection closed by foreign host http://127.0.0.1:1/b/o. Retry again.")}
	if c := s3Class(err); c != ErrTransient {
		t.Fatalf("s3Class = %v, want ErrTransient", c)
	}
	if c := s3Class(errors.New("The request signature we calculated does not match")); c != nil {
		t.Fatalf("a signature error is %v, want no class", c)
	}
}
