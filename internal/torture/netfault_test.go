package torture

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// cutProxy forwards TCP connections to target and cuts the first `cuts`
// of them (RST both ways) after a random number of bytes from the server:
// a network that drops a pull mid-transfer.
type cutProxy struct {
	target string
	cuts   atomic.Int64
	cut    atomic.Int64 // connections cut so far
	rng    *rand.Rand
	mu     sync.Mutex
}

func newCutProxy(t *testing.T, target string, cuts int) (*cutProxy, string) {
	cp := &cutProxy{target: target, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))}
	cp.cuts.Store(int64(cuts))
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
			go cp.serve(c)
		}
	}()
	return cp, l.Addr().String()
}

func rst(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func (cp *cutProxy) serve(c net.Conn) {
	s, err := net.Dial("tcp", cp.target)
	if err != nil {
		c.Close()
		return
	}
	limit := int64(-1)
	if cp.cuts.Add(-1) >= 0 {
		cp.mu.Lock()
		limit = 4<<10 + cp.rng.Int64N(512<<10)
		cp.mu.Unlock()
	}
	go func() { io.Copy(s, c); s.(*net.TCPConn).CloseWrite() }()
	if limit < 0 {
		io.Copy(c, s)
		c.(*net.TCPConn).CloseWrite()
		return
	}
	io.CopyN(c, s, limit)
	cp.cut.Add(1)
	rst(c)
	rst(s)
}

// TestNetworkCuts drops sftp and rsync pulls mid-transfer (a TCP proxy
// that resets every connection after a random 4-516 KiB): the backup
// either reconnects its way to a complete, exact snapshot (sftp does) or
// fails or ends partial with an error naming the broken connection
// (rsync); whatever it stored is byte-exact (never wrong content), and the
// next backup over a sound network completes with the exact tree.
func TestNetworkCuts(t *testing.T) {
	ssh := testenv.SSHD(t)
	rsd := testenv.Rsyncd(t)
	key, err := os.ReadFile(ssh.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		method, dir, target string
		source              func(port string) map[string]any
	}{
		{"sftp", filepath.Join(ssh.Dir, "nettorture"), ssh.Addr, func(port string) map[string]any {
			return map[string]any{"name": "data", "method": "sftp", "path": filepath.Join(ssh.Dir, "nettorture"),
				"options": map[string]string{"host": "127.0.0.1", "port": port, "user": ssh.User},
				"secret":  map[string]string{"private_key": string(key)}}
		}},
		{"rsync", filepath.Join(rsd.Dir, "nettorture"), rsd.Addr, func(port string) map[string]any {
			return map[string]any{"name": "data", "method": "rsync", "path": "nettorture",
				"options": map[string]string{"host": "127.0.0.1", "port": port, "module": rsd.AuthModule, "user": rsd.User},
				"secret":  map[string]string{"password": rsd.Password}}
		}},
	}
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	startServe(t, data)
	rounds := scale(t, 2, 8)
	for _, c := range cases {
		t.Run(c.method, func(t *testing.T) {
			writeSource(t, c.dir, 0, 4, 40)
			cp, addr := newCutProxy(t, c.target, 0)
			_, port, _ := net.SplitHostPort(addr)
			host := "net-" + c.method
			api(t, data, "POST", "/api/v1/hosts", map[string]any{"name": host, "sources": []any{c.source(port)}}, &struct{}{})
			backup := func() job {
				var j struct {
					ID int64 `json:"id"`
				}
				api(t, data, "POST", "/api/v1/hosts/"+host+"/backup", map[string]any{}, &j)
				return waitJob(t, data, j.ID, 5*time.Minute)
			}
			// A clean first backup (pins the host key, the basis of the next).
			if j := backup(); j.State != "done" {
				t.Fatalf("first backup: %+v", j)
			}
			for round := range rounds {
				writeSource(t, c.dir, round+1, 4, 40)
				want := treeDigest(t, c.dir)
				cp.cuts.Store(1000) // every connection of this backup is cut
				before := cp.cut.Load()
				j := backup()
				cp.cuts.Store(0)
				if cp.cut.Load() == before {
					t.Fatalf("round %d: no connection was cut", round)
				}
				// Either the puller reconnected its way through (done), or
				// the backup failed or ended partial saying why.
				if j.State != "done" && j.Error == "" {
					t.Errorf("round %d: %s backup has no error", round, j.State)
				}
				// Whatever it stored is exact.
				for _, s := range snapshots(t, data) {
					if s.Host != host || s.JobID != j.ID {
						continue
					}
					dst := filepath.Join(tmp, fmt.Sprintf("%s-cut-%d", c.method, round))
					cli(t, data, "restore", host+"/"+s.ID, "--to", dst)
					got := treeDigest(t, dst)
					for k, g := range got {
						if strings.HasPrefix(g, "file") && want[k] != g {
							t.Errorf("round %d: %s snapshot %s holds wrong content for %s", round, s.Status, s.ID, k)
						}
					}
					if s.Status == "complete" {
						if d := diffTrees(want, got); d != "" {
							t.Errorf("round %d: complete snapshot %s of a cut backup differs:\n%s", round, s.ID, d)
						}
					}
				}
				// A sound network again: exact.
				if j := backup(); j.State != "done" {
					t.Fatalf("round %d: backup after the cuts: %+v", round, j)
				}
				ss := snapshots(t, data)
				last := ss[0]
				for _, s := range ss {
					if s.Host == host {
						last = s
					}
				}
				dst := filepath.Join(tmp, fmt.Sprintf("%s-ok-%d", c.method, round))
				mustCLI(t, data, "restore", host+"/"+last.ID, "--to", dst)
				if d := diffTrees(want, treeDigest(t, dst)); d != "" {
					t.Fatalf("round %d: backup after the cuts differs:\n%s", round, d)
				}
				t.Logf("round %d: cut %d connections; that backup %s (%s); the next one exact", round, cp.cut.Load()-before, j.State, lastLines(j.Error, 1))
			}
		})
	}
}
