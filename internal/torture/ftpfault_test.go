package torture

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// ftpCutProxy forwards an FTP control connection and the passive data
// connections it announces (rewriting 227/229 replies to its own
// listeners), and resets data connections after a random number of bytes
// while cutting is on: transfers dropped mid-file.
type ftpCutProxy struct {
	server string // control address
	on     atomic.Bool
	cut    atomic.Int64
	mu     sync.Mutex
	rng    *rand.Rand
}

var (
	pasvRE = regexp.MustCompile(`^227 .*\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)`)
	epsvRE = regexp.MustCompile(`^229 .*\(\|\|\|(\d+)\|\)`)
)

func newFTPCutProxy(t *testing.T, server string) (*ftpCutProxy, string) {
	fp := &ftpCutProxy{server: server, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go fp.control(c)
		}
	}()
	return fp, l.Addr().String()
}

func (fp *ftpCutProxy) control(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", fp.server)
	if err != nil {
		return
	}
	defer s.Close()
	go io.Copy(s, c)
	host, _, _ := net.SplitHostPort(fp.server)
	br := bufio.NewReader(s)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		var target string
		if m := pasvRE.FindStringSubmatch(line); m != nil {
			p1, _ := strconv.Atoi(m[5])
			p2, _ := strconv.Atoi(m[6])
			target = net.JoinHostPort(strings.Join(m[1:5], "."), strconv.Itoa(p1*256+p2))
		} else if m := epsvRE.FindStringSubmatch(line); m != nil {
			target = net.JoinHostPort(host, m[1])
		}
		if target != "" {
			port, err := fp.data(target)
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "227") {
				line = fmt.Sprintf("227 Entering Passive Mode (127,0,0,1,%d,%d).\r\n", port/256, port%256)
			} else {
				line = fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)\r\n", port)
			}
		}
		if _, err := io.WriteString(c, line); err != nil {
			return
		}
	}
}

// data listens for the one data connection of a passive reply.
func (fp *ftpCutProxy) data(target string) (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	go func() {
		defer l.Close()
		l.(*net.TCPListener).SetDeadline(time.Now().Add(time.Minute))
		c, err := l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			return
		}
		go func() { io.Copy(s, c); s.(*net.TCPConn).CloseWrite() }()
		if !fp.on.Load() {
			io.Copy(c, s)
			c.Close()
			s.Close()
			return
		}
		fp.mu.Lock()
		limit := 1<<10 + fp.rng.Int64N(64<<10)
		fp.mu.Unlock()
		n, _ := io.CopyN(c, s, limit)
		if n == limit {
			fp.cut.Add(1)
			rst(c)
			rst(s)
			return
		}
		c.Close()
		s.Close()
	}()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// TestFTPDataCuts: FTP transfers reset mid-file (every passive data
// connection longer than 1-65 KiB) make the backup reconnect or fail
// saying why; nothing stored is ever wrong, and the next backup over a
// sound network is exact.
func TestFTPDataCuts(t *testing.T) {
	srv := testenv.FTP(t)
	dir := filepath.Join(srv.UserDir, "nettorture")
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	startServe(t, data)
	writeSource(t, dir, 0, 3, 30)
	chmodAll(t, dir)
	fp, addr := newFTPCutProxy(t, srv.Addr)
	_, port, _ := net.SplitHostPort(addr)
	api(t, data, "POST", "/api/v1/hosts", map[string]any{"name": "ftp1", "sources": []any{map[string]any{
		"name": "data", "method": "ftp", "path": "/nettorture",
		"options": map[string]string{"host": "127.0.0.1", "port": port, "user": srv.User, "tls": "none"},
		"secret":  map[string]string{"password": srv.Password}}}}, &struct{}{})
	backup := func() job {
		var j struct {
			ID int64 `json:"id"`
		}
		api(t, data, "POST", "/api/v1/hosts/ftp1/backup", map[string]any{}, &j)
		return waitJob(t, data, j.ID, 5*time.Minute)
	}
	if j := backup(); j.State != "done" {
		t.Fatalf("first backup: %+v", j)
	}
	for round := range scale(t, 2, 8) {
		writeSource(t, dir, round+1, 3, 30)
		chmodAll(t, dir)
		want := treeDigest(t, dir)
		before := fp.cut.Load()
		fp.on.Store(true)
		j := backup()
		fp.on.Store(false)
		if fp.cut.Load() == before {
			t.Fatalf("round %d: no transfer was cut", round)
		}
		if j.State != "done" && j.Error == "" {
			t.Errorf("round %d: %s backup has no error", round, j.State)
		}
		for _, s := range snapshots(t, data) {
			if s.JobID != j.ID {
				continue
			}
			dst := filepath.Join(tmp, fmt.Sprintf("cut-%d", round))
			cli(t, data, "restore", "ftp1/"+s.ID, "--to", dst)
			got := treeDigest(t, dst)
			for k, g := range got {
				if strings.HasPrefix(g, "file") && strings.HasPrefix(want[k], "file") && fileSum(g) != fileSum(want[k]) {
					t.Errorf("round %d: %s snapshot %s holds wrong content for %s", round, s.Status, s.ID, k)
				}
			}
			if s.Status == "complete" {
				for k, w := range want {
					if strings.HasPrefix(w, "file") && fileSum(got[k]) != fileSum(w) {
						t.Errorf("round %d: complete snapshot %s lacks or differs in %s", round, s.ID, k)
					}
				}
			}
		}
		if j2 := backup(); j2.State != "done" {
			t.Fatalf("round %d: backup after the cuts: %+v", round, j2)
		}
		t.Logf("round %d: %d transfers cut; that backup %s %s; the next one done", round, fp.cut.Load()-before, j.State, lastLines(j.Error, 1))
	}
}

// fileSum is the digest part of a treeDigest value (FTP does not carry
// modes, so only contents are compared).
func fileSum(v string) string { return v[strings.LastIndex(v, " ")+1:] }

func chmodAll(t *testing.T, dir string) {
	t.Helper()
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			os.Chmod(p, 0o644)
		}
		return nil
	})
}
