package ftp

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

func writeFile(t testing.TB, p string, data []byte, mtime time.Time) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, data, 0o644))
	must(t, os.Chtimes(p, mtime, mtime))
}

// fillTree writes the test tree into dir and returns what a pull must
// give back (symlinks included, the excluded dir not).
func fillTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	big := make([]byte, 3<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(r.Uint32())
	}
	mt := time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)
	writeFile(t, filepath.Join(dir, "hello.txt"), []byte("hello, world\n"), mt)
	writeFile(t, filepath.Join(dir, "big.bin"), big, mt.Add(time.Hour))
	writeFile(t, filepath.Join(dir, ".hidden"), []byte("dot"), mt)
	writeFile(t, filepath.Join(dir, "with space", "inner file.txt"), []byte("inner"), mt)
	writeFile(t, filepath.Join(dir, "sub", "deeper", "empty"), nil, mt)
	writeFile(t, filepath.Join(dir, "skip", "cache.tmp"), []byte("excluded"), mt)
	writeFile(t, filepath.Join(dir, "sub", "x.tmp"), []byte("excluded too"), mt)
	must(t, os.Symlink("hello.txt", filepath.Join(dir, "link")))
	return map[string]string{
		"hello.txt": "hello, world\n", "big.bin": string(big), ".hidden": "dot",
		"with space": "<dir>", "with space/inner file.txt": "inner",
		"sub": "<dir>", "sub/deeper": "<dir>", "sub/deeper/empty": "",
		"link": "-> hello.txt",
	}
}

func TestVsftpdAnonymous(t *testing.T) {
	srv := testenv.FTP(t)
	want := fillTree(t, srv.AnonDir)
	p := newPool(t)
	src := pullers.Source{Method: Method, Path: "/", Excludes: []string{"skip", "*.tmp"},
		Options: map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "tls": "none"}}
	m1, pr1, _, err := pull(t, p, New(), src, nil)
	must(t, err)
	if got := treeOf(t, p, m1); !reflect.DeepEqual(got, want) {
		t.Fatalf("tree %q\nwant %q", keys(got), keys(want))
	}
	if m1.Status != pool.StatusComplete {
		t.Errorf("status %s, errors %q", m1.Status, m1.Errors)
	}
	// Exact mtimes through MDTM (LIST gives minutes only).
	e, err := p.Lookup(context.Background(), m1.Root, "hello.txt")
	must(t, err)
	if want := time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC).UnixNano(); e.ModTime != want {
		t.Errorf("hello.txt mtime %v", time.Unix(0, e.ModTime).UTC())
	}
	if e.Size != 13 || e.Mode != 0o644 {
		t.Errorf("hello.txt entry %+v", e)
	}
	if pr1.Skipped != 0 || pr1.Files != int64(len(want))+1 {
		t.Errorf("first progress %+v", pr1)
	}

	// Incremental: nothing changed, every non-empty file is reused.
	m2, pr2, _, err := pull(t, p, New(), src, m1)
	must(t, err)
	if pr2.Skipped != 4 {
		t.Errorf("second pull skipped %d files, want 4 (%+v)", pr2.Skipped, pr2)
	}
	if got := treeOf(t, p, m2); !reflect.DeepEqual(got, want) {
		t.Fatalf("incremental tree %q", keys(got))
	}
	// A changed file (size and mtime) is read again.
	writeFile(t, filepath.Join(srv.AnonDir, "hello.txt"), []byte("changed!\n"), time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	want["hello.txt"] = "changed!\n"
	m3, pr3, _, err := pull(t, p, New(), src, m2)
	must(t, err)
	if pr3.Skipped != 3 {
		t.Errorf("third pull skipped %d, want 3", pr3.Skipped)
	}
	if got := treeOf(t, p, m3); !reflect.DeepEqual(got, want) {
		t.Fatalf("tree after change: hello.txt=%q", got["hello.txt"])
	}

	// A subdirectory as the source.
	srcSub := src
	srcSub.Path = "/with space"
	m4, _, _, err := pull(t, p, New(), srcSub, nil)
	must(t, err)
	if got := treeOf(t, p, m4); !reflect.DeepEqual(got, map[string]string{"inner file.txt": "inner"}) {
		t.Errorf("sub-path tree %q", got)
	}
}

func certDER(t testing.TB, pemBytes []byte) []byte {
	b, _ := pem.Decode(pemBytes)
	if b == nil {
		t.Fatal("no PEM certificate")
	}
	if _, err := x509.ParseCertificate(b.Bytes); err != nil {
		t.Fatal(err)
	}
	return b.Bytes
}

// TestVsftpdFTPS: explicit TLS with a user login against vsftpd with
// require_ssl_reuse; trust on first use reports the fingerprint, a wrong
// pin and an unknown certificate with TOFU off are permanent errors, a CA
// verifies; then restore by STOR into a new directory.
func TestVsftpdFTPS(t *testing.T) {
	srv := testenv.FTP(t)
	want := fillTree(t, srv.UserDir)
	p := newPool(t)
	base := pullers.Source{Method: Method, Path: "/", Excludes: []string{"skip", "*.tmp", "restored*"},
		Options: map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "user": srv.User},
		Secret:  map[string]string{"password": srv.Password}}
	fp := Fingerprint(certDER(t, srv.CACertPEM))

	// Trust on first use.
	var seen []string
	pl := &Puller{OnFingerprint: func(fp string) { seen = append(seen, fp) }}
	m, _, _, err := pull(t, p, pl, base, nil)
	must(t, err)
	if got := pl.SeenFingerprint(); got != fp {
		t.Fatalf("SeenFingerprint %q, want %q", got, fp)
	}
	if len(seen) != 1 || seen[0] != fp {
		t.Errorf("OnFingerprint calls %q", seen)
	}
	if got := treeOf(t, p, m); !reflect.DeepEqual(got, want) {
		t.Fatalf("FTPS tree %q", keys(got))
	}

	// Pinned (right and wrong).
	pinned := base
	pinned.Options = map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "user": srv.User, "tls_fingerprint": fp}
	pl = New()
	if _, _, _, err := pull(t, p, pl, pinned, nil); err != nil || pl.SeenFingerprint() != "" {
		t.Fatalf("pinned pull: %v (seen %q)", err, pl.SeenFingerprint())
	}
	wrong := base
	wrong.Options = map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "user": srv.User,
		"tls_fingerprint": "sha256:" + string(bytes.Repeat([]byte("ab"), 32))}
	if _, _, _, err := pull(t, p, New(), wrong, nil); !errors.Is(err, ErrCertificateMismatch) || !errors.Is(err, pullers.ErrPermanent) {
		t.Errorf("wrong pin: %v", err)
	}
	noTofu := base
	noTofu.Options = map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "user": srv.User, "tls_tofu": "false"}
	if _, _, _, err := pull(t, p, New(), noTofu, nil); !errors.Is(err, ErrCertificateUnknown) {
		t.Errorf("tofu off: %v", err)
	}
	ca := base
	ca.Options = map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "user": srv.User, "tls_ca": string(srv.CACertPEM), "tls_tofu": "false"}
	pl = New()
	if _, _, _, err := pull(t, p, pl, ca, nil); err != nil || pl.SeenFingerprint() != "" {
		t.Errorf("CA-verified pull: %v (seen %q)", err, pl.SeenFingerprint())
	}
	badPw := base
	badPw.Secret = map[string]string{"password": "wrong-password"}
	if _, _, _, err := pull(t, p, New(), badPw, nil); !errors.Is(err, pullers.ErrPermanent) {
		t.Errorf("bad password: %v", err)
	}

	// Restore to the host into a new directory.
	tree := p.SnapshotFS(context.Background(), m)
	st, err := Restore(context.Background(), "127.0.0.1", pinned, tree, ".", "/restored")
	must(t, err)
	if st.Files != 5 || len(st.Skipped) != 1 || st.Skipped[0] != "link" {
		t.Errorf("restore stats %+v", st)
	}
	for rel, content := range want {
		if content == "<dir>" || rel == "link" {
			continue
		}
		got, err := os.ReadFile(filepath.Join(srv.UserDir, "restored", rel))
		must(t, err)
		if string(got) != content {
			t.Errorf("restored %s: %d bytes, want %d", rel, len(got), len(content))
		}
	}
	fi, err := os.Stat(filepath.Join(srv.UserDir, "restored", "hello.txt"))
	must(t, err)
	if !fi.ModTime().Equal(time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)) {
		t.Errorf("restored mtime %v", fi.ModTime())
	}
	// The target must be new.
	if _, err := Restore(context.Background(), "127.0.0.1", pinned, tree, ".", "/restored"); err == nil {
		t.Error("restore into an existing directory succeeded")
	}
	// A restore never trusts on first use.
	if _, err := Restore(context.Background(), "127.0.0.1", base, tree, "sub", "/restored2"); !errors.Is(err, ErrCertificateUnknown) {
		t.Errorf("restore without pin: %v", err)
	}
	// One subtree.
	if _, err := Restore(context.Background(), "127.0.0.1", pinned, tree, "sub", "/restored3"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(srv.UserDir, "restored3", "deeper", "empty")); err != nil {
		t.Error(err)
	}
}
