package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
)

// debianPackage names the Debian 12 package that provides a binary, for the
// message of Need. install-deps.sh installs all of them.
var debianPackage = map[string]string{
	"sshd": "openssh-server", "ssh": "openssh-client", "sftp": "openssh-client", "ssh-keygen": "openssh-client",
	"smbd": "samba", "samba-dcerpcd": "samba", "smbpasswd": "samba", "pdbedit": "samba",
	"smbclient": "smbclient",
	"vsftpd":    "vsftpd",
	"rsync":     "rsync",
	"postgres":  "postgresql", "initdb": "postgresql", "pg_dump": "postgresql", "pg_basebackup": "postgresql",
	"psql": "postgresql-client", "pg_isready": "postgresql",
	"mariadbd": "mariadb-server", "mariadb-install-db": "mariadb-server",
	"mariadb": "mariadb-client", "mariadb-dump": "mariadb-client", "mysqldump": "mariadb-client", "mariadb-admin": "mariadb-client",
	"fusermount3": "fuse3", "fusermount": "fuse3",
	"litmus": "litmus", "cadaver": "cadaver", "rclone": "rclone", "openssl": "openssl",
	"useradd": "passwd", "chpasswd": "passwd", "setpriv": "util-linux",
	"node": "nodejs", "chromium": "chromium", "unzip": "unzip",
}

// extraBinDirs are searched after PATH: sbin dirs are not on a non-root
// PATH, PostgreSQL's server binaries live in a versioned dir, and Samba's
// helpers in libexec.
func extraBinDirs() []string {
	dirs := []string{"/usr/sbin", "/sbin", "/usr/libexec/samba"}
	pg, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(pg))) // newest major first (single digit majors sort wrongly, fine for 1x)
	return append(dirs, pg...)
}

// findBin returns the absolute path of a binary, looking in PATH and in
// extraBinDirs, or "" if it is not installed.
func findBin(name string) string {
	if filepath.IsAbs(name) {
		if isExec(name) {
			return name
		}
		return ""
	}
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	for _, d := range extraBinDirs() {
		if p := filepath.Join(d, name); isExec(p) {
			return p
		}
	}
	return ""
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Need checks that the named binaries are installed (in PATH, the sbin dirs,
// PostgreSQL's bin dir or Samba's libexec dir). When one is missing it fails
// the test under CI=true, naming the binary and its Debian package, and
// skips it otherwise. `make deps` installs everything the suite needs.
func Need(t testing.TB, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if findBin(b) != "" {
			continue
		}
		msg := missingMessage(b)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// missingMessage is Need's message for a binary that is not installed: it
// names the binary and the Debian package that provides it.
func missingMessage(b string) string {
	pkg := debianPackage[filepath.Base(b)]
	if pkg == "" {
		pkg = "unknown package"
	}
	return "testenv: binary " + b + " not found (Debian package " + pkg + "; run `make deps`)"
}

// bin is Need plus the path: it returns the absolute path of a binary.
func bin(t testing.TB, name string) string {
	t.Helper()
	Need(t, name)
	return findBin(name)
}

// NeedRoot checks that the test runs as root (CI does): it fails under
// CI=true and skips otherwise, saying why root is needed.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "testenv: needs root: " + why
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
