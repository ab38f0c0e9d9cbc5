package testenv

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// FTPServer is a running vsftpd started by FTP.
type FTPServer struct {
	Addr string // "127.0.0.1:port", control connection; passive mode only
	Host string
	Port int
	// AnonDir is the anonymous user's read-only root (login "anonymous",
	// any password). Files in it must be world-readable: anonymous
	// sessions run as the ftp user.
	AnonDir string
	// User/Password log in as a local system user whose root (chroot) is
	// UserDir, which is writable.
	User     string
	Password string
	UserDir  string
	// CACertPEM is the server's self-signed certificate (CN and IP SAN
	// 127.0.0.1) for explicit FTPS (AUTH TLS). TLS is optional for both
	// anonymous and local logins.
	CACertPEM []byte
	Pid       int
}

const ftpUser = "cairnftp"

// FTP starts vsftpd (TESTING.md §5) in the foreground with a temporary
// config: anonymous read-only access to AnonDir, a local user (User,
// Password) chrooted to the writable UserDir, passive mode on a range of
// free ports, and explicit FTPS with a self-signed certificate made in Go.
//
// The local user is a real system user, cairnftp (no home, shell /bin/sh so
// that pam_shells accepts it), created with useradd on first use. Its
// password is random per machine, kept in CacheDir()/ftp-password (0600) and
// set with chpasswd on every call under a lock, so parallel test binaries
// agree on it.
//
// Gotchas handled: seccomp_sandbox=NO (otherwise LIST fails with a reset
// connection); the anonymous root is not writable by the ftp user (vsftpd
// refuses a writable chroot) while allow_writeable_chroot=YES lets the local
// user write to its root; secure_chroot_dir points into the temp dir (the
// default /var/run/vsftpd/empty is on tmpfs); the temp dirs are opened to
// 0755 because vsftpd enters them as the session's user; force_local_*_ssl
// are set to NO (their default with ssl_enable is YES); require_ssl_reuse
// stays YES, so FTPS clients need a TLS session cache (tls.Config
// ClientSessionCache) for data connections; TLS is capped at 1.2 through
// OPENSSL_CONF because vsftpd 3.0.3 truncates uploads over TLS 1.3 (426
// "Failure reading network stream").
func FTP(t testing.TB) *FTPServer {
	t.Helper()
	needRoot(t, "testenv.FTP")
	vsftpd := bin(t, "vsftpd")
	Need(t, "useradd", "chpasswd")
	pw := ensureFTPUser(t)
	cred := userCred(t, ftpUser)

	dir := tempDir(t)
	anon := filepath.Join(dir, "anon")
	userDir := filepath.Join(dir, "user")
	empty := filepath.Join(dir, "empty")
	mustMkdir(t, anon, 0o755)
	mustMkdir(t, userDir, 0o755)
	mustMkdir(t, empty, 0o755)
	if err := os.Chown(userDir, int(cred.Uid), int(cred.Gid)); err != nil {
		t.Fatalf("testenv: ftp: %v", err)
	}
	certPEM, keyPEM := ftpCert(t)
	writeFile(t, filepath.Join(dir, "cert.pem"), string(certPEM), 0o644)
	writeFile(t, filepath.Join(dir, "key.pem"), string(keyPEM), 0o600)

	port := freePort(t)
	const npasv = 10
	pasv := freePorts(t, npasv)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conf := filepath.Join(dir, "vsftpd.conf")
	writeFile(t, conf, fmt.Sprintf(`listen=YES
listen_ipv6=NO
background=NO
listen_address=127.0.0.1
listen_port=%d
anonymous_enable=YES
anon_root=%s
no_anon_password=YES
anon_upload_enable=NO
anon_mkdir_write_enable=NO
anon_other_write_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
local_root=%s
chroot_local_user=YES
allow_writeable_chroot=YES
pam_service_name=vsftpd
userlist_enable=NO
pasv_enable=YES
pasv_address=127.0.0.1
pasv_min_port=%d
pasv_max_port=%d
port_enable=NO
connect_from_port_20=NO
secure_chroot_dir=%s
seccomp_sandbox=NO
dirmessage_enable=NO
delay_failed_login=0
use_localtime=NO
xferlog_enable=YES
vsftpd_log_file=%s
log_ftp_protocol=YES
ssl_enable=YES
allow_anon_ssl=YES
force_local_logins_ssl=NO
force_local_data_ssl=NO
force_anon_logins_ssl=NO
force_anon_data_ssl=NO
rsa_cert_file=%s
rsa_private_key_file=%s
ssl_sslv2=NO
ssl_sslv3=NO
ssl_tlsv1=NO
require_ssl_reuse=YES
`, port, anon, userDir, pasv, pasv+npasv-1, empty, filepath.Join(dir, "vsftpd.log"),
		filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")), 0o600)

	// vsftpd 3.0.3 loses the end of uploads over TLS 1.3 ("426 Failure
	// reading network stream"); it has no option to cap the version, so cap
	// it through OpenSSL's config.
	sslConf := filepath.Join(dir, "openssl.cnf")
	writeFile(t, sslConf, `openssl_conf = cairn_conf
[cairn_conf]
ssl_conf = cairn_ssl
[cairn_ssl]
system_default = cairn_tls
[cairn_tls]
MinProtocol = TLSv1.2
MaxProtocol = TLSv1.2
`, 0o644)
	cmd := exec.Command(vsftpd, conf)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "OPENSSL_CONF=" + sslConf}
	d := startDaemon(t, "vsftpd", cmd, filepath.Join(dir, "vsftpd.out"))
	d.waitReady(t, "220 banner on "+addr, bannerProbe(addr, "220"))
	return &FTPServer{Addr: addr, Host: "127.0.0.1", Port: port, AnonDir: anon,
		User: ftpUser, Password: pw, UserDir: userDir, CACertPEM: certPEM, Pid: d.Pid()}
}

// ensureFTPUser creates the cairnftp system user if needed and sets its
// password (stored in the cache dir) with chpasswd, under a machine-wide
// lock.
func ensureFTPUser(t testing.TB) string {
	t.Helper()
	if err := os.MkdirAll(CacheDir(), 0o755); err != nil {
		t.Fatalf("testenv: ftp: %v", err)
	}
	lock, err := os.OpenFile(filepath.Join(CacheDir(), ".ftpuser.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("testenv: ftp: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("testenv: ftp: lock: %v", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	if _, err := user.Lookup(ftpUser); err != nil {
		run(t, "", bin(t, "useradd"), "--system", "--no-create-home", "--home-dir", "/",
			"--shell", "/bin/sh", "--comment", "cairn testenv FTP user", ftpUser)
	}
	pwFile := filepath.Join(CacheDir(), "ftp-password")
	b, err := os.ReadFile(pwFile)
	pw := strings.TrimSpace(string(b))
	if err != nil || len(pw) < 16 {
		pw = randomSecret(12)
		if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatalf("testenv: ftp: %v", err)
		}
	}
	run(t, ftpUser+":"+pw+"\n", bin(t, "chpasswd"))
	return pw
}

var (
	ftpCertOnce         sync.Once
	ftpCertPEM, ftpKeyP []byte
	ftpCertErr          error
)

// ftpCert returns a self-signed RSA certificate for 127.0.0.1, made once
// per process.
func ftpCert(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	ftpCertOnce.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			ftpCertErr = err
			return
		}
		serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
		tmpl := &x509.Certificate{
			SerialNumber:          serial,
			Subject:               pkix.Name{CommonName: "127.0.0.1", Organization: []string{"cairn testenv"}},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(7 * 24 * time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			BasicConstraintsValid: true,
			IsCA:                  true,
			IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
			DNSNames:              []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			ftpCertErr = err
			return
		}
		ftpCertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		ftpKeyP = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	})
	if ftpCertErr != nil {
		t.Fatalf("testenv: ftp certificate: %v", ftpCertErr)
	}
	return ftpCertPEM, ftpKeyP
}
