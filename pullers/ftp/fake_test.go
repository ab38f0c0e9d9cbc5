package ftp

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeServer is a scripted, plain FTP server for hostile-server tests. It
// serves listings and files from maps, in passive mode only.
type fakeServer struct {
	t    *testing.T
	ln   net.Listener
	mlsd bool
	// floodFeat makes FEAT an endless multi-line reply.
	floodFeat bool
	// lists maps a directory (absolute, as CWD'd) to its raw listing, or
	// endless to stream lines forever.
	lists   map[string]string
	endless map[string]bool
	// endlessLine is the format of an endless listing's lines (one %d),
	// by directory; default a valid file line. onLines, when set, is
	// called after every 100,000 lines of an endless listing.
	endlessLine map[string]string
	onLines     func(n int)
	// stall makes a directory's listing send one line and then hang
	// until the client goes away.
	stall map[string]bool
	// files maps an absolute path to the bytes RETR sends; mdtm to the
	// MDTM reply time (YYYYMMDDHHMMSS).
	files map[string][]byte
	mdtm  map[string]string

	mu    sync.Mutex
	cmds  []string
	wg    sync.WaitGroup
	conns []net.Conn
}

func newFakeServer(t *testing.T) *fakeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, lists: map[string]string{}, endless: map[string]bool{}, stall: map[string]bool{},
		endlessLine: map[string]string{},
		files:       map[string][]byte{}, mdtm: map[string]string{}}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

func (s *fakeServer) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cmds...)
}

func (s *fakeServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.session(c)
		}()
	}
}

func (s *fakeServer) session(c net.Conn) {
	r := bufio.NewReader(c)
	reply := func(format string, args ...any) { fmt.Fprintf(c, format+"\r\n", args...) }
	reply("220 fake")
	cwd := "/"
	var pasv net.Listener
	defer func() {
		if pasv != nil {
			pasv.Close()
		}
	}()
	dataConn := func() net.Conn {
		if pasv == nil {
			return nil
		}
		d, err := pasv.Accept()
		pasv.Close()
		pasv = nil
		if err != nil {
			return nil
		}
		return d
	}
	abs := func(p string) string {
		if strings.HasPrefix(p, "/") {
			return p
		}
		if cwd == "/" {
			return "/" + p
		}
		return cwd + "/" + p
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		s.mu.Lock()
		s.cmds = append(s.cmds, line)
		s.mu.Unlock()
		cmd, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(cmd) {
		case "USER":
			reply("331 password")
		case "PASS":
			reply("230 ok")
		case "FEAT":
			if s.floodFeat {
				io.WriteString(c, "211-Features:\r\n")
				for {
					if _, err := io.WriteString(c, " FEATURE-THAT-NEVER-ENDS\r\n"); err != nil {
						return
					}
				}
			}
			if s.mlsd {
				reply("211-Features:\r\n MDTM\r\n MLST type*;size*;modify*;\r\n211 End")
			} else {
				reply("211-Features:\r\n MDTM\r\n211 End")
			}
		case "TYPE", "OPTS":
			reply("200 ok")
		case "EPSV":
			reply("500 no")
		case "PASV":
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				reply("425 no")
				continue
			}
			pasv = ln
			p := ln.Addr().(*net.TCPAddr).Port
			// Claims another host: the client must use the control IP.
			reply("227 Entering Passive Mode (10,9,8,7,%d,%d)", p/256, p%256)
		case "CWD":
			d := abs(arg)
			if _, ok := s.lists[d]; !ok && !s.endless[d] && !s.stall[d] {
				reply("550 no such directory")
				continue
			}
			cwd = d
			reply("250 ok")
		case "PWD":
			reply(`257 "%s"`, cwd)
		case "LIST", "MLSD":
			d := dataConn()
			if d == nil {
				reply("425 no data connection")
				continue
			}
			reply("150 here")
			if s.stall[cwd] {
				io.WriteString(d, "-rw-r--r-- 1 u g 1 Jan 01 2020 first\r\n")
				io.Copy(io.Discard, d) // until the client closes it
				d.Close()
				reply("426 aborted")
				continue
			}
			if s.endless[cwd] {
				format := s.endlessLine[cwd]
				if format == "" {
					format = "-rw-r--r-- 1 u g 1 Jan 01 2020 f%09d\r\n"
				}
				bw := bufio.NewWriter(d)
				for i := 1; ; i++ {
					if _, err := fmt.Fprintf(bw, format, i-1); err != nil {
						break
					}
					if i%100000 == 0 && s.onLines != nil {
						s.onLines(i)
					}
				}
				d.Close()
				reply("426 aborted")
				continue
			}
			io.WriteString(d, s.lists[cwd])
			d.Close()
			reply("226 done")
		case "MDTM":
			if t, ok := s.mdtm[abs(arg)]; ok {
				reply("213 %s", t)
			} else {
				reply("550 no")
			}
		case "RETR":
			data, ok := s.files[abs(arg)]
			d := dataConn()
			if !ok {
				if d != nil {
					d.Close()
				}
				reply("550 no such file")
				continue
			}
			if d == nil {
				reply("425 no data connection")
				continue
			}
			reply("150 here")
			d.Write(data)
			d.Close()
			reply("226 done")
		case "SIZE":
			reply("550 no")
		case "NOOP":
			reply("200 ok")
		case "QUIT":
			reply("221 bye")
			return
		default:
			reply("502 %s not implemented", strconv.Quote(cmd))
		}
	}
}
