package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"testing"
	"time"
)

// TestByteProxy: a client sends a request through the proxy, the server
// answers with a known payload and closes; the client gets the payload
// intact and the proxy counts exactly the bytes of each direction, for
// several connections, and from zero again after reset.
func TestByteProxy(t *testing.T) {
	payload := make([]byte, 3<<20+17)
	rand.Read(payload)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req := make([]byte, 100)
				if _, err := io.ReadFull(c, req); err != nil {
					return
				}
				c.Write(payload)
			}()
		}
	}()
	p, err := startProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	fetch := func() {
		t.Helper()
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(bytes.Repeat([]byte("x"), 100)); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(got) != sha256.Sum256(payload) {
			t.Fatalf("payload through the proxy: %d bytes, not the server's %d", len(got), len(payload))
		}
	}
	fetch()
	fetch()
	recv, sent, err := p.counts(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if recv != 2*int64(len(payload)) || sent != 200 {
		t.Errorf("counted received %d, sent %d; want %d, 200", recv, sent, 2*len(payload))
	}
	p.reset()
	fetch()
	if recv, sent, err = p.counts(10 * time.Second); err != nil || recv != int64(len(payload)) || sent != 100 {
		t.Errorf("after reset: received %d, sent %d, err %v; want %d, 100", recv, sent, err, len(payload))
	}

	// A server that is gone is an error naming it, not a silent zero.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := dead.Addr().String()
	dead.Close()
	q, err := startProxy(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	if c, err := net.Dial("tcp", q.Addr()); err == nil {
		io.ReadAll(c)
		c.Close()
	}
	if _, _, err := q.counts(10 * time.Second); err == nil || !bytes.Contains([]byte(err.Error()), []byte(addr)) {
		t.Errorf("proxy to a closed port: err %v, want one naming %s", err, addr)
	}
}
