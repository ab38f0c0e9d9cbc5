package sftp

import (
	"encoding/binary"
	"io"
	"testing"
)

// pkt is an SFTP packet: type, id, then body.
func pkt(typ byte, id uint32, body ...[]byte) []byte {
	var b []byte
	b = append(b, typ)
	b = binary.BigEndian.AppendUint32(b, id)
	for _, x := range body {
		b = append(b, x...)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
}

func str(s string) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...) }

func u32(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

type nopWC struct{ io.Writer }

func (nopWC) Close() error { return nil }

// TestListMeterConcurrent: two listings armed at once are metered apart,
// by their handles and READDIR ids, with the stream fed a byte at a time;
// other requests' replies are not counted.
func TestListMeterConcurrent(t *testing.T) {
	m := newListMeter(nil, nopWC{io.Discard})
	cancelled := map[string]bool{}
	a := m.arm("/a", 1<<20, 500, func() { cancelled["a"] = true })
	b := m.arm("/b", 1<<20, 500, func() { cancelled["b"] = true })
	send := func(p []byte) {
		for i := range p {
			if _, err := m.Write(p[i : i+1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	recv := func(p []byte) {
		for i := range p {
			m.rf.scan(p[i : i+1])
		}
	}
	send(pkt(fxpOpendir, 1, str("/a")))
	send(pkt(fxpOpendir, 2, str("/b")))
	send(pkt(fxpOpendir, 3, str("/c"))) // not armed
	recv(pkt(fxpHandle, 2, str("hb")))
	recv(pkt(fxpHandle, 1, str("ha")))
	recv(pkt(fxpHandle, 3, str("hc")))
	send(pkt(fxpReaddir, 4, str("ha")))
	send(pkt(fxpReaddir, 5, str("hb")))
	send(pkt(fxpReaddir, 6, str("hc")))
	send(pkt(5, 7, str("file"), make([]byte, 100))) // a READ: not metered
	recv(pkt(fxpName, 6, u32(9999), make([]byte, 1000)))
	recv(pkt(fxpName, 5, u32(1000), make([]byte, 300)))
	recv(pkt(fxpName, 4, u32(5), make([]byte, 100)))
	recv(pkt(103, 7, str(string(make([]byte, 5000))))) // DATA
	if a.names != 5 || a.bytes != 4+1+4+4+100 || b.names != 1000 || len(cancelled) != 0 {
		t.Fatalf("a %d names %d bytes, b %d names, cancelled %v", a.names, a.bytes, b.names, cancelled)
	}
	// b's next reply finds its budget spent: b is cancelled, a is not.
	send(pkt(fxpReaddir, 8, str("hb")))
	send(pkt(fxpReaddir, 9, str("ha")))
	recv(pkt(fxpName, 8, u32(1), make([]byte, 10)))
	recv(pkt(fxpName, 9, u32(1), make([]byte, 10)))
	if !cancelled["b"] || cancelled["a"] || a.names != 6 {
		t.Fatalf("cancelled %v, a %d names", cancelled, a.names)
	}
	if over := m.disarm(b); over != "names" {
		t.Errorf("b over %q, want names", over)
	}
	if over := m.disarm(a); over != "" {
		t.Errorf("a over %q", over)
	}
	if len(m.byPath)+len(m.opens)+len(m.handles)+len(m.reads) != 0 {
		t.Errorf("state left after disarm: %d %d %d %d", len(m.byPath), len(m.opens), len(m.handles), len(m.reads))
	}
	// A handle longer than SFTP allows cannot be metered: cancelled.
	c := m.arm("/c", 1<<20, 500, func() { cancelled["c"] = true })
	send(pkt(fxpOpendir, 10, str("/c")))
	recv(pkt(fxpHandle, 10, str(string(make([]byte, maxHandle+1)))))
	if over := m.disarm(c); over == "" || !cancelled["c"] {
		t.Errorf("a too long handle: over %q", over)
	}
}
