package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// byteProxy is a TCP forwarder on loopback between a client and one
// server that counts the bytes crossing it in each direction. The pull
// scenarios reach their server through it (Cairn's puller and the native
// peer alike), so "bytes received" is measured the same way for every
// tool: the TCP payload the server sent to the client, protocol framing
// and (for SSH) encryption included.
//
// Bytes are forwarded with io.Copy between the two *net.TCPConn, which
// Linux does with splice(2): the proxy does not copy the payload through
// user space, so its CPU and latency cost stay small and fall on both
// sides of a comparison alike.
type byteProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	idle   *sync.Cond
	active int   // connections still open
	recv   int64 // server → client, of the connections closed since reset
	sent   int64 // client → server
	err    error // first dial error since reset
}

// startProxy listens on 127.0.0.1 (a free port) and forwards every
// connection to target.
func startProxy(target string) (*byteProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("byte-counting proxy for %s: %w", target, err)
	}
	p := &byteProxy{ln: ln, target: target}
	p.idle = sync.NewCond(&p.mu)
	go p.serve()
	return p, nil
}

// Addr is the proxy's listening address (host:port).
func (p *byteProxy) Addr() string { return p.ln.Addr().String() }

// Port is the proxy's listening port.
func (p *byteProxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// PortString is Port as a string.
func (p *byteProxy) PortString() string { return strconv.Itoa(p.Port()) }

func (p *byteProxy) close() { p.ln.Close() }

// reset zeroes the counters before a measured command.
func (p *byteProxy) reset() {
	p.mu.Lock()
	p.recv, p.sent, p.err = 0, 0, nil
	p.mu.Unlock()
}

// counts waits (up to wait) until every connection through the proxy is
// closed, then returns the bytes received by and sent from the clients
// since the last reset.
func (p *byteProxy) counts(wait time.Duration) (recv, sent int64, err error) {
	deadline := time.Now().Add(wait)
	timer := time.AfterFunc(wait, func() {
		p.mu.Lock()
		p.idle.Broadcast()
		p.mu.Unlock()
	})
	defer timer.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.active > 0 && time.Now().Before(deadline) {
		p.idle.Wait()
	}
	if p.active > 0 {
		return p.recv, p.sent, fmt.Errorf("byte-counting proxy for %s: %d connections still open %s after the command ended", p.target, p.active, wait)
	}
	return p.recv, p.sent, p.err
}

func (p *byteProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p.mu.Lock()
		p.active++
		p.mu.Unlock()
		go p.forward(c.(*net.TCPConn))
	}
}

// forward copies both directions until both ends are done; each
// direction's end is passed on as a half close so protocols that wait for
// EOF (rsync, SSH) finish as they would without the proxy.
func (p *byteProxy) forward(client *net.TCPConn) {
	var recv, sent int64
	var derr error
	defer func() {
		p.mu.Lock()
		p.recv += recv
		p.sent += sent
		if derr != nil && p.err == nil {
			p.err = derr
		}
		p.active--
		p.idle.Broadcast()
		p.mu.Unlock()
	}()
	defer client.Close()
	sc, err := net.Dial("tcp", p.target)
	if err != nil {
		derr = fmt.Errorf("byte-counting proxy: dialing %s: %w", p.target, err)
		return
	}
	server := sc.(*net.TCPConn)
	defer server.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sent, _ = io.Copy(server, client)
		server.CloseWrite()
	}()
	recv, _ = io.Copy(client, server)
	client.CloseWrite()
	<-done
}
