package hostiletest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/rsync"
	"github.com/cairn-backup/cairn/pullers/sftp"
)

// rsyncTree is the hostile tree without the names rsync's list cannot
// carry at all (each of those fails the whole pull: see the failure
// table), plus a file whose size lies and one whose checksum is wrong.
func rsyncTree() Node {
	root := hostileTree()
	var kids []Node
	for _, k := range root.Kids {
		switch {
		case k.Name == "." || k.Name == ".." || strings.Contains(k.Name, "/") || k.Endless:
		default:
			kids = append(kids, k)
		}
	}
	root.Kids = append(kids, Node{Name: "lying", Data: []byte("0123456789"), Size: 3})
	return root
}

// rsyncTransports runs a sender as a daemon and behind the SSH host.
func rsyncTransports(t *testing.T, s *RsyncSender) map[string]pullers.Source {
	d := StartRsyncd(t, s)
	dh, dp, _ := net.SplitHostPort(d.Addr)
	ssh := Start(t, Node{Dir: true})
	ssh.Rsync = s
	sh, sp, _ := net.SplitHostPort(ssh.Addr)
	return map[string]pullers.Source{
		"daemon": {Method: rsync.Method, Name: "src", Path: "/",
			Options: map[string]string{"host": dh, "port": dp, "module": "m"}},
		"ssh": {Method: rsync.Method, Name: "src", Path: "/src",
			Options: map[string]string{"host": sh, "port": sp, "transport": "ssh", "user": "u", "host_key": sftp.HostKeyString(ssh.HostKey)},
			Secret:  map[string]string{"password": Password}},
	}
}

// TestHostileRsyncTree: a sender that lists shell syntax, links out of
// the tree and into loops, a lying size and a wrong checksum. The honest
// files are stored, links are links, the liars are per-file errors, and
// nothing is run.
func TestHostileRsyncTree(t *testing.T) {
	es := RsyncEntries(rsyncTree())
	es = append(es, RsyncEntry{Name: "badsum", Mode: rsReg, Size: 4, Data: []byte("EVIL"), BadSum: true})
	for transport, src := range rsyncTransports(t, Script(RsyncScript(es))) {
		t.Run(transport, func(t *testing.T) {
			w := newWorld(t)
			m, err := w.pull(t, rsync.New(), src)
			if err != nil {
				t.Fatalf("pull: %v", err)
			}
			w.check(t)
			tree := w.tree(t, m)
			w.checkTree(t, tree)
			for _, name := range []string{"lying", "badsum"} {
				if _, ok := tree[name]; ok {
					t.Errorf("%s stored", name)
				}
				if !errorOn(m, name, "") {
					t.Errorf("no per-file error on %s: %q", name, m.Errors)
				}
			}
			if m.Status != pool.StatusPartial {
				t.Errorf("status %s, want partial", m.Status)
			}
			t.Logf("%d entries, errors %q", len(tree), m.Errors)
		})
	}
}

// rsyncBody builds a sender body by hand for the failure table.
type rsyncBody struct{ bytes.Buffer }

func (b *rsyncBody) i32(v int32) *rsyncBody {
	binary.Write(&b.Buffer, binary.LittleEndian, v)
	return b
}

// TestHostileRsyncFails: every list or message rsync cannot trust fails
// the pull cleanly, with an error naming the cause, nothing committed and
// nothing outside the pool touched; an endless list stops at the cap
// with the heap bounded.
func TestHostileRsyncFails(t *testing.T) {
	list := func(es ...RsyncEntry) []byte {
		return RsyncScript(append([]RsyncEntry{{Name: ".", Mode: rsDir}}, es...))
	}
	file := func(name string, data string) RsyncEntry {
		return RsyncEntry{Name: name, Mode: rsReg, Size: int64(len(data)), Data: []byte(data)}
	}
	good := list(file("a", "hello"), RsyncEntry{Name: "d", Mode: rsDir}, file("d/b", "bee"))
	const maxEntries = 100_000
	h := newHeap()
	endless := &RsyncSender{Body: func(w io.Writer) error {
		var b rsyncBody
		for i := 0; ; i++ {
			b.Reset()
			name := fmt.Sprintf("f%09d-%s", i, strings.Repeat("x", 40))
			b.WriteByte(0x40)
			b.i32(int32(len(name)))
			b.WriteString(name)
			b.i32(5).i32(1700000000).i32(rsReg).i32(0).i32(0).i32(1).i32(int32(i))
			if _, err := w.Write(b.Bytes()); err != nil {
				return err
			}
			if i%10000 == 0 {
				h.sample(i)
			}
		}
	}}
	for _, c := range []struct {
		name   string
		sender *RsyncSender
		want   string
	}{
		{"dotdot", Script(list(file("../escape", "EVIL"))), `".." element`},
		{"dotdot inside", Script(list(RsyncEntry{Name: "d", Mode: rsDir}, file("d/../../escape", "EVIL"))), `".." element`},
		{"absolute", Script(list(file("/etc/passwd", "EVIL"))), "absolute name"},
		{"nul", Script(list(file("a\x00b", "EVIL"))), "NUL"},
		{"no parent", Script(list(file("x/y", "EVIL"))), "without its directory"},
		{"huge size", Script(list(RsyncEntry{Name: "a", Mode: rsReg, Size: 1 << 60})), "size 1152921504606846976"},
		{"negative size", Script(list(RsyncEntry{Name: "a", Mode: rsReg, Size: -5})), "size -5"},
		{"bad type", Script(list(RsyncEntry{Name: "a", Mode: 0o7777})), "unknown file type"},
		{"huge name", Script(func() []byte {
			var b rsyncBody
			b.WriteByte(0x40)
			b.i32(1 << 30)
			return b.Bytes()
		}()), "name length"},
		{"truncated list", Script(good[:30]), "connection closed"},
		{"truncated data", Script(good[:len(good)-40]), "connection closed"},
		{"garbage frames", &RsyncSender{Raw: true, Body: func(w io.Writer) error {
			_, err := w.Write([]byte("\x01\x02\x03\x04$(touch " + marker + ") garbage"))
			return err
		}}, "multiplex header"},
		{"unrequested file", Script(func() []byte {
			b := list(file("a", "hello"))
			var x rsyncBody
			x.Write(b[:bytes.LastIndex(b, []byte("hello"))-4-16-4]) // the list, up to the first answer
			x.i32(0).i32(0).i32(0).i32(0).i32(0).i32(0)             // file 0 (the root) was not asked for
			return x.Bytes()
		}()), "not asked for"},
		{"endless list", endless, fmt.Sprintf("longer than %d entries", maxEntries)},
	} {
		for transport, src := range rsyncTransports(t, c.sender) {
			t.Run(c.name+"/"+transport, func(t *testing.T) {
				w := newWorld(t)
				pl := rsync.New()
				pl.MaxEntries = maxEntries
				m, err := w.pull(t, pl, src)
				if err == nil {
					t.Fatalf("pull succeeded: %d errors %q", m.ErrorCount, m.Errors)
				}
				if !strings.Contains(err.Error(), c.want) {
					t.Errorf("error %v, want it to say %q", err, c.want)
				}
				if !errors.Is(err, rsync.ErrProtocol) && !strings.Contains(err.Error(), "connection closed") {
					t.Errorf("error %v does not wrap ErrProtocol", err)
				}
				w.check(t)
			})
		}
	}
	if g := h.growth(); g > 256<<20 {
		t.Errorf("heap grew %d MiB while %d list entries streamed (twice)", g>>20, maxEntries)
	} else {
		t.Logf("endless list: heap +%d MiB at most for %d entries (%d samples): about %d bytes per entry", g>>20, maxEntries, h.samples, g/maxEntries)
	}
}
