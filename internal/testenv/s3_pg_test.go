package testenv

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
)

func TestS3(t *testing.T) {
	g := watchGone(t, "versitygw")
	done := timed(t, "s3")
	s := S3(t)
	done()
	g.pid = s.Pid
	defer g.snapshot()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := s.Client(t)
	objs := map[string][]byte{
		"a/one.bin": randomBytes(t, 100<<10),
		"a/two.bin": randomBytes(t, 1),
		"top":       randomBytes(t, 6<<20), // several multipart parts at 5 MiB
	}
	for k, v := range objs {
		opts := minio.PutObjectOptions{PartSize: 5 << 20}
		if _, err := c.PutObject(ctx, s.Bucket, k, bytes.NewReader(v), int64(len(v)), opts); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	for k, v := range objs {
		o, err := c.GetObject(ctx, s.Bucket, k, minio.GetObjectOptions{})
		if err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
		got, err := io.ReadAll(o)
		o.Close()
		if err != nil || sha(got) != sha(v) {
			t.Fatalf("get %s: err %v sha %s want %s", k, err, sha(got), sha(v))
		}
	}
	var keys []string
	for oi := range c.ListObjects(ctx, s.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if oi.Err != nil {
			t.Fatalf("list: %v", oi.Err)
		}
		if oi.Size != int64(len(objs[oi.Key])) {
			t.Errorf("list %s: size %d want %d", oi.Key, oi.Size, len(objs[oi.Key]))
		}
		keys = append(keys, oi.Key)
	}
	sort.Strings(keys)
	if want := []string{"a/one.bin", "a/two.bin", "top"}; !equalStrings(keys, want) {
		t.Fatalf("list: %v want %v", keys, want)
	}
	// The posix backend stores objects as plain files under Dir/bucket.
	onDisk, err := os.ReadFile(filepath.Join(s.Dir, s.Bucket, "a", "one.bin"))
	if err != nil || sha(onDisk) != sha(objs["a/one.bin"]) {
		t.Fatalf("backend file: err %v", err)
	}
	// Wrong credentials are refused.
	bad := *s
	bad.SecretKey = "wrong" + s.SecretKey
	if _, err := bad.Client(t).StatObject(ctx, s.Bucket, "top", minio.StatObjectOptions{}); err == nil {
		t.Fatalf("stat with a wrong secret key succeeded")
	}
}

func TestPostgres(t *testing.T) {
	g := watchGone(t, "postgres")
	done := timed(t, "postgres")
	s := Postgres(t)
	done()
	g.pid = s.Pid
	defer g.snapshot()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := s.CreateDB(t, "app-db")
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE kv (k text PRIMARY KEY, v bytea); INSERT INTO kv VALUES ('x', '\xdeadbeef')`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	var db string
	var v []byte
	if err := conn.QueryRow(ctx, `SELECT current_database(), v FROM kv WHERE k = 'x'`).Scan(&db, &v); err != nil {
		t.Fatalf("query: %v", err)
	}
	if db != "app-db" || !bytes.Equal(v, []byte{0xde, 0xad, 0xbe, 0xef}) {
		t.Fatalf("query: db %q v %x", db, v)
	}
	// The unix socket works too (what pg_dump -h SocketDir uses).
	sconn, err := pgx.Connect(ctx, "host="+s.SocketDir+" port="+strconv.Itoa(s.Port)+" user=postgres dbname=app-db")
	if err != nil {
		t.Fatalf("connect via socket: %v", err)
	}
	var n int
	if err := sconn.QueryRow(ctx, `SELECT count(*) FROM kv`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("socket query: n %d err %v", n, err)
	}
	sconn.Close(ctx)
	// A second cluster is independent (a fresh copy of the template).
	s2 := Postgres(t)
	c2, err := pgx.Connect(ctx, s2.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	var exists bool
	if err := c2.QueryRow(ctx, `SELECT exists(SELECT 1 FROM pg_database WHERE datname = 'app-db')`).Scan(&exists); err != nil || exists {
		t.Fatalf("second cluster sees app-db: %v %v", exists, err)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
