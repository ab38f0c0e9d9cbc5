package rsync_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/pullertest"
	"github.com/cairn-backup/cairn/pullers/rsync"
)

// aclXattr encodes a Linux ACL xattr value: version 2, then (tag, perm,
// id) entries, which must already be in the kernel's order.
func aclXattr(ents ...[3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range ents {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

const none = 0xffffffff

// xattrTree makes files with user xattrs (short ones, and long ones that
// rsync sends as checksums first), ACLs with named entries, and a
// directory with a default ACL.
func xattrTree(t *testing.T, root string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 125) // 2000 bytes: over the 32-byte abbreviation limit
	must(os.MkdirAll(filepath.Join(root, "d"), 0o750))
	for _, n := range []string{"f", "g", "d/h", "plain"} {
		must(os.WriteFile(filepath.Join(root, n), []byte("content of "+n), 0o640))
	}
	for _, n := range []string{"f", "g"} { // the same set twice: the sender refers back to it
		must(unix.Setxattr(filepath.Join(root, n), "user.small", []byte("v1"), 0))
		must(unix.Setxattr(filepath.Join(root, n), "user.big", big, 0))
	}
	must(unix.Setxattr(filepath.Join(root, "d/h"), "user.other", append(slices.Clone(big), 'x'), 0))
	must(unix.Setxattr(filepath.Join(root, "d/h"), "user.empty", nil, 0))
	must(unix.Setxattr(filepath.Join(root, "d"), "user.dir", []byte("on a directory"), 0))
	// f: user 1234 rw-, group r--, mask rw-, other ---.
	must(unix.Setxattr(filepath.Join(root, "f"), "system.posix_acl_access",
		aclXattr([3]uint32{1, 6, none}, [3]uint32{2, 6, 1234}, [3]uint32{4, 4, none}, [3]uint32{0x10, 6, none}, [3]uint32{0x20, 0, none}), 0))
	// d/h: group 4321 r-x with a mask narrower than the group's bits.
	must(unix.Setxattr(filepath.Join(root, "d/h"), "system.posix_acl_access",
		aclXattr([3]uint32{1, 6, none}, [3]uint32{4, 6, none}, [3]uint32{8, 5, 4321}, [3]uint32{0x10, 4, none}, [3]uint32{0x20, 4, none}), 0))
	// d: an access ACL and a default ACL.
	must(unix.Setxattr(filepath.Join(root, "d"), "system.posix_acl_access",
		aclXattr([3]uint32{1, 7, none}, [3]uint32{2, 5, 1000}, [3]uint32{4, 5, none}, [3]uint32{0x10, 5, none}, [3]uint32{0x20, 0, none}), 0))
	must(unix.Setxattr(filepath.Join(root, "d"), "system.posix_acl_default",
		aclXattr([3]uint32{1, 7, none}, [3]uint32{2, 6, 1000}, [3]uint32{4, 5, none}, [3]uint32{8, 4, 2000}, [3]uint32{0x10, 7, none}, [3]uint32{0x20, 1, none}), 0))
}

// fsXattrs is what the snapshot must hold for path: every xattr the
// kernel lists except system.* other than the ACLs.
func fsXattrs(t *testing.T, path string) map[string][]byte {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for name := range strings.SplitSeq(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" || strings.HasPrefix(name, "system.") && !strings.HasPrefix(name, "system.posix_acl_") {
			continue
		}
		v := make([]byte, 64<<10)
		k, err := unix.Lgetxattr(path, name, v)
		if err != nil {
			t.Fatal(err)
		}
		m[name] = v[:k]
	}
	return m
}

func checkXattrs(t *testing.T, p *pool.Pool, m *pool.Manifest, root string) {
	t.Helper()
	sfs := p.SnapshotFS(context.Background(), m)
	for _, n := range []string{"f", "g", "d", "d/h", "plain"} {
		st, err := fs.Stat(sfs, n)
		if err != nil {
			t.Fatal(err)
		}
		e := st.Sys().(*pool.Entry)
		want := fsXattrs(t, filepath.Join(root, n))
		if len(want) == 0 && len(e.Xattrs) == 0 {
			continue
		}
		if len(want) != len(e.Xattrs) {
			t.Errorf("%s: xattrs %q, want %q", n, names(e.Xattrs), names(want))
			continue
		}
		for k, v := range want {
			if !bytes.Equal(e.Xattrs[k], v) {
				t.Errorf("%s: xattr %s = %x (%d bytes), want %x (%d bytes)", n, k, e.Xattrs[k], len(e.Xattrs[k]), v, len(v))
			}
		}
	}
	if got := len(fsXattrs(t, filepath.Join(root, "f"))["user.big"]); got != 2000 {
		t.Fatalf("test setup: user.big is %d bytes", got)
	}
}

func names(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestXattrsACLs pulls xattrs (-X) and ACLs (-A) from stock rsync over the
// daemon and over SSH: names and values exactly as the kernel has them,
// long values fetched in the transfer phase, then reused from the
// previous snapshot, then fetched again when they change.
func TestXattrsACLs(t *testing.T) {
	testenv.Need(t, "rsync")
	for _, tr := range []string{"daemon", "ssh"} {
		t.Run(tr, func(t *testing.T) {
			var root string
			var src pullers.Source
			if tr == "daemon" {
				s := testenv.Rsyncd(t)
				root = filepath.Join(s.Dir, "x")
				src = daemonSource(s, s.Module, "/x")
			} else {
				s := testenv.SSHD(t)
				root = filepath.Join(s.Dir, "x")
				src = sshSource(t, s, root)
			}
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			xattrTree(t, root)
			p := pullertest.NewPool(t)
			pl := rsync.New()
			m1, err := pullOnce(t, p, pl, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			if pl.Negotiated() < 30 {
				t.Fatalf("negotiated protocol %d", pl.Negotiated())
			}
			t.Logf("protocol %d, first pull: %d bytes received", pl.Negotiated(), pl.BytesReceived())
			if m1.ErrorCount != 0 {
				t.Fatalf("errors: %q", m1.Errors)
			}
			checkXattrs(t, p, m1, root)

			// Unchanged: the long values come from the previous snapshot.
			prev := basisPrevious{pullertest.PoolPrevious{Pool: p, Root: m1.Root}}
			m2, err := pullOnce(t, p, pl, src, prev)
			if err != nil || m2.ErrorCount != 0 {
				t.Fatalf("second pull: %v %+v", err, m2)
			}
			checkXattrs(t, p, m2, root)
			t.Logf("unchanged pull: %d bytes received", pl.BytesReceived())
			if pl.BytesReceived() >= 2000 {
				t.Errorf("unchanged pull received %d bytes: the long xattr values came again", pl.BytesReceived())
			}

			// A changed long value on an unchanged file is fetched again.
			big2 := bytes.Repeat([]byte("ZYXWVUTSRQPONMLK"), 200)
			if err := unix.Setxattr(filepath.Join(root, "g"), "user.big", big2, 0); err != nil {
				t.Fatal(err)
			}
			mt := time.Unix(1700000000, 0)
			os.Chtimes(filepath.Join(root, "plain"), mt, mt)
			m3, err := pullOnce(t, p, pl, src, basisPrevious{pullertest.PoolPrevious{Pool: p, Root: m2.Root}})
			if err != nil || m3.ErrorCount != 0 {
				t.Fatalf("third pull: %v %+v", err, m3)
			}
			checkXattrs(t, p, m3, root)
			st, _ := fs.Stat(p.SnapshotFS(context.Background(), m3), "g")
			if !bytes.Equal(st.Sys().(*pool.Entry).Xattrs["user.big"], big2) {
				t.Fatal("the changed long value was not fetched")
			}
		})
	}
}

// TestXattrsNeed30: xattrs or ACLs asked of a sender older than protocol
// 30 fail the pull with a clear, permanent error instead of silently
// leaving them out.
func TestXattrsNeed30(t *testing.T) {
	for _, opt := range []string{"xattrs", "acls"} {
		src := fakeDaemon(t, nil, false) // greets as a pre-3.0 daemon
		src.Options[opt] = "true"
		_, err := pullOnce(t, pullertest.NewPool(t), rsync.New(), src, nil)
		if !errors.Is(err, pullers.ErrPermanent) || !strings.Contains(err.Error(), "need protocol 30") {
			t.Fatalf("%s from a protocol-29 daemon: %v", opt, err)
		}
		t.Log(err)
	}
}
