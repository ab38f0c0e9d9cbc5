// Package testenv starts real servers for tests (sshd, Samba, vsftpd, the
// rsync daemon, PostgreSQL, MariaDB, an S3 server) on 127.0.0.1 high ports
// with temporary configs, and stops them in t.Cleanup. The recipes are the
// verified ones of shared/TESTING.md.
//
//	testenv.SSHD(t)     *SSHServer     sftp (internal-sftp), exec, key + password auth, root
//	testenv.Samba(t)    *SambaServer   smbd + samba-dcerpcd, user root, share "share"
//	testenv.FTP(t)      *FTPServer     vsftpd: anonymous read-only, local user, explicit FTPS
//	testenv.Rsyncd(t)   *RsyncServer   rsync --daemon: module "mod" (open), "secure" (auth)
//	testenv.Postgres(t) *PGServer      throwaway cluster; (*PGServer).CreateDB(t, name) DSN
//	testenv.MariaDB(t)  *MariaDBServer throwaway server; TCP user backup, root on the socket
//	testenv.S3(t)       *S3Server      VersityGW (posix backend), bucket created
//	testenv.Need(t, bins...)           missing binary: t.Fatal under CI=true, else t.Skip
//	testenv.KillLeftovers()            call from TestMain (see below)
//
// Every helper takes a testing.TB, returns the address, credentials and the
// served directory, and:
//   - runs the daemon in the foreground as a direct child in its own process
//     group (Setpgid), listening on 127.0.0.1 on a free port in 20000-31999
//     (below the kernel's ephemeral range);
//   - waits for readiness by polling (a TCP connect, a protocol banner or a
//     login) with a deadline, failing with the daemon's log tail;
//   - stops it in t.Cleanup: a signal (SIGTERM to the group; fast shutdown to
//     the PostgreSQL postmaster), SIGKILL to the group after a timeout, and a
//     wait until no member of the group is left;
//   - records a pidfile in os.TempDir()/cairn-testenv-pids, removed on a
//     clean stop.
//
// The daemons need root (they log users in as root or switch users). Under
// CI=true a missing binary or missing root fails the test; otherwise the
// test is skipped. `make deps` (install-deps.sh in this directory) installs
// the Debian packages and builds the S3 server into CacheDir().
//
// # TestMain
//
// If a test binary dies without running its cleanups (go test -timeout
// panics, SIGKILL), its daemons are orphaned. Every package that uses
// testenv should kill them at start-up:
//
//	func TestMain(m *testing.M) {
//		testenv.KillLeftovers()
//		os.Exit(m.Run())
//	}
//
// KillLeftovers only kills daemons whose owning test process is gone, so
// test binaries of other packages running in parallel are safe.
//
// # Machine-wide state
//
// A few things outside temp dirs are created once and reused: templates
// of the PostgreSQL and MariaDB data dirs and the S3 server binary in
// CacheDir(); the system user cairnftp (vsftpd's local user); and, for
// sshd password auth, the PAM service /etc/pam.d/cairn-testenv-sshd with
// its check script /etc/cairn-testenv/sshd-pwcheck and /run/cairn-testenv-sshpw.
//
// # Imports
//
// testenv imports no other package of the module.
package testenv
