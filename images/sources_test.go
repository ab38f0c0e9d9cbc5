package images

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/hirochachacha/go-smb2"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.KillLeftovers()
	os.Exit(m.Run())
}

// smallImages: 4 blocks and a short tail; v2 rewrites block 2.
func smallImages() (v1, v2 []byte) {
	v1 = make([]byte, 4*BlockSize+999)
	for _, i := range []int{0, 2, 3, 4} {
		fill(v1, i, 1)
	}
	v2 = append([]byte(nil), v1...)
	fill(v2, 2, 2)
	return v1, v2
}

// sourceRoundTrip ingests v1, then v2 with v1 as basis, through open (a
// remote file as io.ReaderAt), and checks that only the changed block is
// stored and both versions read back.
func sourceRoundTrip(t *testing.T, write func(data []byte), open func() (io.ReaderAt, int64, func())) {
	t.Helper()
	ctx := context.Background()
	s := newStore(t, false)
	v1, v2 := smallImages()
	var prev *Manifest
	for k, img := range [][]byte{v1, v2} {
		write(img)
		r, size, done := open()
		m, st, err := s.IngestReaderAt(ctx, "share.vm", r, size, IngestOptions{VersionOptions: VersionOptions{Prev: prev}})
		done()
		if err != nil {
			t.Fatal(err)
		}
		wantStored := []int64{4, 1}[k]
		if st.Stored != wantStored || st.ZeroBlocks != 1 || st.BytesRead != int64(len(img)) {
			t.Fatalf("v%d: %+v, want %d stored", k+1, st, wantStored)
		}
		checkRead(t, s, m, img, false)
		prev = m
	}
}

func TestIngestOverSFTP(t *testing.T) {
	srv := testenv.SSHD(t)
	c, err := ssh.Dial("tcp", srv.Addr, srv.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	path := filepath.Join(srv.Dir, "vm.img")
	sourceRoundTrip(t, func(data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}, func() (io.ReaderAt, int64, func()) {
		f, err := sc.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		return f, fi.Size(), func() { f.Close() }
	})
}

func TestIngestOverSMB(t *testing.T) {
	srv := testenv.Samba(t)
	conn, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d := &smb2.Dialer{Initiator: &smb2.NTLMInitiator{User: srv.User, Password: srv.Password}}
	sess, err := d.Dial(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Logoff()
	share, err := sess.Mount(srv.Share)
	if err != nil {
		t.Fatal(err)
	}
	defer share.Umount()
	sourceRoundTrip(t, func(data []byte) {
		if err := os.WriteFile(filepath.Join(srv.Dir, "vm.img"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}, func() (io.ReaderAt, int64, func()) {
		f, err := share.Open("vm.img")
		if err != nil {
			t.Fatal(err)
		}
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		return f, fi.Size(), func() { f.Close() }
	})
}
