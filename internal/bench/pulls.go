package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/internal/bench/corpus"
	"github.com/cairn-backup/cairn/internal/testenv"
)

// pairSpec is one comparison of the peers table: Cairn's median in
// Scenario against Peer's median in PeerScenario (Scenario when empty).
type pairSpec struct {
	Scenario     string
	PeerScenario string `json:",omitempty"`
	Peer         string
	Issue        string
	Target       float64 // Cairn ÷ peer wall must be ≤ Target; 0: for information
	What         string
	// BytesTarget: Cairn's bytes received ÷ the peer's must be ≤ it (0:
	// for information; issue 6's mutated pulls).
	BytesTarget float64 `json:",omitempty"`
}

// dumpResult is one dump-dedup measurement: a dump taken after Change.
type dumpResult struct {
	DB, Change      string
	Bytes, BytesNew int64
}

// servers are the testenv servers of the peer scenarios.
type servers struct {
	tb    *benchTB
	rsync *testenv.RsyncServer
	ssh   *testenv.SSHServer
	smb   *testenv.SambaServer
	ftp   *testenv.FTPServer
	pg    *testenv.PGServer
	maria *testenv.MariaDBServer
	errs  map[string]error
	binds []func()
	// proxies count the bytes of the pull scenarios (proxy.go), by server
	// name (rsyncd, sshd, samba); none for vsftpd: FTP's data connections
	// go to ports the server announces (PASV), past any proxy.
	proxies map[string]*byteProxy
	// sshKnownHosts is a known_hosts file naming sshd's key at the
	// proxy's port, for the OpenSSH clients.
	sshKnownHosts string
}

func (s *servers) close() {
	for _, p := range s.proxies {
		p.close()
	}
	for i := len(s.binds) - 1; i >= 0; i-- {
		s.binds[i]()
	}
	s.binds = nil
	s.tb.close()
}

// bind makes dir the served directory of a server until close.
func (s *servers) bind(src, dst string) error {
	un, err := bindMount(src, dst)
	if err == nil {
		s.binds = append(s.binds, un)
	}
	return err
}

func (b *bench) startServers(ctx context.Context) *servers {
	tb, err := newBenchTB(b.log, filepath.Join(b.o.work, "testenv"))
	s := &servers{tb: tb, errs: map[string]error{}}
	if err != nil {
		s.errs["all"] = err
		return s
	}
	note := func(name string, err error) {
		if err != nil {
			s.errs[name] = err
			b.log.Error("server not available; its scenarios are skipped", "server", name, "err", err)
		}
	}
	var e error
	if s.rsync, e = startServer(tb, "rsyncd", testenv.Rsyncd); e == nil {
		e = s.bind(b.src, s.rsync.Dir)
	}
	note("rsyncd", e)
	s.ssh, e = startServer(tb, "sshd", testenv.SSHD)
	note("sshd", e)
	if s.smb, e = startServer(tb, "samba", testenv.Samba); e == nil {
		e = s.bind(b.src, s.smb.Dir)
	}
	note("samba", e)
	if s.ftp, e = startServer(tb, "vsftpd", testenv.FTP); e == nil {
		e = s.bind(b.src, s.ftp.AnonDir)
	}
	note("vsftpd", e)
	s.pg, e = startServer(tb, "postgres", testenv.Postgres)
	note("postgres", e)
	if b.want("pulls") {
		b.startProxies(s)
	}
	if !b.want("dump") {
		return s // MariaDB is only for the dump part
	}
	s.maria, e = startServer(tb, "mariadb", testenv.MariaDB)
	note("mariadb", e)
	return s
}

// transport is one puller scenario and its native peer.
type transport struct {
	name, issue  string
	server       string // key in servers.errs
	method, path string
	opts, secret map[string]string
	peer         string
	peerCmd      func(ctx context.Context, dst string) *exec.Cmd
	peerNoChange bool // the peer has an incremental mode: measure its second run (and its mutated run)
	firstTarget  float64
	// nochange is compared with this transport's peer (or nochangePeer's).
	nochangeTarget float64
	nochangePeer   string // transport name whose peer no-change (and mutated) run is the reference
	// mutatedTarget and mutatedBytesTarget bound the pull of the mutated
	// tree onto the previous snapshot against the peer's into its previous
	// copy (issue 6: wall ≤ 1.25×, bytes received ≤ 1.5×); 0: for
	// information.
	mutatedTarget, mutatedBytesTarget float64
	// proxy counts the bytes received (nil: not measured).
	proxy *byteProxy
}

// startProxies puts a byte-counting proxy in front of every pull server
// but vsftpd, and writes a known_hosts file for sshd's key at its proxy.
func (b *bench) startProxies(s *servers) {
	s.proxies = map[string]*byteProxy{}
	add := func(name, addr string) {
		p, err := startProxy(addr)
		if err != nil {
			b.rec.Skipped = append(b.rec.Skipped, "bytes received: "+err.Error())
			return
		}
		s.proxies[name] = p
	}
	if s.rsync != nil {
		add("rsyncd", s.rsync.Addr)
	}
	if s.ssh != nil {
		add("sshd", net.JoinHostPort(s.ssh.Host, strconv.Itoa(s.ssh.Port)))
		if p := s.proxies["sshd"]; p != nil {
			kh := filepath.Join(b.o.work, "testenv", "known_hosts-proxy")
			line := fmt.Sprintf("[%s]:%d %s", s.ssh.Host, p.Port(), ssh.MarshalAuthorizedKey(s.ssh.HostKey))
			if err := os.WriteFile(kh, []byte(line), 0o644); err != nil {
				b.rec.Skipped = append(b.rec.Skipped, "bytes received over SSH: "+err.Error())
				p.close()
				delete(s.proxies, "sshd")
			} else {
				s.sshKnownHosts = kh
			}
		}
	}
	if s.smb != nil {
		add("samba", net.JoinHostPort(s.smb.Host, strconv.Itoa(s.smb.Port)))
	}
}

// sshArgs are OpenSSH client options for sshd, through its proxy when
// there is one.
func (s *servers) sshArgs() (port string, args []string) {
	args = s.ssh.SSHArgs()
	port = strconv.Itoa(s.ssh.Port)
	if p := s.proxies["sshd"]; p != nil {
		port = p.PortString()
		for i := range args {
			switch {
			case i > 0 && args[i-1] == "-p":
				args[i] = port
			case strings.HasPrefix(args[i], "UserKnownHostsFile="):
				args[i] = "UserKnownHostsFile=" + s.sshKnownHosts
			}
		}
	}
	return port, args
}

func (b *bench) transports(s *servers) []transport {
	var ts []transport
	// hostPort is the server's address, or its proxy's.
	hostPort := func(name, host string, port int) (string, string, *byteProxy) {
		if p := s.proxies[name]; p != nil {
			return "127.0.0.1", p.PortString(), p
		}
		return host, strconv.Itoa(port), nil
	}
	if s.rsync != nil {
		host, port, px := hostPort("rsyncd", s.rsync.Host, s.rsync.Port)
		url := s.rsync.URL(s.rsync.Module)
		if px != nil {
			url = fmt.Sprintf("rsync://%s/%s/", px.Addr(), s.rsync.Module)
		}
		ts = append(ts, transport{
			name: "rsync daemon", issue: "#6", server: "rsyncd", method: "rsync", path: "/",
			opts: map[string]string{"host": host, "port": port, "module": s.rsync.Module},
			peer: "rsync -a (daemon)", peerNoChange: true, firstTarget: 1.25, nochangeTarget: 1.25,
			mutatedTarget: 1.25, mutatedBytesTarget: 1.5, proxy: px,
			peerCmd: func(ctx context.Context, dst string) *exec.Cmd {
				return exec.CommandContext(ctx, "rsync", "-a", url, dst+"/")
			},
		})
	}
	if s.ssh != nil {
		host, port, px := hostPort("sshd", s.ssh.Host, s.ssh.Port)
		_, sshArgs := s.sshArgs()
		hostKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.ssh.HostKey)))
		sshOpts := map[string]string{"host": host, "port": port, "user": s.ssh.User, "host_key": hostKey}
		sec := map[string]string{"private_key": "@" + s.ssh.KeyFile}
		ro := map[string]string{"transport": "ssh"}
		for k, v := range sshOpts {
			ro[k] = v
		}
		ts = append(ts, transport{
			name: "rsync ssh", issue: "#6", server: "sshd", method: "rsync", path: b.src, opts: ro, secret: sec,
			peer: "rsync -a (ssh)", peerNoChange: true, firstTarget: 1.25, nochangeTarget: 1.25,
			mutatedTarget: 1.25, mutatedBytesTarget: 1.5, proxy: px,
			peerCmd: func(ctx context.Context, dst string) *exec.Cmd {
				return exec.CommandContext(ctx, "rsync", "-a", "-e", "ssh "+strings.Join(sshArgs, " "),
					s.ssh.User+"@"+host+":"+b.src+"/", dst+"/")
			},
		})
		ts = append(ts, transport{
			name: "sftp", issue: "#5", server: "sshd", method: "sftp", path: b.src, opts: sshOpts, secret: sec,
			peer: "sftp -r", firstTarget: 1.25, nochangeTarget: 1.5, nochangePeer: "rsync ssh", proxy: px,
			peerCmd: func(ctx context.Context, dst string) *exec.Cmd {
				args := []string{"-q", "-r", "-P", port}
				for i := 0; i < len(sshArgs); i++ {
					if sshArgs[i] == "-p" { // sftp's port flag is -P, given above
						i++
						continue
					}
					args = append(args, sshArgs[i])
				}
				args = append(args, s.ssh.User+"@"+host+":"+b.src+"/", dst+"/")
				return exec.CommandContext(ctx, "sftp", args...)
			},
		})
	}
	if s.smb != nil {
		host, port, px := hostPort("samba", s.smb.Host, s.smb.Port)
		ts = append(ts, transport{
			name: "smb", issue: "#5", server: "samba", method: "smb", path: "/",
			opts:   map[string]string{"host": host, "port": port, "share": s.smb.Share, "user": s.smb.User},
			secret: map[string]string{"password": s.smb.Password},
			peer:   "smbclient mget", firstTarget: 1.25, proxy: px,
			peerCmd: func(ctx context.Context, dst string) *exec.Cmd {
				c := exec.CommandContext(ctx, "smbclient", "//"+host+"/"+s.smb.Share, "-p", port,
					"-U", s.smb.User+"%"+s.smb.Password, "-c", "prompt OFF; recurse ON; lcd "+dst+"; mget *")
				return c
			},
		})
	}
	if s.ftp != nil {
		ts = append(ts, transport{
			name: "ftp", issue: "#7", server: "vsftpd", method: "ftp", path: "/",
			opts: map[string]string{"host": "127.0.0.1", "port": ftpPort(s.ftp.Addr), "user": "anonymous", "tls": "none"},
			peer: "lftp mirror", peerNoChange: true, firstTarget: 1.25, nochangeTarget: 1.25,
			peerCmd: func(ctx context.Context, dst string) *exec.Cmd {
				return exec.CommandContext(ctx, "lftp", "-c", "set ftp:ssl-allow no; set net:max-retries 1; set cmd:fail-exit yes; open -p "+
					ftpPort(s.ftp.Addr)+" 127.0.0.1; mirror / "+dst)
			},
		})
	}
	if b.o.transports != "" {
		want := strings.Split(b.o.transports, ",")
		ts = slices.DeleteFunc(ts, func(t transport) bool { return !slices.Contains(want, t.name) })
	}
	return ts
}

func ftpPort(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// pullArgs is the benchdrv command line of one pull.
func pullArgs(drv, poolDir, source string, t transport, extra ...string) []string {
	args := []string{drv, "pull", "--pool", poolDir, "--host", "bench", "--source", source, "--method", t.method, "--path", t.path}
	for k, v := range t.opts {
		args = append(args, "--opt", k+"="+v)
	}
	for k, v := range t.secret {
		args = append(args, "--secret", k+"="+v)
	}
	return append(args, extra...)
}

// measureArgs measures argv and records it under sc/tool; stored (if not
// empty) is measured after.
func (b *bench) measureArgs(ctx context.Context, sc, tool string, cmd *exec.Cmd, stored string) (sample, error) {
	return b.measureWire(ctx, sc, tool, cmd, stored, nil)
}

// measureWire is measureArgs for a client whose connections go through px
// (when not nil): the bytes it received and sent go into the sample.
func (b *bench) measureWire(ctx context.Context, sc, tool string, cmd *exec.Cmd, stored string, px *byteProxy) (sample, error) {
	logPath := filepath.Join(b.rec.Logs, strings.NewReplacer(" ", "_", "/", "_").Replace(tool)+".log")
	if px != nil {
		px.reset()
	}
	s, err := b.measureCmd(ctx, cmd, logPath)
	if err == nil && px != nil {
		s.Received, s.Sent, err = px.counts(10 * time.Second)
	}
	if err == nil && stored != "" {
		s.Stored, s.StoredAlloc, s.Files, err = du(stored)
	}
	b.record(key{sc, tool}, s, err)
	return s, err
}

// measureServed is measureArgs for a client of the server process pid:
// the server's CPU time and peak RSS (reset first) go into the sample, and
// its CPU is not counted as background load.
func (b *bench) measureServed(ctx context.Context, sc, tool string, cmd *exec.Cmd, pid int) (sample, error) {
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0o644) // reset VmHWM
	cpu0 := procTicks(pid)
	logPath := filepath.Join(b.rec.Logs, strings.NewReplacer(" ", "_", "/", "_").Replace(tool)+".log")
	s, err := b.measureCmd(ctx, cmd, logPath)
	if err == nil {
		s.ServerCPU = time.Duration(procTicks(pid)-cpu0) * 10 * time.Millisecond
		s.ServerRSS = procHWM(pid)
		if s.Wall > 0 {
			s.Others = max(0, s.Others-s.ServerCPU.Seconds()/s.Wall.Seconds())
		}
	}
	b.record(key{sc, tool}, s, err)
	return s, err
}

// procTicks is the CPU time (user+sys, USER_HZ ticks) of process pid and
// its threads.
func procTicks(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// procHWM is the peak RSS of process pid since the last clear_refs 5.
func procHWM(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (b *bench) addPair(p pairSpec) {
	for _, q := range b.rec.Pairs {
		if q.Scenario == p.Scenario && q.Peer == p.Peer {
			return
		}
	}
	b.rec.Pairs = append(b.rec.Pairs, p)
}

// peerScenarios runs every puller, dump, FUSE and WebDAV scenario against
// its native peer.
func (b *bench) peerScenarios(ctx context.Context) error {
	drv, err := b.buildDriver(ctx)
	if err != nil {
		return err
	}
	b.drv = drv
	s := b.startServers(ctx)
	defer s.close()
	for name, e := range s.errs {
		b.rec.Skipped = append(b.rec.Skipped, fmt.Sprintf("%s: %v", name, e))
	}
	ts := b.transports(s)
	if !b.want("pulls") {
		ts = nil
	}
	for _, t := range ts {
		b.addPair(pairSpec{Scenario: t.name + " first", Peer: t.peer, Issue: t.issue, Target: t.firstTarget,
			What: "first pull into an empty pool vs the peer into an empty directory"})
		switch {
		case t.nochangePeer != "":
			i := slices.IndexFunc(ts, func(u transport) bool { return u.name == t.nochangePeer })
			if i >= 0 {
				b.addPair(pairSpec{Scenario: t.name + " nochange", PeerScenario: t.nochangePeer + " nochange", Peer: ts[i].peer,
					Issue: t.issue, Target: t.nochangeTarget, What: "no-change pull vs the peer's no-change run"})
				b.addPair(pairSpec{Scenario: t.name + " mutated", PeerScenario: t.nochangePeer + " mutated", Peer: ts[i].peer,
					Issue: t.issue, Target: t.mutatedTarget, BytesTarget: t.mutatedBytesTarget, What: mutatedWhat})
			}
		case t.peerNoChange:
			b.addPair(pairSpec{Scenario: t.name + " nochange", Peer: t.peer, Issue: t.issue, Target: t.nochangeTarget,
				What: "no-change pull vs the peer's no-change run into its previous copy"})
			b.addPair(pairSpec{Scenario: t.name + " mutated", Peer: t.peer, Issue: t.issue, Target: t.mutatedTarget,
				BytesTarget: t.mutatedBytesTarget, What: mutatedWhat})
		}
	}
	for r := 1; r <= b.pullRuns(); r++ {
		for _, t := range ts {
			if err := b.transportRun(ctx, t, r); err != nil {
				return err
			}
		}
	}
	if s.pg != nil && b.want("dump") {
		if err := b.dumpScenario(ctx, s.pg); err != nil {
			return err
		}
	}
	if s.maria != nil && b.want("dump") {
		if err := b.mariaDumpScenario(ctx, s.maria); err != nil {
			return err
		}
	}
	if b.want("fuse") {
		if err := b.mountScenario(ctx); err != nil {
			return err
		}
	}
	if b.want("webdav") {
		if err := b.davScenario(ctx); err != nil {
			return err
		}
	}
	if b.o.scale && b.want("scale") {
		if err := b.scaleScenario(ctx, s); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (b *bench) pullRuns() int {
	if b.o.pullRuns > 0 {
		return b.o.pullRuns
	}
	if b.o.quick {
		return 1 // the 10-minute budget of quick mode
	}
	return b.o.runs
}

// mutatedWhat explains the mutated pull rows.
const mutatedWhat = "pull of the mutated tree (corpus.Mutate, the same change as the local scenarios) onto the previous snapshot vs the peer into its previous copy; rsync's delta transfer sends only the changed blocks of the patched large files"

// transportRun: first and no-change pull through Cairn, then the peer's
// copy (and second copy when it is incremental) into a plain directory;
// then the corpus is mutated in place and Cairn pulls it onto its
// previous snapshot and the peer into its previous copy (when it is
// incremental); the corpus is reverted after.
func (b *bench) transportRun(ctx context.Context, t transport, run int) error {
	b.log.Info("pull scenario", "transport", t.name, "run", run)
	poolDir := filepath.Join(b.o.work, "pool-pull")
	dst := filepath.Join(b.o.work, "peer-copy")
	for _, d := range []string{poolDir, dst} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	defer os.RemoveAll(poolDir)
	defer os.RemoveAll(dst)
	if err := runQuiet(ctx, exec.CommandContext(ctx, b.drv, "init", "--pool", poolDir)); err != nil {
		return err
	}
	source := strings.ReplaceAll(t.name, " ", "-")
	cairnOK := true
	for _, sc := range []string{"first", "nochange"} {
		args := pullArgs(b.drv, poolDir, source, t)
		if _, err := b.measureWire(ctx, t.name+" "+sc, "cairn", exec.CommandContext(ctx, args[0], args[1:]...), poolDir, t.proxy); err != nil {
			cairnOK = false
			break
		}
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	peerOK := false
	if _, err := b.measureWire(ctx, t.name+" first", t.peer, t.peerCmd(ctx, dst), dst, t.proxy); err == nil {
		peerOK = true
		if run == 1 {
			n, _, _, _ := du(dst)
			b.log.Info("peer copy", "peer", t.peer, "bytes", n)
		}
	}
	if t.peerNoChange {
		b.measureWire(ctx, t.name+" nochange", t.peer, t.peerCmd(ctx, dst), dst, t.proxy)
	}
	if ctx.Err() != nil || (!cairnOK && !peerOK) {
		return ctx.Err()
	}
	return b.mutated(ctx, func() {
		if cairnOK {
			args := pullArgs(b.drv, poolDir, source, t)
			b.measureWire(ctx, t.name+" mutated", "cairn", exec.CommandContext(ctx, args[0], args[1:]...), poolDir, t.proxy)
		}
		if peerOK && t.peerNoChange {
			b.measureWire(ctx, t.name+" mutated", t.peer, t.peerCmd(ctx, dst), dst, t.proxy)
		}
	})
}

// mutated runs fn with the corpus mutated in place (corpus.Mutate with the
// local scenarios' seed) and reverts it after. The stamp goes first so an
// interrupted run regenerates the corpus.
func (b *bench) mutated(ctx context.Context, fn func()) (err error) {
	if err := os.Remove(b.stamp); err != nil {
		return err
	}
	ch, err := corpus.Mutate(ctx, b.src, mutateSeed)
	if err != nil {
		return err
	}
	b.rec.Mutation = &mutation{len(ch.Rewritten), len(ch.Patched), len(ch.Deleted), len(ch.Added)}
	defer func() {
		if rerr := corpus.Revert(context.WithoutCancel(ctx), b.src, b.plan, ch); rerr != nil {
			err = errors.Join(err, rerr)
			return
		}
		if werr := corpus.WriteStamp(b.stamp, b.plan); err == nil {
			err = werr
		}
		if _, _, werr := warm(b.src); err == nil {
			err = werr
		}
	}()
	if _, _, err := warm(b.src); err != nil {
		return err
	}
	fn()
	return ctx.Err()
}

// --- database dump ----------------------------------------------------------

func (b *bench) dumpRows() int {
	if b.o.quick {
		return 300_000 // ≈50 MB of dump
	}
	return 3_000_000 // ≈500 MB
}

func (b *bench) dumpScenario(ctx context.Context, pg *testenv.PGServer) error {
	pgBin := func(name string) string {
		if p := filepath.Join(pg.BinDir, name); isExec(p) {
			return p
		}
		return name
	}
	psql := func(db, sql string) error {
		return runQuiet(ctx, exec.CommandContext(ctx, pgBin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
			"-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-U", pg.User, "-d", db, "-c", sql))
	}
	n := b.dumpRows()
	b.log.Info("dump scenario: generating the database", "rows", n)
	if err := psql("postgres", "DROP DATABASE IF EXISTS benchdb"); err != nil {
		return err
	}
	if err := psql("postgres", "CREATE DATABASE benchdb"); err != nil {
		return err
	}
	if err := psql("benchdb", fmt.Sprintf(`CREATE TABLE orders (id bigint PRIMARY KEY, placed timestamptz NOT NULL, customer text NOT NULL, amount numeric(12,2) NOT NULL, note text NOT NULL);
INSERT INTO orders SELECT g, timestamptz '2026-01-01 00:00:00+00' + g * interval '7 seconds', 'customer-' || (g * 7919 %% 100003),
  ((g * 104729) %% 1000000) / 100.0, md5(g::text) || ' ' || md5((g+1)::text) || ' shipped via ' || (ARRAY['post','courier','pickup'])[1 + g %% 3]
  FROM generate_series(1::bigint, %d) g`, n)); err != nil {
		return err
	}
	b.addPair(pairSpec{Scenario: "postgres dump", Peer: "pg_dump > /dev/null", Issue: "#7", Target: 1.25,
		What: "dump into an empty pool vs pg_dump alone (throughput ≥ 0.8× ⇔ time ≤ 1.25×)"})
	t := transport{method: "postgres", opts: map[string]string{"host": pg.Host, "port": strconv.Itoa(pg.Port), "user": pg.User,
		"databases": "benchdb", "globals": "false"}}
	if isExec(filepath.Join(pg.BinDir, "pg_dump")) {
		t.opts["bin_dir"] = pg.BinDir
	} // else the puller finds the newest installed client
	poolDir := filepath.Join(b.o.work, "pool-dump")
	defer os.RemoveAll(poolDir)
	pgDump := fmt.Sprintf("%s -h %s -p %d -U %s benchdb > /dev/null", pgBin("pg_dump"), pg.Host, pg.Port, pg.User)
	for r := 1; r <= b.pullRuns(); r++ {
		os.RemoveAll(poolDir)
		if err := runQuiet(ctx, exec.CommandContext(ctx, b.drv, "init", "--pool", poolDir)); err != nil {
			return err
		}
		args := pullArgs(b.drv, poolDir, "pg", t)
		b.measureArgs(ctx, "postgres dump", "cairn", exec.CommandContext(ctx, args[0], args[1:]...), poolDir)
		b.measureArgs(ctx, "postgres dump", "pg_dump > /dev/null", exec.CommandContext(ctx, "sh", "-c", pgDump), "")
	}
	// Dedup: change 1% of the rows, dump again into the same pool.
	if err := b.dumpDedup(ctx, "PostgreSQL", "postgres dump after change", poolDir, "pg", t, []dumpChange{
		{"1% of rows changed, the newest (append-style)", fmt.Sprintf("UPDATE orders SET note = md5(note) WHERE id > %d", n-n/100)},
		{"1% of rows changed, scattered (every 100th)", "UPDATE orders SET amount = amount + 1 WHERE id % 100 = 42"},
	}, func(sql string) error { return psql("benchdb", sql) }); err != nil {
		return err
	}
	return psql("postgres", "DROP DATABASE benchdb")
}

// dumpChange is one change made to the generated table before a dump.
type dumpChange struct{ name, sql string }

// dumpDedup makes each change with exec, dumps again into poolDir (which
// holds the earlier dumps) and records what the dump added to the pool.
func (b *bench) dumpDedup(ctx context.Context, db, sc, poolDir, source string, t transport, changes []dumpChange, exec_ func(string) error) error {
	stats := filepath.Join(b.o.work, "dump-stats.json")
	for _, ch := range changes {
		if err := exec_(ch.sql); err != nil {
			return err
		}
		args := pullArgs(b.drv, poolDir, source, t, "--stats", stats)
		if _, err := b.measureArgs(ctx, sc, "cairn", exec.CommandContext(ctx, args[0], args[1:]...), poolDir); err != nil {
			continue
		}
		var st struct {
			Bytes    int64 `json:"bytes"`
			BytesNew int64 `json:"bytes_new"`
		}
		data, err := os.ReadFile(stats)
		if err == nil {
			err = json.Unmarshal(data, &st)
		}
		if err != nil {
			return err
		}
		b.rec.Dumps = append(b.rec.Dumps, dumpResult{DB: db, Change: ch.name, Bytes: st.Bytes, BytesNew: st.BytesNew})
		b.log.Info("dump dedup", "db", db, "change", ch.name, "dump_bytes", st.Bytes, "new_bytes", st.BytesNew)
	}
	return nil
}

// mariaDumpScenario is dumpScenario on MariaDB: the same table shape and
// row count, dumped with the mariadb puller (mariadb-dump
// --single-transaction) against mariadb-dump > /dev/null, then the same
// two 1% changes.
func (b *bench) mariaDumpScenario(ctx context.Context, m *testenv.MariaDBServer) error {
	sql := func(stmt string) error {
		return runQuiet(ctx, exec.CommandContext(ctx, "mariadb", "--defaults-file="+m.DefaultsFile, "-u"+m.RootSocketUser, "--batch", "-e", stmt))
	}
	n := b.dumpRows()
	b.log.Info("dump scenario: generating the MariaDB database", "rows", n)
	// seq_1_to_N is MariaDB's Sequence engine.
	if err := sql(fmt.Sprintf(`DROP DATABASE IF EXISTS benchdb; CREATE DATABASE benchdb;
CREATE TABLE benchdb.orders (id BIGINT PRIMARY KEY, placed DATETIME NOT NULL, customer VARCHAR(40) NOT NULL, amount DECIMAL(12,2) NOT NULL, note VARCHAR(200) NOT NULL);
INSERT INTO benchdb.orders SELECT seq, '2026-01-01 00:00:00' + INTERVAL seq*7 SECOND, CONCAT('customer-', seq * 7919 %% 100003),
  ((seq * 104729) %% 1000000) / 100.0, CONCAT(MD5(seq), ' ', MD5(seq+1), ' shipped via ', ELT(1 + seq %% 3, 'post', 'courier', 'pickup'))
  FROM benchdb.seq_1_to_%d`, n)); err != nil {
		return err
	}
	b.addPair(pairSpec{Scenario: "mariadb dump", Peer: "mariadb-dump > /dev/null", Issue: "#7", Target: 1.25,
		What: "dump into an empty pool vs mariadb-dump (same options: --single-transaction --routines --events --triggers --hex-blob) alone (throughput ≥ 0.8× ⇔ time ≤ 1.25×)"})
	t := transport{method: "mariadb", opts: map[string]string{"host": m.Host, "port": strconv.Itoa(m.Port), "user": m.User, "databases": "benchdb"},
		secret: map[string]string{"password": m.Password}}
	poolDir := filepath.Join(b.o.work, "pool-dump-maria")
	defer os.RemoveAll(poolDir)
	cnf := filepath.Join(b.o.work, "maria-client.cnf")
	if err := os.WriteFile(cnf, []byte(fmt.Sprintf("[client]\nuser=%s\npassword=%s\nhost=%s\nport=%d\nprotocol=TCP\n", m.User, m.Password, m.Host, m.Port)), 0o600); err != nil {
		return err
	}
	defer os.Remove(cnf)
	peer := fmt.Sprintf("mariadb-dump --defaults-file=%s --single-transaction --routines --events --triggers --hex-blob --skip-dump-date -- benchdb > /dev/null", cnf)
	for r := 1; r <= b.pullRuns(); r++ {
		os.RemoveAll(poolDir)
		if err := runQuiet(ctx, exec.CommandContext(ctx, b.drv, "init", "--pool", poolDir)); err != nil {
			return err
		}
		args := pullArgs(b.drv, poolDir, "maria", t)
		b.measureArgs(ctx, "mariadb dump", "cairn", exec.CommandContext(ctx, args[0], args[1:]...), poolDir)
		b.measureArgs(ctx, "mariadb dump", "mariadb-dump > /dev/null", exec.CommandContext(ctx, "sh", "-c", peer), "")
	}
	if err := b.dumpDedup(ctx, "MariaDB", "mariadb dump after change", poolDir, "maria", t, []dumpChange{
		{"1% of rows changed, the newest (append-style)", fmt.Sprintf("UPDATE benchdb.orders SET note = MD5(note) WHERE id > %d", n-n/100)},
		{"1% of rows changed, scattered (every 100th)", "UPDATE benchdb.orders SET amount = amount + 1 WHERE id % 100 = 42"},
	}, sql); err != nil {
		return err
	}
	return sql("DROP DATABASE benchdb")
}

// --- FUSE ---------------------------------------------------------------------

// largeFiles lists the corpus's large files (absolute), largest first.
func largeFiles(root string, n int) ([]string, error) {
	list, err := regularFiles(root)
	if err != nil {
		return nil, err
	}
	type fs struct {
		p string
		n int64
	}
	var all []fs
	for _, rel := range list {
		if st, err := os.Stat(filepath.Join(root, rel)); err == nil {
			all = append(all, fs{rel, st.Size()})
		}
	}
	slices.SortFunc(all, func(a, b fs) int { return int(b.n>>20) - int(a.n>>20) })
	var out []string
	for i := 0; i < n && i < len(all); i++ {
		out = append(out, all[i].p)
	}
	return out, nil
}

// unmountStale detaches whatever is still mounted at mnt (a mount process
// that exited without unmounting leaves a dead FUSE mount behind).
func unmountStale(mnt string) {
	if data, err := os.ReadFile("/proc/mounts"); err == nil && strings.Contains(string(data), " "+mnt+" ") {
		syscall.Unmount(mnt, syscall.MNT_DETACH)
	}
}

// mounted starts a FUSE mount process and waits until root is listable.
func mounted(ctx context.Context, cmd *exec.Cmd, mnt, root, logPath string) (stop func(), err error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		unmountStale(mnt)
		lf.Close()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if es, err := os.ReadDir(root); err == nil && len(es) > 0 {
			return stop, nil
		}
		select {
		case err := <-done:
			done <- err
			stop()
			return nil, fmt.Errorf("%s exited: %v (log %s)", cmd.String(), err, logPath)
		case <-ctx.Done():
			stop()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	stop()
	return nil, fmt.Errorf("%s: %s not listable after 2 minutes", cmd.String(), root)
}

// fuseOps run in this order on a fresh mount; all but the warm ls start
// with the page cache dropped (FUSE pages and the repository's files).
var fuseOps = []string{"fuse ls -R cold", "fuse ls -R warm", "fuse cat large files", "fuse tar whole tree", fuseRandOp}

// fuseRandOp reads the largest corpus file's first 40 MiB (the whole file
// when it is smaller) in 64 KiB blocks in a shuffled order (benchdrv
// randread).
const fuseRandOp = "fuse random reads 40 MiB file"

// borgMountWorks reports whether borg mount can run here (it needs the
// llfuse or pyfuse3 Python module).
func borgMountWorks(ctx context.Context) error {
	bin, err := exec.LookPath("borg")
	if err != nil {
		return err
	}
	// borg's own interpreter (its #! line), not the first python3 on PATH.
	py := "python3"
	if data, err := os.ReadFile(bin); err == nil && strings.HasPrefix(string(data), "#!") {
		line, _, _ := strings.Cut(string(data[2:min(len(data), 200)]), "\n")
		if f := strings.Fields(line); len(f) == 1 {
			py = f[0]
		}
	}
	for _, mod := range []string{"llfuse", "pyfuse3"} {
		if exec.CommandContext(ctx, py, "-c", "import "+mod).Run() == nil {
			return nil
		}
	}
	return fmt.Errorf("neither the llfuse nor the pyfuse3 Python module is installed for %s", py)
}

func dropCaches() {
	syscall.Sync()
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o644)
}

// mountScenario snapshots the corpus once with Cairn and restic, then
// mounts each and times ls -R (cold, warm), tar of the whole tree and
// reading the large files.
func (b *bench) mountScenario(ctx context.Context) error {
	if _, err := exec.LookPath("restic"); err != nil {
		b.rec.Skipped = append(b.rec.Skipped, "FUSE: restic not installed")
		return nil
	}
	large, err := largeFiles(b.src, 4)
	if err != nil {
		return err
	}
	if len(large) == 0 {
		return errors.New("FUSE: the corpus has no files")
	}
	randFile := large[0]
	randWhat := "through each tool's FUSE mount of the same snapshot"
	if st, err := os.Stat(filepath.Join(b.src, randFile)); err == nil {
		span := min(st.Size(), 40<<20)
		randWhat = fmt.Sprintf("through each tool's FUSE mount: every 64 KiB block of the first %s of %s (%s, the corpus's largest file%s) read once in a shuffled order (benchdrv randread, pread per block), page cache dropped first",
			mib(span), randFile, mib(st.Size()), map[bool]string{true: "; it has no 40 MiB file", false: ""}[st.Size() < 40<<20])
	}
	peers := []string{"restic mount"}
	if err := borgMountWorks(ctx); err != nil {
		b.rec.Skipped = append(b.rec.Skipped, "FUSE: borg mount not measured: "+err.Error())
	} else {
		peers = append(peers, "borg mount")
	}
	for _, op := range fuseOps {
		what := "through each tool's FUSE mount of the same snapshot"
		if op == fuseRandOp {
			what = randWhat
		}
		for _, peer := range peers {
			b.addPair(pairSpec{Scenario: op, Peer: peer, Issue: "#8", Target: 0.5, What: what})
		}
	}
	cpool := filepath.Join(b.o.work, "pool-mount")
	rrepo := filepath.Join(b.o.work, "repo-mount-restic")
	rstate := filepath.Join(b.o.work, "state-mount-restic")
	brepo := filepath.Join(b.o.work, "repo-mount-borg")
	bstate := filepath.Join(b.o.work, "state-mount-borg")
	mnt := filepath.Join(b.o.work, "mnt")
	unmountStale(mnt)
	defer func() {
		for _, d := range []string{cpool, rrepo, rstate, brepo, bstate} {
			os.RemoveAll(d)
		}
	}()
	for _, d := range []string{cpool, rrepo, rstate, brepo, bstate} {
		os.RemoveAll(d)
	}
	for _, d := range []string{rstate, bstate} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	b.log.Info("FUSE scenario: snapshotting the corpus with cairn and restic")
	if err := runQuiet(ctx, exec.CommandContext(ctx, b.drv, "init", "--pool", cpool)); err != nil {
		return err
	}
	if err := runQuiet(ctx, exec.CommandContext(ctx, b.drv, "pull", "--pool", cpool, "--host", "bench", "--source", "src", "--method", "local", "--path", b.src)); err != nil {
		return err
	}
	var rs restic
	if err := rs.Init(ctx, rrepo, rstate); err != nil {
		return err
	}
	if err := runQuiet(ctx, rs.Backup(ctx, rrepo, rstate, b.src, "mount")); err != nil {
		return err
	}
	var bg borg
	if slices.Contains(peers, "borg mount") {
		if err := bg.Init(ctx, brepo, bstate); err != nil {
			return err
		}
		if err := runQuiet(ctx, bg.Backup(ctx, brepo, bstate, b.src, "mount")); err != nil {
			return err
		}
	}
	randArgs := func(file string) []string {
		return []string{"randread", "--file", file, "--span", strconv.Itoa(40 << 20)}
	}
	want, err := exec.CommandContext(ctx, b.drv, randArgs(filepath.Join(b.src, randFile))...).Output()
	if err != nil {
		return fmt.Errorf("randread on the source: %w", err)
	}
	logPath := filepath.Join(b.rec.Logs, "mount.log")
	for r := 1; r <= b.pullRuns(); r++ {
		for _, tool := range append([]string{"cairn"}, peers...) {
			var cmd *exec.Cmd
			var root string
			switch tool {
			case "cairn":
				cmd = exec.CommandContext(ctx, b.drv, "mount", "--pool", cpool, mnt)
				root = filepath.Join(mnt, "bench", "latest", "src")
			case "restic mount":
				cmd = rs.cmd(ctx, rrepo, rstate, "mount", mnt)
				root = filepath.Join(mnt, "snapshots", "latest") + b.src
			default:
				// -f: stay in the foreground so the mount's process is the one measured.
				cmd = bg.cmd(ctx, bstate, "mount", "-f", brepo+"::mount", mnt)
				root = filepath.Join(mnt, strings.TrimPrefix(b.src, "/"))
			}
			stop, err := mounted(ctx, cmd, mnt, root, logPath)
			if err != nil {
				b.record(key{fuseOps[0], tool}, sample{}, err)
				continue
			}
			cats := []string{}
			for _, l := range large {
				cats = append(cats, strconv.Quote(filepath.Join(root, l)))
			}
			for _, op := range fuseOps {
				var c *exec.Cmd
				switch op {
				case "fuse ls -R cold", "fuse ls -R warm":
					c = exec.CommandContext(ctx, "sh", "-c", "ls -R "+strconv.Quote(root+"/")+" > /dev/null")
				case "fuse tar whole tree":
					// Not /dev/null: GNU tar skips reading file data when it writes there.
					c = exec.CommandContext(ctx, "tar", "-cf", "/dev/zero", "-C", root+"/", ".")
				case "fuse cat large files":
					c = exec.CommandContext(ctx, "sh", "-c", "cat "+strings.Join(cats, " ")+" > /dev/null")
				case fuseRandOp:
					c = exec.CommandContext(ctx, b.drv, randArgs(filepath.Join(root, randFile))...)
				}
				if op != "fuse ls -R warm" {
					dropCaches()
				}
				_, err := b.measureServed(ctx, op, tool, c, cmd.Process.Pid)
				if op == fuseRandOp && err == nil && r == 1 {
					// Again (now from the page cache) to check what was served.
					got, err := exec.CommandContext(ctx, b.drv, randArgs(filepath.Join(root, randFile))...).Output()
					note := fmt.Sprintf("random reads through %s: same bytes as the source file (%s)", tool, strings.TrimSpace(string(want)))
					if err != nil || string(got) != string(want) {
						note = fmt.Sprintf("random reads through %s: NOT the source's bytes: got %q (%v), want %q", tool, strings.TrimSpace(string(got)), err, strings.TrimSpace(string(want)))
					}
					b.rec.Verify["fuse"] = append(b.rec.Verify["fuse"], note)
				}
			}
			stop()
		}
	}
	return ctx.Err()
}

// --- WebDAV -------------------------------------------------------------------

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// started starts a server process and waits until addr accepts connections.
func started(ctx context.Context, cmd *exec.Cmd, addr, logPath string) (func(), error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		lf.Close()
	}
	for i := 0; i < 300; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return stop, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	return nil, fmt.Errorf("%s: no listener on %s", cmd.String(), addr)
}

func (b *bench) davScenario(ctx context.Context) error {
	const sc = "webdav walk + GET all"
	b.addPair(pairSpec{Scenario: sc, Peer: "x/net/webdav", Issue: "#8", Target: 1.25,
		What: "PROPFIND (Depth 1) walk and GET of every file, 4 requests at once (benchdrv davget), from Cairn's WebDAV handler on the snapshot vs a plain x/net/webdav server on the same files on disk (throughput ≥ 0.8× ⇔ time ≤ 1.25×). rclone is not the timing client: its WebDAV backend spaces requests ≥ 10 ms apart, which makes any two servers look alike"})
	cpool := filepath.Join(b.o.work, "pool-dav")
	dst := filepath.Join(b.o.work, "dav-copy")
	defer os.RemoveAll(cpool)
	defer os.RemoveAll(dst)
	os.RemoveAll(cpool)
	if err := runQuiet(ctx, exec.CommandContext(ctx, b.drv, "init", "--pool", cpool)); err != nil {
		return err
	}
	if err := runQuiet(ctx, exec.CommandContext(ctx, b.drv, "pull", "--pool", cpool, "--host", "bench", "--source", "src", "--method", "local", "--path", b.src)); err != nil {
		return err
	}
	logPath := filepath.Join(b.rec.Logs, "webdav.log")
	for r := 1; r <= b.pullRuns(); r++ {
		for _, tool := range []string{"cairn", "x/net/webdav"} {
			addr, err := freeAddr()
			if err != nil {
				return err
			}
			var srv *exec.Cmd
			url := "http://" + addr + "/dav/"
			if tool == "cairn" {
				srv = exec.CommandContext(ctx, b.drv, "dav", "--pool", cpool, "--addr", addr)
				url += "bench/latest/src/"
			} else {
				srv = exec.CommandContext(ctx, b.drv, "plaindav", "--dir", b.src, "--addr", addr)
			}
			stop, err := started(ctx, srv, addr, logPath)
			if err != nil {
				b.record(key{sc, tool}, sample{}, err)
				continue
			}
			os.RemoveAll(dst)
			dropCaches()
			_, err = b.measureServed(ctx, sc, tool, exec.CommandContext(ctx, b.drv, "davget", "--url", url, "--dst", dst), srv.Process.Pid)
			stop()
			if err == nil && r == 1 {
				n, verr := compareTrees(b.src, dst)
				note := fmt.Sprintf("WebDAV walk + GET through %s: %d files identical to the source (contents and mtimes)", tool, n)
				if verr != nil {
					note = fmt.Sprintf("WebDAV walk + GET through %s: NOT identical: %v", tool, verr)
				}
				b.rec.Verify["webdav"] = append(b.rec.Verify["webdav"], note)
			}
		}
	}
	return ctx.Err()
}

// --- scale ----------------------------------------------------------------------

func (b *bench) scaleSizes() []int { return []int{50_000, b.o.scaleFiles} }

// scaleScenario: first and no-change snapshots of a 50k and a 1M small-file
// tree through the local puller (the cairn CLI) and the rsync daemon, then
// ls -R through FUSE of the big snapshot.
func (b *bench) scaleScenario(ctx context.Context, s *servers) error {
	var c tool
	for _, t := range b.tools {
		if t.Name() == "cairn" {
			c = t
		}
	}
	for _, n := range b.scaleSizes() {
		p := corpus.NewPlan(corpus.SmallOnly(b.o.seed, n))
		src := b.flatDir(n)
		if _, err := b.ensureCorpus(ctx, p, src, src+".stamp"); err != nil {
			return err
		}
		b.rec.ScaleSizes = append(b.rec.ScaleSizes, n)
		poolDir := filepath.Join(b.o.work, "pool-scale")
		os.RemoveAll(poolDir)
		tag := strconv.Itoa(n)
		if err := runQuiet(ctx, exec.CommandContext(ctx, b.drv, "init", "--pool", poolDir)); err != nil {
			return err
		}
		for _, sc := range []string{"first", "nochange"} {
			cmd := exec.CommandContext(ctx, b.drv, "pull", "--pool", poolDir, "--host", "bench", "--source", filepath.Base(src), "--method", "local", "--path", src)
			if c != nil { // the real CLI when it is part of the run
				cmd = c.Backup(ctx, poolDir, "", src, sc)
			}
			b.measureArgs(ctx, "scale local "+sc+" "+tag, "cairn", cmd, poolDir)
		}
		if n == b.o.scaleFiles {
			b.scaleMount(ctx, poolDir, src, tag)
		}
		os.RemoveAll(poolDir)
		if s.rsync != nil {
			un, err := bindMount(src, s.rsync.Dir)
			if err != nil {
				return err
			}
			if err := runQuiet(ctx, exec.CommandContext(ctx, b.drv, "init", "--pool", poolDir)); err != nil {
				un()
				return err
			}
			t := b.transports(&servers{rsync: s.rsync})[0]
			for _, sc := range []string{"first", "nochange"} {
				args := pullArgs(b.drv, poolDir, "flat", t)
				b.measureArgs(ctx, "scale rsync "+sc+" "+tag, "cairn", exec.CommandContext(ctx, args[0], args[1:]...), poolDir)
			}
			un()
			os.RemoveAll(poolDir)
		}
	}
	return ctx.Err()
}

func (b *bench) scaleMount(ctx context.Context, poolDir, src, tag string) {
	mnt := filepath.Join(b.o.work, "mnt")
	unmountStale(mnt)
	os.MkdirAll(mnt, 0o755)
	root := filepath.Join(mnt, "bench", "latest", filepath.Base(src))
	cmd := exec.CommandContext(ctx, b.drv, "mount", "--pool", poolDir, mnt)
	stop, err := mounted(ctx, cmd, mnt, root, filepath.Join(b.rec.Logs, "mount.log"))
	if err != nil {
		b.record(key{"scale fuse ls -R " + tag, "cairn"}, sample{}, err)
		return
	}
	defer stop()
	c := exec.CommandContext(ctx, "sh", "-c", "ls -R "+strconv.Quote(root+"/")+" | wc -l")
	b.measureServed(ctx, "scale fuse ls -R "+tag, "cairn", c, cmd.Process.Pid)
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// want reports whether the peer part name (pulls, dump, fuse, webdav,
// scale) is selected by -only.
func (b *bench) want(name string) bool {
	return b.o.only == "" || slices.Contains(strings.Split(b.o.only, ","), name)
}

// mergeScale copies the scale part of another results file into this run.
func (b *bench) mergeScale(file string) error {
	other, err := loadRecord(file)
	if err != nil {
		return err
	}
	n := 0
	for _, r := range other.Results {
		if strings.HasPrefix(r.Scenario, "scale ") && b.res(r.Scenario, r.Tool) == nil {
			b.rec.Results = append(b.rec.Results, r)
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("-merge-scale %s: no scale figures in it", file)
	}
	b.rec.ScaleSizes = other.ScaleSizes
	b.rec.Skipped = append(b.rec.Skipped, other.Skipped...)
	b.rec.ScaleFrom = fmt.Sprintf("a separate run (`-only scale`) started %s UTC, cairn `%s`, load average %s at its start and %s at its end",
		other.Start.UTC().Format("2006-01-02 15:04"), other.Versions["cairn"], other.Load0, other.Load1)
	return nil
}
