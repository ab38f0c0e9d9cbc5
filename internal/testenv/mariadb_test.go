package testenv

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestMariaDB(t *testing.T) {
	g := watchGone(t, "mariadbd")
	done := timed(t, "mariadb")
	s := MariaDB(t)
	done()
	g.pid = s.Pid
	defer g.snapshot()
	Need(t, "mariadb", "mariadb-dump")

	tcp := func(bin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"--no-defaults", "--protocol=TCP", "-h", s.Host,
			"-P", strconv.Itoa(s.Port), "-u", s.User}, args...)...)
		cmd.Env = append(os.Environ(), "MYSQL_PWD="+s.Password)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
		}
		return string(out)
	}
	tcp("mariadb", "-e", `CREATE DATABASE appdb; CREATE TABLE appdb.kv (k VARCHAR(10) PRIMARY KEY, v VARCHAR(40));
INSERT INTO appdb.kv VALUES ('x', 'value-x'), ('y', 'value-y');`)
	out := tcp("mariadb", "--batch", "--skip-column-names", "-e", `SELECT k, v FROM appdb.kv ORDER BY k; SELECT CURRENT_USER();`)
	if out != "x\tvalue-x\ny\tvalue-y\nbackup@127.0.0.1\n" {
		t.Fatalf("query output: %q", out)
	}
	dump := tcp("mariadb-dump", "--single-transaction", "--routines", "--events", "--databases", "appdb")
	if !strings.Contains(dump, "INSERT INTO `kv` VALUES") || !strings.Contains(dump, "('x','value-x')") ||
		!strings.Contains(dump, "('y','value-y')") {
		t.Fatalf("dump lacks the rows:\n%s", dump)
	}

	// root over the socket via the defaults file.
	cmd := exec.Command("mariadb", "--defaults-file="+s.DefaultsFile, "-u"+s.RootSocketUser, "--batch", "--skip-column-names",
		"-e", "SELECT COUNT(*) FROM appdb.kv; SELECT CURRENT_USER();")
	b, err := cmd.CombinedOutput()
	if err != nil || string(b) != "2\nroot@localhost\n" {
		t.Fatalf("root via socket: %v: %q", err, b)
	}
	// A wrong password is refused.
	cmd = exec.Command("mariadb", "--no-defaults", "--protocol=TCP", "-h", s.Host, "-P", strconv.Itoa(s.Port), "-u", s.User, "-e", "SELECT 1")
	cmd.Env = append(os.Environ(), "MYSQL_PWD=wrong")
	if b, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("wrong password accepted: %s", b)
	}
}
