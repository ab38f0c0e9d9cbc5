package hostiletest

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Marker is the file the shell syntax in the servers' names and replies
// would create if anything ran them.
const Marker = "hostile-mark"

// Password logs in to every Server.
const Password = "hostile-test-password"

// A Node is one entry of the hostile tree. Name is sent as is, whatever it
// contains.
type Node struct {
	Name   string
	Dir    bool
	Data   []byte
	Size   int64 // the size announced; -1: len(Data)
	Target string
	Kids   []Node
	// Endless makes a directory list new names forever (sftp, ftp).
	Endless bool
	// Grows: the file is longer every time it is read, and SIZE says
	// the length of the last read (ftp).
	Grows bool
	// Drop: the data connection of a read is cut after half the data
	// (ftp).
	Drop bool
	// EndlessHostile makes an endless listing (ftp) of names that must
	// all be refused ("../N"): nothing is kept, the listing runs until
	// the client's byte cap.
	EndlessHostile bool
	// Garbage: the directory's listing is binary garbage and a line too
	// long to be one (ftp).
	Garbage bool
	// BadReply: changing into the directory gets a control reply with no
	// status code (ftp).
	BadReply bool
}

func (n Node) size() int64 {
	if n.Size >= 0 {
		return n.Size
	}
	return int64(len(n.Data))
}

// Server is a hostile SSH host serving Root at "/src".
type Server struct {
	Addr    string
	HostKey ssh.PublicKey
	Root    Node
	// Rsync, when set, answers "rsync --server --sender" execs (set it
	// before the pull).
	Rsync *RsyncSender

	mu    sync.Mutex
	execs []string
}

// Execs returns the exec requests the server received.
func (s *Server) Execs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.execs...)
}

// Start serves root until the test ends.
func Start(t testing.TB, root Node) *Server {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{HostKey: signer.PublicKey(), Root: root}
	cfg := &ssh.ServerConfig{PasswordCallback: func(_ ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		if string(pw) == Password {
			return nil, nil
		}
		return nil, fmt.Errorf("wrong password")
	}}
	cfg.AddHostKey(signer)
	s.Addr = listen(t, func(c net.Conn, _ func(net.Conn)) { s.serve(c, cfg) })
	return s
}

func (s *Server) serve(c net.Conn, cfg *ssh.ServerConfig) {
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
				switch {
				case r.Type == "subsystem" && len(r.Payload) >= 4 && string(r.Payload[4:]) == "sftp":
					r.Reply(true, nil)
					h := &memFS{s: s}
					srv := pkgsftp.NewRequestServer(ch, pkgsftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h})
					go func() { srv.Serve(); ch.Close() }()
				case r.Type == "exec" && len(r.Payload) >= 4:
					cmd := string(r.Payload[4:])
					s.mu.Lock()
					s.execs = append(s.execs, cmd)
					s.mu.Unlock()
					r.Reply(true, nil)
					go s.exec(ch, cmd)
				default:
					r.Reply(r.Type == "env" || r.Type == "pty-req", nil)
				}
			}
		}()
	}
}

// exec answers a command without running anything: tar gets the hostile
// tree as a stream, anything else an empty success.
func (s *Server) exec(ch ssh.Channel, cmd string) {
	defer ch.Close()
	status := uint32(0)
	if s.Rsync != nil && strings.HasPrefix(cmd, "rsync ") && strings.Contains(cmd, "--server") {
		serveRsyncExec(ch, s.Rsync)
	} else if strings.Contains(cmd, "tar") && strings.Contains(cmd, "--create") {
		ch.Write(s.tarStream())
	} else if !strings.Contains(cmd, "find") {
		fmt.Fprintf(ch.Stderr(), "hostiletest: %q is not served\n", cmd)
		status = 127
	}
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, status)
	ch.SendRequest("exit-status", false, b)
}

// tarStream renders Root as GNU tar would, but with the hostile names
// kept verbatim ("./" + path), and hard links and lying sizes as the
// server claims them.
func (s *Server) tarStream() []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Unix(1700000000, 0)
	var walk func(prefix string, n Node)
	walk = func(prefix string, n Node) {
		for _, k := range n.Kids {
			name := prefix + k.Name
			switch {
			case k.Dir:
				tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: mt, Format: tar.FormatPAX})
				if !k.Endless {
					walk(name+"/", k)
				}
			case k.Target != "":
				tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: k.Target, Mode: 0o777, ModTime: mt, Format: tar.FormatPAX})
			default:
				tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(k.Data)), Mode: 0o644, ModTime: mt, Format: tar.FormatPAX})
				tw.Write(k.Data)
			}
		}
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755, ModTime: mt, Format: tar.FormatPAX})
	walk("./", s.Root)
	tw.Close()
	return buf.Bytes()
}

// memFS serves Root at /src over sftp, read-only.
type memFS struct{ s *Server }

type info struct {
	name string
	size int64
	mode fs.FileMode
}

func (f info) Name() string       { return f.name }
func (f info) Size() int64        { return f.size }
func (f info) Mode() fs.FileMode  { return f.mode }
func (f info) ModTime() time.Time { return time.Unix(1700000000, 0) }
func (f info) IsDir() bool        { return f.mode.IsDir() }
func (f info) Sys() any           { return nil }

func nodeInfo(n Node) info {
	switch {
	case n.Dir:
		return info{n.Name, 4096, fs.ModeDir | 0o755}
	case n.Target != "":
		return info{n.Name, int64(len(n.Target)), fs.ModeSymlink | 0o777}
	}
	return info{n.Name, n.size(), 0o644}
}

// find resolves p (below /src) by exact names split on "/"; names the
// server lists with a "/" in them cannot be reached, as on a real server.
func (h *memFS) find(p string) (Node, bool) { return findNode(h.s.Root, p) }

// findNode resolves p (below /src, where root is served) by exact names.
func findNode(root Node, p string) (Node, bool) {
	p = path.Clean(p)
	if p == "/src" {
		return Node{Name: "src", Dir: true, Kids: root.Kids}, true
	}
	rest, ok := strings.CutPrefix(p, "/src/")
	if !ok {
		return Node{}, false
	}
	n := Node{Dir: true, Kids: root.Kids}
	for _, el := range strings.Split(rest, "/") {
		found := false
		for _, k := range n.Kids {
			if k.Name == el {
				n, found = k, true
				break
			}
		}
		if !found {
			if n.Endless {
				return Node{Name: el, Data: []byte("endless"), Size: -1}, true
			}
			return Node{}, false
		}
	}
	return n, true
}

type lister []os.FileInfo

func (l lister) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	return copy(out, l[off:]), nil
}

type endless struct{}

func (endless) ListAt(out []os.FileInfo, off int64) (int, error) {
	for i := range out {
		out[i] = info{fmt.Sprintf("e%010d-%s", off+int64(i), strings.Repeat("x", 60)), 7, 0o644}
	}
	return len(out), nil
}

func (h *memFS) Filelist(r *pkgsftp.Request) (pkgsftp.ListerAt, error) {
	n, ok := h.find(r.Filepath)
	if !ok {
		return nil, os.ErrNotExist
	}
	switch r.Method {
	case "List":
		if n.Endless {
			return endless{}, nil
		}
		var l lister
		for _, k := range n.Kids {
			l = append(l, nodeInfo(k))
		}
		return l, nil
	case "Stat", "Lstat":
		return lister{nodeInfo(n)}, nil
	case "Readlink":
		return lister{info{n.Target, 0, fs.ModeSymlink}}, nil
	}
	return nil, os.ErrPermission
}

func (h *memFS) Fileread(r *pkgsftp.Request) (io.ReaderAt, error) {
	n, ok := h.find(r.Filepath)
	if !ok || n.Dir {
		return nil, os.ErrNotExist
	}
	return bytes.NewReader(n.Data), nil
}

func (h *memFS) Filewrite(*pkgsftp.Request) (io.WriterAt, error) { return nil, os.ErrPermission }
func (h *memFS) Filecmd(*pkgsftp.Request) error                  { return os.ErrPermission }
