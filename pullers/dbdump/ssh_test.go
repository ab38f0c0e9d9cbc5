package dbdump

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pullers"
)

// viaSSH turns a mode-(a) source into mode (b) through s.
func viaSSH(t testing.TB, src pullers.Source, s *testenv.SSHServer) pullers.Source {
	key, err := os.ReadFile(s.KeyFile)
	must(t, err)
	o := maps.Clone(src.Options)
	o["via"], o["ssh_host"], o["ssh_port"], o["ssh_user"] = "ssh", s.Host, strconv.Itoa(s.Port), s.User
	o["ssh_host_key"] = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey)))
	sec := maps.Clone(src.Secret)
	if sec == nil {
		sec = map[string]string{}
	}
	sec["ssh_private_key"] = string(key)
	return pullers.Source{Method: src.Method, Name: src.Name, Options: o, Secret: sec}
}

// TestPostgresViaSSH: mode (b), pg_dump runs on the host through the real
// sshd (the host's own /usr/bin/pg_dump), the dump streams back, and it
// restores (also through SSH) to an identical copy.
func TestPostgresViaSSH(t *testing.T) {
	testenv.Need(t, "pg_dump", "psql")
	sshd := testenv.SSHD(t)
	s := testenv.Postgres(t)
	ctx := context.Background()
	app := s.CreateDB(t, "appdb")
	pgExec(t, app, `CREATE TABLE items (id int PRIMARY KEY, name text)`,
		`INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 500) i`)
	p := newPool(t)
	pl := NewPostgres()
	src := viaSSH(t, pgSource(s, "databases", "appdb"), sshd)
	m, err := pull(t, p, pl, src)
	must(t, err)
	if got := names(t, p, m); !reflect.DeepEqual(got, []string{"appdb.sql", "pg_globals.sql"}) {
		t.Fatalf("files %q", got)
	}
	must(t, pl.Restore(ctx, "", src, bytes.NewReader(readFile(t, p, m, "appdb.sql")), "appdb.sql", "copy"))
	orig, err := pl.TableSums(ctx, "", src, "appdb")
	must(t, err)
	back, err := pl.TableSums(ctx, "", pgSource(s), "copy")
	must(t, err)
	if orig["public.items"].Rows != 500 || !maps.Equal(orig, back) {
		t.Fatalf("sums %v vs %v", orig, back)
	}
	// A failing remote dump fails the pull with its stderr.
	bad := viaSSH(t, pgSource(s, "databases", "nosuchdb", "globals", "false"), sshd)
	if _, err := pull(t, p, pl, bad); err == nil || !strings.Contains(err.Error(), `database "nosuchdb" does not exist`) {
		t.Errorf("remote failure: %v", err)
	}
	// A changed host key is refused.
	wrong := viaSSH(t, pgSource(s, "databases", "appdb"), sshd)
	other := testenv.SSHD(t)
	wrong.Options["ssh_host_key"] = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other.HostKey)))
	if _, err := pull(t, p, pl, wrong); !errors.Is(err, ErrHostKeyChanged) {
		t.Errorf("changed host key: %v", err)
	}
	// Trust on first use.
	tofu := viaSSH(t, pgSource(s, "databases", "appdb", "globals", "false"), sshd)
	delete(tofu.Options, "ssh_host_key")
	pl2 := NewPostgres()
	if _, err := pull(t, p, pl2, tofu); err != nil || pl2.SeenHostKey() != strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshd.HostKey))) {
		t.Errorf("tofu: %v, seen %q", err, pl2.SeenHostKey())
	}
}

// TestMariaDBViaSSH: mode (b) for MariaDB through the real sshd.
func TestMariaDBViaSSH(t *testing.T) {
	testenv.Need(t, "mariadb-dump", "mariadb")
	sshd := testenv.SSHD(t)
	s := testenv.MariaDB(t)
	ctx := context.Background()
	mariaRoot(t, s, "CREATE DATABASE appdb; CREATE TABLE appdb.t (id INT PRIMARY KEY, v VARCHAR(20));"+
		"INSERT INTO appdb.t SELECT seq, CONCAT('v', seq) FROM appdb.seq_1_to_700;")
	p := newPool(t)
	pl := NewMariaDB()
	src := viaSSH(t, mariaSource(s), sshd)
	m, err := pull(t, p, pl, src)
	must(t, err)
	if got := names(t, p, m); !reflect.DeepEqual(got, []string{"appdb.sql"}) {
		t.Fatalf("files %q", got)
	}
	must(t, pl.Restore(ctx, "", src, bytes.NewReader(readFile(t, p, m, "appdb.sql")), "appdb.sql", "copy"))
	orig, err := pl.TableSums(ctx, "", mariaSource(s), "appdb")
	must(t, err)
	back, err := pl.TableSums(ctx, "", src, "copy")
	must(t, err)
	if orig["t"].Rows != 700 || !maps.Equal(orig, back) {
		t.Fatalf("sums %v vs %v", orig, back)
	}
}

// TestSecretsViaSSH: in mode (b) the password is not on the remote
// command line either: a fake tool on the host prints its parent shell's
// command line, its args and environment.
func TestSecretsViaSSH(t *testing.T) {
	sshd := testenv.SSHD(t)
	bin := t.TempDir()
	must(t, os.Chmod(bin, 0o755))
	fakeTool(t, bin, "pg_dump")
	script, err := os.ReadFile(filepath.Join(bin, "pg_dump"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(bin, "pg_dump"),
		append(script, []byte("tr '\\0' ' ' < /proc/$PPID/cmdline | sed 's/^/PARENT: /'; echo\n")...), 0o755))
	const pw = "Remote-Secret-77"
	src := viaSSH(t, pullers.Source{Options: map[string]string{"host": "127.0.0.1", "user": "backup",
		"databases": "appdb", "globals": "false", "bin_dir": bin},
		Secret: map[string]string{"password": pw}}, sshd)
	p := newPool(t)
	m, err := pull(t, p, NewPostgres(), src)
	must(t, err)
	out := string(readFile(t, p, m, "appdb.sql"))
	if !strings.Contains(out, "MODE: 600") || !strings.Contains(out, "CRED: 127.0.0.1:5432:*:backup:"+pw) ||
		!strings.Contains(out, "PARENT: ") {
		t.Fatalf("tool saw:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "CRED: ") && strings.Contains(line, pw) {
			t.Errorf("password visible: %q", line)
		}
	}
}
