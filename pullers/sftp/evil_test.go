package sftp_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/pullertest"
	"github.com/cairn-backup/cairn/pullers/sftp"
)

// evilServer is an in-process SSH server whose SFTP subsystem
// (pkg/sftp's request server) serves a hostile tree:
//
//	/evil     entries "..", "/etc/passwd", "a/b", "nul\x00name", "ok",
//	          "big-liar" (says 10 bytes, sends 1000), "small-liar" (says
//	          1 MB, sends 10), "loop" (a directory holding itself)
//	/endless  a listing that never ends
//	/drop     "a-dropper" (the server kills the connection mid-file every
//	          time), "b-fine"
type evilServer struct {
	addr    string
	hostKey ssh.PublicKey
	opens   sync.Map // path → *atomic.Int64
	logins  atomic.Int64
	tree    *fakeTree // more paths (pipeline_test.go); set before the first login
}

const evilPassword = "evil-pw"

func startEvil(t *testing.T) *evilServer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	es := &evilServer{hostKey: signer.PublicKey()}
	cfg := &ssh.ServerConfig{PasswordCallback: func(_ ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		es.logins.Add(1)
		if string(pw) == evilPassword {
			return nil, nil
		}
		return nil, fmt.Errorf("wrong password")
	}}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	es.addr = ln.Addr().String()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				es.serve(c, cfg)
			}()
		}
	}()
	return es
}

func (es *evilServer) serve(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			for r := range creqs {
				ok := r.Type == "subsystem" && len(r.Payload) >= 4 && string(r.Payload[4:]) == "sftp"
				r.Reply(ok, nil)
				if ok {
					h := &evilFS{es: es, conn: c}
					srv := pkgsftp.NewRequestServer(ch, pkgsftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h})
					go func() { srv.Serve(); ch.Close() }()
				}
			}
		}()
	}
}

type evilFS struct {
	es   *evilServer
	conn net.Conn
}

type fi struct {
	name string
	size int64
	mode fs.FileMode
}

func (f fi) Name() string       { return f.name }
func (f fi) Size() int64        { return f.size }
func (f fi) Mode() fs.FileMode  { return f.mode }
func (f fi) ModTime() time.Time { return time.Unix(1700000000, 0) }
func (f fi) IsDir() bool        { return f.mode.IsDir() }
func (f fi) Sys() any           { return nil }

var evilEntries = []fi{
	{"..", 0, fs.ModeDir | 0o755},
	{"/etc/passwd", 5, 0o644},
	{"a/b", 5, 0o644},
	{"nul\x00name", 5, 0o644},
	{"ok", 3, 0o644},
	{"big-liar", 10, 0o644},
	{"small-liar", 1 << 20, 0o644},
	{"loop", 0, fs.ModeDir | 0o755},
}

// data: what reading a path gives.
func evilData(p string) ([]byte, bool) {
	switch p {
	case "/evil/ok":
		return []byte("ok\n"), true
	case "/evil/big-liar":
		return []byte(strings.Repeat("B", 1000)), true
	case "/evil/small-liar":
		return []byte("0123456789"), true
	case "/drop/a-dropper":
		return make([]byte, 4<<20), true
	case "/drop/b-fine":
		return []byte("fine\n"), true
	}
	if strings.HasPrefix(p, "/endless/f") {
		return nil, true
	}
	return nil, false
}

func (h *evilFS) stat(p string) (fi, bool) {
	switch {
	case p == "/evil" || p == "/endless" || p == "/drop" || strings.HasPrefix(p, "/evil/loop"):
		return fi{path.Base(p), 0, fs.ModeDir | 0o755}, true
	case p == "/drop/a-dropper":
		return fi{"a-dropper", 4 << 20, 0o644}, true
	case p == "/drop/b-fine":
		return fi{"b-fine", 5, 0o644}, true
	case strings.HasPrefix(p, "/endless/f"):
		return fi{path.Base(p), 0, 0o644}, true
	}
	for _, e := range evilEntries {
		if p == "/evil/"+e.name && e.mode.IsDir() == false && !strings.ContainsAny(e.name, "/\x00") {
			return e, true
		}
	}
	return fi{}, false
}

func (h *evilFS) Fileread(r *pkgsftp.Request) (io.ReaderAt, error) {
	if ra, ok, err := h.es.tree.read(r.Filepath); ok {
		n, _ := h.es.opens.LoadOrStore(r.Filepath, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		return ra, err
	}
	data, ok := evilData(r.Filepath)
	if !ok {
		return nil, os.ErrNotExist
	}
	n, _ := h.es.opens.LoadOrStore(r.Filepath, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	if r.Filepath == "/drop/a-dropper" {
		return &dropper{conn: h.conn, data: data}, nil
	}
	return strings.NewReader(string(data)), nil
}

// dropper kills the connection once a third of the file was read.
type dropper struct {
	conn net.Conn
	data []byte
}

func (d *dropper) ReadAt(p []byte, off int64) (int, error) {
	if off > int64(len(d.data)/3) {
		d.conn.Close()
		return 0, io.ErrUnexpectedEOF
	}
	if off >= int64(len(d.data)) {
		return 0, io.EOF
	}
	return copy(p, d.data[off:]), nil
}

func (h *evilFS) Filewrite(*pkgsftp.Request) (io.WriterAt, error) { return nil, os.ErrPermission }
func (h *evilFS) Filecmd(*pkgsftp.Request) error                  { return os.ErrPermission }

type listerAt []os.FileInfo

func (l listerAt) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	return copy(out, l[off:]), nil
}

// endless lists new names forever.
type endless struct{}

func (endless) ListAt(out []os.FileInfo, off int64) (int, error) {
	for i := range out {
		out[i] = fi{fmt.Sprintf("f%09d-%s", off+int64(i), strings.Repeat("x", 40)), 0, 0o644}
	}
	return len(out), nil
}

func (h *evilFS) Filelist(r *pkgsftp.Request) (pkgsftp.ListerAt, error) {
	p := r.Filepath
	switch r.Method {
	case "List":
		if l, ok := h.es.tree.list(p); ok {
			return l, nil
		}
		switch {
		case p == "/evil":
			var l listerAt
			for _, e := range evilEntries {
				l = append(l, e)
			}
			return l, nil
		case strings.HasPrefix(p, "/evil/loop"):
			return listerAt{fi{"loop", 0, fs.ModeDir | 0o755}}, nil
		case p == "/endless":
			return endless{}, nil
		case p == "/drop":
			return listerAt{fi{"a-dropper", 4 << 20, 0o644}, fi{"b-fine", 5, 0o644}}, nil
		}
		return nil, os.ErrNotExist
	case "Stat", "Lstat":
		if e, ok := h.es.tree.stat(p); ok {
			return listerAt{e}, nil
		}
		if e, ok := h.stat(p); ok {
			return listerAt{e}, nil
		}
		return nil, os.ErrNotExist
	}
	return nil, os.ErrPermission
}

func (es *evilServer) source(p string) pullers.Source {
	host, port, _ := net.SplitHostPort(es.addr)
	return pullers.Source{Method: sftp.Method, Name: "src", Path: p,
		Options: map[string]string{"host": host, "port": port, "user": "u", "host_key": sftp.HostKeyString(es.hostKey)},
		Secret:  map[string]string{"password": evilPassword}}
}

// snapshotNames lists every path in the snapshot.
func snapshotNames(t *testing.T, p *pool.Pool, m *pool.Manifest) []string {
	t.Helper()
	var out []string
	err := fs.WalkDir(p.SnapshotFS(context.Background(), m), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func checkPool(t *testing.T, p *pool.Pool) {
	t.Helper()
	rep, err := p.Check(context.Background(), pool.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Errorf("pool check: %v %s", err, rep.String())
	}
}

func hasError(m *pool.Manifest, prefix, substr string) bool {
	for _, e := range m.Errors {
		if strings.HasPrefix(e, prefix) && strings.Contains(e, substr) {
			return true
		}
	}
	return false
}

func TestEvilNamesSizesLoops(t *testing.T) {
	es := startEvil(t)
	p := pullertest.NewPool(t)
	m, prog := pullertest.Pull(t, p, sftp.New(), es.source("/evil"), nil, nil)
	names := snapshotNames(t, p, m)
	t.Logf("snapshot %s, %d entries, errors: %s", m.Status, len(names), pullertest.Short(fmt.Sprintf("%q", m.Errors)))
	// What may be in it: the root, ok, the loop chain (cut at MaxDepth)
	// and the base names pkg/sftp made of "/etc/passwd" and "a/b" (which
	// then fail to open: the server has no such files).
	for _, n := range names {
		if n == "." || n == "ok" || n == "loop" || strings.HasPrefix(n, "loop/") {
			continue
		}
		t.Errorf("unexpected snapshot entry %q", n)
	}
	depth := 0
	for _, n := range names {
		depth = max(depth, strings.Count(n, "loop"))
	}
	if depth != sftp.DefaultMaxDepth {
		t.Errorf("loop descended %d levels, want the limit %d", depth, sftp.DefaultMaxDepth)
	}
	e, err := p.Lookup(context.Background(), m.Root, "ok")
	if err != nil || e.Size != 3 {
		t.Fatalf("ok: %+v %v", e, err)
	}
	if m.Status != pool.StatusPartial {
		t.Errorf("status %q", m.Status)
	}
	for _, want := range []struct{ prefix, substr string }{
		{"big-liar: ", "longer than its size"},
		{"small-liar: ", "shorter than its size"},
		{".: ", `invalid name "nul\x00name"`},
		{"passwd: ", "does not exist"},
		{"b: ", "does not exist"},
		{"loop/", "nested deeper than 256"},
	} {
		if !hasError(m, want.prefix, want.substr) {
			t.Errorf("no error %q…%q in %q", want.prefix, want.substr, m.Errors)
		}
	}
	if prog.Errors != int64(m.ErrorCount) {
		t.Errorf("progress errors %d, manifest %d", prog.Errors, m.ErrorCount)
	}
	checkPool(t, p)
}

func TestEvilEndlessListing(t *testing.T) {
	es := startEvil(t)
	p := pullertest.NewPool(t)
	pl := sftp.New()
	pl.MaxListBytes = 64 << 10
	done := make(chan struct{})
	var m *pool.Manifest
	go func() {
		defer close(done)
		m, _ = pullertest.Pull(t, p, pl, es.source("/endless"), nil, nil)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the pull of an endless listing did not end")
	}
	if m == nil {
		return
	}
	if !hasError(m, ".: ", "listing longer than 65536 bytes") {
		t.Errorf("errors %q", m.Errors)
	}
	if m.Files < 100 || m.Files > 2000 {
		t.Errorf("%d files kept from the endless listing", m.Files)
	}
	checkPool(t, p)
}

func TestEvilDroppedConnection(t *testing.T) {
	es := startEvil(t)
	p := pullertest.NewPool(t)
	m, _ := pullertest.Pull(t, p, sftp.New(), es.source("/drop"), nil, nil)
	t.Logf("errors %q, logins %d", m.Errors, es.logins.Load())
	n, _ := es.opens.Load("/drop/a-dropper")
	if got := n.(*atomic.Int64).Load(); got != 1+sftp.DefaultRetries {
		t.Errorf("a-dropper opened %d times, want %d (one try and %d retries)", got, 1+sftp.DefaultRetries, sftp.DefaultRetries)
	}
	if !hasError(m, "a-dropper: ", "") || m.ErrorCount != 1 {
		t.Errorf("errors %q, want one for a-dropper", m.Errors)
	}
	if _, err := p.Lookup(context.Background(), m.Root, "a-dropper"); err == nil {
		t.Error("a-dropper is in the snapshot")
	}
	e, err := p.Lookup(context.Background(), m.Root, "b-fine")
	if err != nil || e.Size != 5 {
		t.Errorf("b-fine: %+v %v", e, err)
	}
	checkPool(t, p)
}

func TestEvilWrongPasswordNoRetry(t *testing.T) {
	es := startEvil(t)
	src := es.source("/evil")
	src.Secret["password"] = "nope"
	w, err := pullertest.NewPool(t).NewWriter(context.Background(), pool.SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	err = sftp.New().Pull(context.Background(), &pullers.Job{Source: src, Sink: w})
	if err == nil || !strings.Contains(err.Error(), "login refused") {
		t.Fatalf("err = %v", err)
	}
	// password + keyboard-interactive (which this server does not offer):
	// one password attempt, no storm.
	if n := es.logins.Load(); n != 1 {
		t.Errorf("%d password attempts, want 1", n)
	}
}

func TestCancel(t *testing.T) {
	es := startEvil(t)
	p := pullertest.NewPool(t)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	pl := sftp.New()
	pl.MaxListBytes = 1 << 40 // let the endless listing run until cancelled
	errc := make(chan error, 1)
	go func() { errc <- pl.Pull(ctx, &pullers.Job{Source: es.source("/endless"), Sink: w}) }()
	time.AfterFunc(200*time.Millisecond, cancel)
	select {
	case err := <-errc:
		if err == nil || ctx.Err() == nil {
			t.Fatalf("err = %v after cancel", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Pull did not return after cancel")
	}
}
