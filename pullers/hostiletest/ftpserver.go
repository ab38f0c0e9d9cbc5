package hostiletest

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

// FTPServer is a hostile, plain FTP server serving Root at "/src" in
// passive mode. It lists every name verbatim (LIST in "ls -l" form, or
// MLSD with MLSD set), points its PASV replies at another host, greets
// and answers PWD with shell syntax, and plays the Node flags: lying
// sizes, files that grow, cut data connections, endless and garbage
// listings, replies without a status code. Like Server it never runs
// anything: every command is recorded and answered from the tree.
type FTPServer struct {
	Addr string
	Root Node
	MLSD bool
	// OnLines, when set, is called after every 10,000 lines of an
	// endless listing (a point to sample the client's memory).
	OnLines func(n int)

	mu    sync.Mutex
	cmds  []string
	reads map[string]int // RETRs per path (Grows)
}

// Commands returns the commands the server received.
func (s *FTPServer) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cmds...)
}

// StartFTP serves root until the test ends.
func StartFTP(t testing.TB, root Node, mlsd bool) *FTPServer {
	t.Helper()
	s := &FTPServer{Root: root, MLSD: mlsd, reads: map[string]int{}}
	s.Addr = listen(t, s.session)
	return s
}

// mtime is the time every entry has.
const ftpTime = "20240102030405"

// listLine renders one entry as the server lists it.
func (s *FTPServer) listLine(n Node) string {
	if s.MLSD {
		switch {
		case n.Dir:
			return "type=dir;modify=" + ftpTime + "; " + n.Name
		case n.Target != "":
			return "type=OS.unix=slink:" + n.Target + ";modify=" + ftpTime + "; " + n.Name
		}
		return fmt.Sprintf("type=file;size=%d;modify=%s; %s", n.size(), ftpTime, n.Name)
	}
	switch {
	case n.Dir:
		return "drwxr-xr-x 2 u g 4096 Jan 02 2024 " + n.Name
	case n.Target != "":
		return fmt.Sprintf("lrwxrwxrwx 1 u g %d Jan 02 2024 %s -> %s", len(n.Target), n.Name, n.Target)
	}
	return fmt.Sprintf("-rw-r--r-- 1 u g %d Jan 02 2024 %s", n.size(), n.Name)
}

func (s *FTPServer) session(c net.Conn, track func(net.Conn)) {
	r := bufio.NewReader(c)
	reply := func(format string, args ...any) { fmt.Fprintf(c, format+"\r\n", args...) }
	reply("220 welcome $(touch %s); rm -rf /", Marker)
	cwd := "/"
	var pasv net.Listener
	defer func() {
		if pasv != nil {
			pasv.Close()
		}
	}()
	data := func() net.Conn {
		if pasv == nil {
			return nil
		}
		d, err := pasv.Accept()
		pasv.Close()
		pasv = nil
		if err != nil {
			return nil
		}
		track(d)
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
			if arg != Password {
				reply("530 no")
				continue
			}
			reply("230 ok")
		case "FEAT":
			if s.MLSD {
				reply("211-Features:\r\n MDTM\r\n SIZE\r\n MLST type*;size*;modify*;\r\n211 End")
			} else {
				reply("211-Features:\r\n MDTM\r\n SIZE\r\n211 End")
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
			// Points elsewhere: the client must keep to the control IP.
			reply("227 Entering Passive Mode (10,9,8,7,%d,%d)", p/256, p%256)
		case "CWD":
			n, ok := findNode(s.Root, abs(arg))
			switch {
			case !ok || !n.Dir:
				reply("550 no such directory")
			case n.BadReply:
				io.WriteString(c, "you will never parse this\r\n")
			default:
				cwd = abs(arg)
				reply("250 ok")
			}
		case "PWD":
			reply(`257 "%s/$(touch %s)" is the directory`, cwd, Marker)
		case "LIST", "MLSD":
			n, _ := findNode(s.Root, cwd)
			d := data()
			if d == nil {
				reply("425 no data connection")
				continue
			}
			reply("150 here")
			bw := bufio.NewWriter(d)
			switch {
			case n.Endless:
				for i := 1; ; i++ {
					name := fmt.Sprintf("e%010d-%s", i, strings.Repeat("x", 40))
					if n.EndlessHostile {
						name = fmt.Sprintf("../%d", i)
					}
					if _, err := fmt.Fprintf(bw, "%s\r\n", s.listLine(Node{Name: name, Size: 7})); err != nil {
						break
					}
					if i%10000 == 0 && s.OnLines != nil {
						s.OnLines(i)
					}
				}
				d.Close()
				reply("426 aborted")
				continue
			case n.Garbage:
				bw.WriteString("\x00\x01\x02\xff\xfe garbage\r\n")
				bw.WriteString("drwx------ not a listing line at all\r\n")
				bw.WriteString(strings.Repeat("A", 100<<10) + "\r\n")
				bw.WriteString("-rw-r--r-- 1 u g -5 Jan 02 2024 negative\r\n")
				bw.WriteString("type=file;size=99999999999999999999999; overflow\r\n")
			default:
				for _, k := range n.Kids {
					fmt.Fprintf(bw, "%s\r\n", s.listLine(k))
				}
			}
			bw.Flush()
			d.Close()
			reply("226 done")
		case "MDTM":
			if n, ok := findNode(s.Root, abs(arg)); ok && !n.Dir {
				reply("213 %s", ftpTime)
			} else {
				reply("550 no")
			}
		case "SIZE":
			n, ok := findNode(s.Root, abs(arg))
			if !ok || n.Dir {
				reply("550 no")
				continue
			}
			size := n.size()
			if n.Grows {
				s.mu.Lock()
				size = int64(len(n.Data) * (s.reads[abs(arg)] + 1))
				s.mu.Unlock()
			}
			reply("213 %d", size)
		case "RETR":
			n, ok := findNode(s.Root, abs(arg))
			d := data()
			if !ok || n.Dir {
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
			body := n.Data
			if n.Grows {
				s.mu.Lock()
				s.reads[abs(arg)]++
				k := s.reads[abs(arg)]
				s.mu.Unlock()
				// Longer than listed, and than SIZE said after the last read.
				body = []byte(strings.Repeat(string(n.Data), k+1))
			}
			if n.Drop {
				d.Write(body[:len(body)/2])
				if tc, ok := d.(*net.TCPConn); ok {
					tc.SetLinger(0) // a reset, not a clean end
				}
				d.Close()
				reply("426 Connection closed; transfer aborted")
				continue
			}
			d.Write(body)
			d.Close()
			reply("226 done")
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
