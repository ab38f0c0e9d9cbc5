package appliance

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
	"golang.org/x/crypto/ssh"
)

// TestJumpHost backs up sftp and tar-over-SSH sources through a jump
// host (two real sshds: the first is the bastion): the content arrives,
// the pre-command goes through the jump too (one bastion login per
// source, counted in its log), a wrong bastion host key fails
// permanently, and a method without a dialer is refused.
func TestJumpHost(t *testing.T) {
	jump := testenv.SSHD(t)
	target := testenv.SSHD(t)
	dir := filepath.Join(target.Dir, "data")
	fillTree(t, dir)
	want := treeDigests(t, dir)
	jumpKey, err := os.ReadFile(jump.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	jumpHostKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(jump.HostKey)))
	mark := filepath.Join(t.TempDir(), "pre-ran")
	e := newEnv(t, Config{})
	add := func(name, method, hostKey string) {
		in := snapSource(t, target, dir, map[string]string{"jump": "root@127.0.0.1:" + strconv.Itoa(jump.Port),
			"jump_host_key": hostKey, "pre": "touch " + mark})
		in.Method = method
		in.Secret["jump_private_key"] = string(jumpKey)
		addr := target.Host
		e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Address: &addr, Sources: []SourceInput{in}}, nil)
	}
	add("behind", "sftp", jumpHostKey)
	other := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(target.HostKey)))
	add("spoofed", "sftp", other)
	add("tarjump", "tar", jumpHostKey)
	// A method without a dialer is refused when the source is stored.
	{
		in := snapSource(t, target, dir, map[string]string{"jump": "127.0.0.1:" + strconv.Itoa(jump.Port), "jump_host_key": jumpHostKey})
		in.Method = fakeMethod
		in.Secret["jump_private_key"] = string(jumpKey)
		name, addr := "fakejump", target.Host
		rec := e.do("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Address: &addr, Sources: []SourceInput{in}})
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), "cannot go through a jump host yet") {
			t.Fatalf("a method without a dialer through a jump host: %d %s", rec.Code, rec.Body)
		}
	}

	logFile := filepath.Join(filepath.Dir(jump.Dir), "sshd.log")
	logins := func() int {
		b, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "Accepted publickey for root")
	}
	if n := logins(); n != 0 {
		t.Fatalf("%d logins on the jump host before any backup", n)
	}
	if j := e.waitJob(e.backup("behind").ID); j.State != "done" {
		t.Fatalf("backup through the jump host: %s %s", j.State, j.Error)
	}
	if _, err := os.Stat(mark); err != nil {
		t.Fatalf("the pre-command did not run through the jump host: %v", err)
	}
	// One SSH connection to the bastion carries the hook and the pull.
	if n := logins(); n != 1 {
		t.Fatalf("%d logins on the jump host, want 1", n)
	}
	if j := e.waitJob(e.backup("tarjump").ID); j.State != "done" {
		t.Fatalf("tar backup through the jump host: %s %s", j.State, j.Error)
	}
	if n := logins(); n != 2 {
		t.Fatalf("%d logins on the jump host, want 2", n)
	}
	for _, host := range []string{"behind", "tarjump"} {
		to := filepath.Join(e.dir, "restores", host)
		var rj JobBody
		e.must("socket", "POST", "/api/v1/restores", RestoreInput{Host: host, Snapshot: "latest", Source: "data", To: to}, &rj)
		if rj = e.waitJob(rj.ID); rj.State != "done" {
			t.Fatalf("restore: %s %s", rj.State, rj.Error)
		}
		if got := treeDigests(t, to); !mapsEqual(got, want) {
			t.Fatalf("%s backup through the jump host: %v, want %v", host, got, want)
		}
	}

	j := e.waitJob(e.backup("spoofed").ID)
	if j.State != "failed" || !strings.Contains(j.Error, "jump host") || !strings.Contains(j.Error, "host key mismatch") {
		t.Fatalf("a jump host with another host key: %s %q", j.State, j.Error)
	}
	if n := logins(); n != 2 {
		t.Fatalf("%d logins on the jump host, want 2", n)
	}

	// The connection test goes through the jump host too: one more
	// bastion login, and a spoofed bastion fails the test.
	var tests []SourceTestBody
	e.must("socket", "POST", "/api/v1/hosts/behind/test", nil, &tests)
	if len(tests) != 1 || !tests[0].OK || tests[0].Identity["host_key"] == "" {
		t.Fatalf("connection test through the jump host: %+v", tests)
	}
	if n := logins(); n != 3 {
		t.Fatalf("%d logins on the jump host after the connection test, want 3", n)
	}
	e.must("socket", "POST", "/api/v1/hosts/spoofed/test", nil, &tests)
	if len(tests) != 1 || tests[0].OK || !strings.Contains(tests[0].Error, "jump host") || !strings.Contains(tests[0].Error, "host key mismatch") {
		t.Fatalf("connection test through a spoofed jump host: %+v", tests)
	}

	// So does a restore to the host: the snapshot arrives in a new
	// directory on the target, written through the bastion.
	dest := filepath.Join(target.Dir, "restored-through-jump")
	var rj JobBody
	e.must("socket", "POST", "/api/v1/restores", RestoreToHostInput{Host: "behind", Snapshot: "latest", Source: "data", ToHost: true, Dest: dest}, &rj)
	if rj = e.waitJob(rj.ID); rj.State != "done" {
		t.Fatalf("restore to the host through the jump host: %s %s", rj.State, rj.Error)
	}
	if got := treeDigests(t, dest); !mapsEqual(got, want) {
		t.Fatalf("restored through the jump host: %v, want %v", got, want)
	}
	if n := logins(); n != 4 {
		t.Fatalf("%d logins on the jump host after the restore, want 4", n)
	}
}

// TestJumpHostSMB backs up an SMB share through a jump host (a real
// sshd and a real smbd): the share's content arrives and the bastion
// logged exactly one login.
func TestJumpHostSMB(t *testing.T) {
	jump := testenv.SSHD(t)
	sm := testenv.Samba(t)
	fillTree(t, filepath.Join(sm.Dir, "data"))
	want := treeDigests(t, filepath.Join(sm.Dir, "data"))
	jumpKey, err := os.ReadFile(jump.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Config{})
	name := "fileserver"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Address: &sm.Host, Sources: []SourceInput{{Name: "data", Method: "smb", Path: "data",
		Options: map[string]string{"port": strconv.Itoa(sm.Port), "user": sm.User, "share": sm.Share,
			"jump": "127.0.0.1:" + strconv.Itoa(jump.Port), "jump_host_key": strings.TrimSpace(string(ssh.MarshalAuthorizedKey(jump.HostKey)))},
		Secret: map[string]string{"password": sm.Password, "jump_private_key": string(jumpKey)}}}}, nil)
	if j := e.waitJob(e.backup("fileserver").ID); j.State != "done" {
		t.Fatalf("smb backup through the jump host: %s %s", j.State, j.Error)
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(jump.Dir), "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "Accepted publickey for root"); n != 1 {
		t.Fatalf("%d logins on the jump host, want 1", n)
	}
	to := filepath.Join(e.dir, "restores", "smb")
	var rj JobBody
	e.must("socket", "POST", "/api/v1/restores", RestoreInput{Host: "fileserver", Snapshot: "latest", Source: "data", To: to}, &rj)
	if rj = e.waitJob(rj.ID); rj.State != "done" {
		t.Fatalf("restore: %s %s", rj.State, rj.Error)
	}
	if got := treeDigests(t, to); !mapsEqual(got, want) {
		t.Fatalf("smb backup through the jump host: %v, want %v", got, want)
	}
}

// TestJumpHostPostgresViaSSH dumps a PostgreSQL database in mode (b)
// (pg_dump runs on the host over SSH) through a jump host, and refuses
// mode (a) through a jump host.
func TestJumpHostPostgresViaSSH(t *testing.T) {
	testenv.Need(t, "pg_dump")
	jump := testenv.SSHD(t)
	target := testenv.SSHD(t)
	pg := testenv.Postgres(t)
	pg.CreateDB(t, "appdb")
	jumpKey, err := os.ReadFile(jump.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(target.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Config{})
	add := func(name, via string) {
		o := map[string]string{"host": pg.Host, "port": strconv.Itoa(pg.Port), "user": pg.User, "databases": "appdb",
			"globals": "false", "via": via, "ssh_host": target.Host, "ssh_port": strconv.Itoa(target.Port), "ssh_user": target.User,
			"ssh_host_key": strings.TrimSpace(string(ssh.MarshalAuthorizedKey(target.HostKey))),
			"jump":         "127.0.0.1:" + strconv.Itoa(jump.Port), "jump_host_key": strings.TrimSpace(string(ssh.MarshalAuthorizedKey(jump.HostKey)))}
		rec := e.do("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{{Name: "data", Method: "postgres", Path: "/",
			Options: o, Secret: map[string]string{"password": "x-trust-auth", "ssh_private_key": string(key), "jump_private_key": string(jumpKey)}}}})
		if via == "ssh" && rec.Code != 200 && rec.Code != 201 {
			t.Fatalf("POST /api/v1/hosts: %d %s", rec.Code, rec.Body)
		}
		// Mode (a) through a jump host is refused when it is stored.
		if via != "ssh" && (rec.Code != 400 || !strings.Contains(rec.Body.String(), "only with via=ssh")) {
			t.Fatalf("postgres mode (a) through a jump host: %d %s", rec.Code, rec.Body)
		}
	}
	add("db", "ssh")
	add("direct", "local")
	if j := e.waitJob(e.backup("db").ID); j.State != "done" {
		t.Fatalf("postgres via ssh through the jump host: %s %s", j.State, j.Error)
	}
	if !inSnapshot(t, e, "db", "appdb.sql") {
		t.Fatal("appdb.sql not in the snapshot")
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(jump.Dir), "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "Accepted publickey for root"); n != 1 {
		t.Fatalf("%d logins on the jump host, want 1", n)
	}
}

// TestJumpHostFTP backs up from a real vsftpd through a jump host: the
// control and the passive data connections go through the bastion.
func TestJumpHostFTP(t *testing.T) {
	jump := testenv.SSHD(t)
	srv := testenv.FTP(t)
	dir := filepath.Join(srv.UserDir, "data")
	fillTree(t, dir)
	want := treeDigests(t, dir)
	var st syscall.Stat_t
	if err := syscall.Stat(srv.UserDir, &st); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			os.Chown(p, int(st.Uid), int(st.Gid))
		}
		return err
	})
	jumpKey, err := os.ReadFile(jump.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Config{})
	name := "ftphost"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{{Name: "data", Method: "ftp", Path: "/data",
		Options: map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "user": srv.User,
			"jump": "127.0.0.1:" + strconv.Itoa(jump.Port), "jump_host_key": strings.TrimSpace(string(ssh.MarshalAuthorizedKey(jump.HostKey)))},
		Secret: map[string]string{"password": srv.Password, "jump_private_key": string(jumpKey)}}}}, nil)
	if j := e.waitJob(e.backup("ftphost").ID); j.State != "done" {
		t.Fatalf("ftp backup through the jump host: %s %s", j.State, j.Error)
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(jump.Dir), "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "Accepted publickey for root"); n != 1 {
		t.Fatalf("%d logins on the jump host, want 1", n)
	}
	to := filepath.Join(e.dir, "restores", "ftp")
	var rj JobBody
	e.must("socket", "POST", "/api/v1/restores", RestoreInput{Host: "ftphost", Snapshot: "latest", Source: "data", To: to}, &rj)
	if rj = e.waitJob(rj.ID); rj.State != "done" {
		t.Fatalf("restore: %s %s", rj.State, rj.Error)
	}
	if got := treeDigests(t, to); !mapsEqual(got, want) {
		t.Fatalf("ftp backup through the jump host: %v, want %v", got, want)
	}
}
