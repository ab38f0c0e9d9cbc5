package testenv

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts. They are generous because the CI machine has 2 cores shared by
// several test binaries; they bound a failure, they are not expectations.
const (
	readyTimeout = 60 * time.Second // daemon start until it answers
	stopTimeout  = 15 * time.Second // SIGTERM until SIGKILL
	pollStep     = 10 * time.Millisecond
)

// pidDir holds one file per running daemon (named after its pid) so that
// KillLeftovers can find daemons of a test binary that died without running
// its cleanups (go test -timeout panics, SIGKILL).
func pidDir() string { return filepath.Join(os.TempDir(), "cairn-testenv-pids") }

// daemon is one started server process, the leader of its own process group.
type daemon struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	pidFile string
	done    chan struct{} // closed when cmd.Wait returned
	waitErr error
	// stopSignal is sent to the leader only when set; otherwise SIGTERM goes
	// to the whole group.
	stopSignal syscall.Signal
	leaderOnly bool
}

// Pid returns the daemon's pid, which is also its process group id.
func (d *daemon) Pid() int { return d.cmd.Process.Pid }

// startDaemon starts cmd as a direct child in its own process group, with
// stdout and stderr appended to logPath, records a pidfile, and registers a
// cleanup that stops the whole group. It does not wait for readiness.
func startDaemon(t testing.TB, name string, cmd *exec.Cmd, logPath string) *daemon {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("testenv: %s: open log: %v", name, err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	// Should the test binary die, the daemon would be orphaned: KillLeftovers
	// handles that by pidfile. Pdeathsig is not used because it fires when
	// the starting OS thread exits, not the process.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: %s: start %s: %v", name, cmd.Path, err)
	}
	d := &daemon{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		d.waitErr = cmd.Wait()
		close(d.done)
	}()
	d.pidFile = writePidFile(d.Pid(), name)
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop terminates the daemon's process group: SIGTERM, then SIGKILL after
// stopTimeout, and waits until no (non-zombie) member of the group is left.
func (d *daemon) stop(t testing.TB) {
	pid := d.Pid()
	// Descendants that left the group (sshd sessions call setsid) would not
	// get the group signal: remember them now, while their parent links
	// still lead to the leader.
	desc := descendants(pid)
	sig := d.stopSignal
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	select {
	case <-d.done:
	default:
		if d.leaderOnly {
			_ = syscall.Kill(pid, sig)
		} else {
			_ = syscall.Kill(-pid, sig)
		}
		select {
		case <-d.done:
		case <-time.After(stopTimeout):
			t.Logf("testenv: %s (pid %d) ignored %v for %v; killing its group", d.name, pid, sig, stopTimeout)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-d.done
		}
	}
	// Children of the leader (smbd workers, sshd sessions, postgres
	// backends) may outlive it briefly.
	deadline := time.Now().Add(stopTimeout)
	for len(GroupMembers(pid)) > 0 {
		if time.Now().After(deadline) {
			t.Logf("testenv: %s: group %d still has %v; killing it", d.name, pid, GroupMembers(pid))
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			break
		}
		time.Sleep(pollStep)
	}
	d.stopStragglers(t, desc)
	if t.Failed() {
		t.Logf("testenv: %s log tail (%s):\n%s", d.name, d.logPath, logTail(d.logPath))
	}
	_ = os.Remove(d.pidFile)
}

// stopStragglers terminates processes of desc that are still alive after
// their leader's group was stopped: SIGTERM, then SIGKILL after stopTimeout.
func (d *daemon) stopStragglers(t testing.TB, desc []procID) {
	alive := func() []procID {
		var out []procID
		for _, p := range desc {
			if p.alive() {
				out = append(out, p)
			}
		}
		return out
	}
	left := alive()
	if len(left) == 0 {
		return
	}
	for _, p := range left {
		_ = syscall.Kill(p.pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(stopTimeout)
	for len(left) > 0 {
		if time.Now().After(deadline) {
			t.Logf("testenv: %s: killing leftover descendants %v", d.name, left)
			for _, p := range left {
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
			return
		}
		time.Sleep(pollStep)
		left = alive()
	}
}

// exited reports whether the daemon has already exited.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// waitReady polls probe until it succeeds, the daemon exits, or the
// deadline passes; the last two fail the test with the daemon's log tail.
func (d *daemon) waitReady(t testing.TB, what string, probe func() error) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	var err error
	for {
		if err = probe(); err == nil {
			return
		}
		if d.exited() {
			t.Fatalf("testenv: %s exited before %s (%v): %v\nlog tail (%s):\n%s",
				d.name, what, d.waitErr, err, d.logPath, logTail(d.logPath))
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %s not ready after %v (%s): %v\nlog tail (%s):\n%s",
				d.name, readyTimeout, what, err, d.logPath, logTail(d.logPath))
		}
		time.Sleep(pollStep)
	}
}

// tcpProbe returns a probe that succeeds once addr accepts a connection.
func tcpProbe(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// bannerProbe succeeds once addr accepts a connection and sends a first line
// starting with prefix (SSH-2.0, 220, @RSYNCD:).
func bannerProbe(addr, prefix string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, len(prefix))
		if _, err := io.ReadFull(c, buf); err != nil {
			return fmt.Errorf("read banner: %w", err)
		}
		if string(buf) != prefix {
			return fmt.Errorf("banner %q, want prefix %q", buf, prefix)
		}
		return nil
	}
}

// logTail returns the last lines of a log file.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// ---------------------------------------------------------------- pidfiles

// writePidFile records a running daemon: its pid and start time, and the pid
// and start time of this test process (the owner). Errors are ignored: the
// pidfile is only a safety net.
func writePidFile(pid int, name string) string {
	dir := pidDir()
	if err := os.MkdirAll(dir, 0o1777); err != nil {
		return ""
	}
	_ = os.Chmod(dir, 0o1777)
	self := os.Getpid()
	line := fmt.Sprintf("%d %d %d %d %s\n", pid, procStart(pid), self, procStart(self), name)
	path := filepath.Join(dir, strconv.Itoa(pid))
	_ = os.WriteFile(path, []byte(line), 0o644)
	return path
}

// KillLeftovers kills daemons started by earlier test processes that died
// without running their cleanups (for example after a go test -timeout
// panic), using the pidfiles under os.TempDir()/cairn-testenv-pids. Daemons
// whose owning test process is still alive (another package's test binary
// running in parallel) are left alone. Call it from every TestMain of a
// package that uses testenv:
//
//	func TestMain(m *testing.M) {
//		testenv.KillLeftovers()
//		os.Exit(m.Run())
//	}
func KillLeftovers() {
	entries, err := os.ReadDir(pidDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		path := filepath.Join(pidDir(), e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var pid, owner int
		var pidStart, ownerStart uint64
		var name string
		if n, _ := fmt.Sscanf(string(b), "%d %d %d %d %s", &pid, &pidStart, &owner, &ownerStart, &name); n < 4 {
			_ = os.Remove(path)
			continue
		}
		if owner > 0 && procStart(owner) == ownerStart && ownerStart != 0 {
			continue // its test process is alive and will clean up
		}
		leaderAlive := procStart(pid) != 0
		if leaderAlive && procStart(pid) != pidStart {
			// The pid was reused by an unrelated process; the old group is
			// gone (Linux keeps a pid reserved while its group exists).
			_ = os.Remove(path)
			continue
		}
		if leaderAlive || len(GroupMembers(pid)) > 0 {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = os.Remove(path)
	}
}

// procStart returns the start time (clock ticks since boot) of a live,
// non-zombie process, or 0 if there is none.
func procStart(pid int) uint64 {
	st, ok := readStat(pid)
	if !ok || st.state == 'Z' {
		return 0
	}
	return st.start
}

type procStat struct {
	state byte
	ppid  int
	pgrp  int
	start uint64
}

func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field 5 is pgrp, field 22 starttime.
	if len(f) < 20 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	pgrp, _ := strconv.Atoi(f[2])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return procStat{state: f[0][0], ppid: ppid, pgrp: pgrp, start: start}, true
}

// GroupMembers lists the live (non-zombie) processes in process group pgid.
// Self-tests use it to check that a stopped server left nothing behind.
func GroupMembers(pgid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := readStat(pid)
		if ok && st.pgrp == pgid && st.state != 'Z' {
			out = append(out, pid)
		}
	}
	return out
}

// procID identifies a process across pid reuse.
type procID struct {
	pid   int
	start uint64
}

func (p procID) alive() bool { return p.start != 0 && procStart(p.pid) == p.start }

// descendants lists the live descendants of pid (not pid itself), wherever
// their process group: sshd puts each connection in a new session.
func descendants(pid int) []procID {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]procID{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(p); ok && st.state != 'Z' {
			children[st.ppid] = append(children[st.ppid], procID{p, st.start})
		}
	}
	var out []procID
	queue := []int{pid}
	for len(queue) > 0 {
		for _, c := range children[queue[0]] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
		queue = queue[1:]
	}
	return out
}

// ------------------------------------------------------------------- ports

var portMu sync.Mutex

// freePorts returns n consecutive free TCP ports on 127.0.0.1, chosen at
// random below the kernel's ephemeral range (32768+) so that outgoing
// connections of other tests cannot take them. A port is free if it can be
// bound now; another process may still take it before the daemon binds it,
// which is rare enough for tests.
func freePorts(t testing.TB, n int) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for try := 0; try < 200; try++ {
		r, err := rand.Int(rand.Reader, big.NewInt(int64(32000-20000-n)))
		if err != nil {
			t.Fatalf("testenv: random port: %v", err)
		}
		base := 20000 + int(r.Int64())
		ok := true
		for p := base; p < base+n && ok; p++ {
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("testenv: no %d free consecutive ports found", n)
	return 0
}

func freePort(t testing.TB) int { t.Helper(); return freePorts(t, 1) }

// ------------------------------------------------------------------ helpers

// randomSecret returns a random hex string of 2*n characters.
func randomSecret(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// openDirs chmods dirs 0755 so that daemons that drop privileges (postgres,
// mysql, ftp) can traverse them; t.TempDir() and its parent are 0700.
func openDirs(t testing.TB, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatalf("testenv: chmod %s: %v", d, err)
		}
	}
}

// tempDir is t.TempDir() made traversable by other users, together with its
// parent.
func tempDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	openDirs(t, filepath.Dir(d), d)
	return d
}

// run runs a short helper command and fails the test with its output on
// error.
func run(t testing.TB, stdin string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(stdin, name, args...)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return out
}

func runErr(stdin string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// needRoot fails (CI=true) or skips the test unless it runs as root: the
// daemons switch users or log in as root.
func needRoot(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("testenv: %s needs root", what)
	}
	t.Skipf("testenv: %s needs root", what)
}
