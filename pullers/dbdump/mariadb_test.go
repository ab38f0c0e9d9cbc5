package dbdump

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pullers"
)

// mariaRoot runs SQL as root on the server's socket.
func mariaRoot(t testing.TB, s *testenv.MariaDBServer, sql string) {
	t.Helper()
	cmd := exec.Command("mariadb", "--defaults-file="+s.DefaultsFile, "-u"+s.RootSocketUser, "--batch")
	cmd.Stdin = strings.NewReader(sql)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mariadb: %v\n%s", err, out)
	}
}

func mariaSource(s *testenv.MariaDBServer, opts ...string) pullers.Source {
	o := map[string]string{"host": s.Host, "port": strconv.Itoa(s.Port), "user": s.User}
	for i := 0; i+1 < len(opts); i += 2 {
		o[opts[i]] = opts[i+1]
	}
	return pullers.Source{Method: MethodMariaDB, Name: "dumps", Options: o,
		Secret: map[string]string{"password": s.Password}}
}

// TestMariaDB dumps the databases of a real MariaDB over TCP as the
// backup user (password through --defaults-file), restores one into a
// scratch database, compares counts and checksums, and catches a
// tampered row.
func TestMariaDB(t *testing.T) {
	testenv.Need(t, "mariadb-dump", "mariadb")
	s := testenv.MariaDB(t)
	ctx := context.Background()
	mariaRoot(t, s, "CREATE DATABASE appdb; CREATE DATABASE `other db`;"+
		"CREATE TABLE appdb.items (id INT PRIMARY KEY, name VARCHAR(100), price DECIMAL(10,2), data BLOB) ENGINE=InnoDB;"+
		"INSERT INTO appdb.items SELECT seq, CONCAT('item ', seq), seq * 1.5, UNHEX('00FF') FROM appdb.seq_1_to_3000;"+
		"CREATE TABLE appdb.`odd table` (k VARCHAR(10), v TEXT);"+
		"INSERT INTO appdb.`odd table` VALUES ('x', 'tab\there'), ('y', NULL);"+
		"CREATE PROCEDURE appdb.p() SELECT 1;"+
		"CREATE TABLE `other db`.t (a INT); INSERT INTO `other db`.t VALUES (1),(2);")
	p := newPool(t)
	pl := NewMariaDB()
	m, err := pull(t, p, pl, mariaSource(s))
	must(t, err)
	if got := names(t, p, m); !reflect.DeepEqual(got, []string{"appdb.sql", "other db.sql"}) {
		t.Fatalf("snapshot files %q", got)
	}
	dump := readFile(t, p, m, "appdb.sql")
	for _, want := range []string{"CREATE TABLE `items`", "PROCEDURE `p`", "0x00FF"} {
		if !bytes.Contains(dump, []byte(want)) {
			t.Errorf("dump lacks %q", want)
		}
	}
	if bytes.Contains(dump, []byte("USE `appdb`")) || bytes.Contains(dump, []byte("CREATE DATABASE")) {
		t.Error("dump names its database; it could not be restored elsewhere")
	}

	// The restore target account needs the right to recreate routines
	// with their DEFINER (root@localhost): root on the socket.
	rootSrc := pullers.Source{Method: MethodMariaDB, Options: map[string]string{"socket": s.Socket, "user": s.RootSocketUser}}
	must(t, pl.Restore(ctx, "", rootSrc, bytes.NewReader(dump), "appdb.sql", "appdb_restored"))
	orig, err := pl.TableSums(ctx, "", mariaSource(s), "appdb")
	must(t, err)
	back, err := pl.TableSums(ctx, "", mariaSource(s), "appdb_restored")
	must(t, err)
	if len(orig) != 2 || orig["items"].Rows != 3000 || orig["odd table"].Rows != 2 {
		t.Fatalf("original sums %v", orig)
	}
	if !maps.Equal(orig, back) {
		t.Fatalf("restored copy differs:\n%v\n%v", orig, back)
	}
	mariaRoot(t, s, "UPDATE appdb_restored.items SET price = price + 0.01 WHERE id = 1234")
	back, err = pl.TableSums(ctx, "", mariaSource(s), "appdb_restored")
	must(t, err)
	if maps.Equal(orig, back) {
		t.Fatal("a tampered row was not caught")
	}
	if err := pl.Restore(ctx, "", rootSrc, bytes.NewReader(dump), "appdb.sql", "appdb_restored"); err == nil ||
		!strings.Contains(err.Error(), "exists") {
		t.Errorf("restore into an existing database: %v", err)
	}

	t.Run("verify", func(t *testing.T) {
		m, err := pull(t, p, pl, mariaSource(s, "databases", "appdb", "record_sums", "true"))
		must(t, err)
		dump, sums := readFile(t, p, m, "appdb.sql"), readFile(t, p, m, "appdb.sums.json")
		res, err := pl.Verify(ctx, "", rootSrc, bytes.NewReader(dump), "appdb.sql", sums, "scratch_ok")
		must(t, err)
		if !res.OK() || res.Tables != 2 {
			t.Fatalf("verify of a good dump: %+v", res)
		}
		bad := bytes.Replace(dump, []byte("'item 1234'"), []byte("'item 9999'"), 1)
		if bytes.Equal(bad, dump) {
			t.Fatal("test dump has no row 'item 1234'")
		}
		res, err = pl.Verify(ctx, "", rootSrc, bytes.NewReader(bad), "appdb.sql", sums, "scratch_bad")
		must(t, err)
		if res.OK() || len(res.Mismatches) != 1 || !strings.HasPrefix(res.Mismatches[0], "items: checksum") {
			t.Fatalf("verify of a tampered dump: %+v", res)
		}
	})

	t.Run("failure", func(t *testing.T) {
		_, err := pull(t, p, pl, mariaSource(s, "databases", "appdb,nosuchdb"))
		if err == nil || !strings.Contains(err.Error(), "nosuchdb") || !strings.Contains(err.Error(), "exit status") {
			t.Fatalf("dump of a missing database: %v", err)
		}
		if strings.Contains(err.Error(), s.Password) {
			t.Errorf("password leaked: %v", err)
		}
	})
	t.Run("bad password", func(t *testing.T) {
		src := mariaSource(s)
		src.Secret["password"] = "wrong-" + s.Password
		_, err := pull(t, p, pl, src)
		if err == nil || !strings.Contains(err.Error(), "Access denied") || strings.Contains(err.Error(), src.Secret["password"]) {
			t.Fatalf("bad password: %v", err)
		}
	})
}

// TestMariaDBDedup measures the new bytes of a second dump after 1% of
// the rows changed, clustered (the newest rows) and scattered.
func TestMariaDBDedup(t *testing.T) {
	testenv.Need(t, "mariadb-dump", "mariadb")
	s := testenv.MariaDB(t)
	const rows = 150_000
	for _, mode := range []string{"clustered", "scattered"} {
		t.Run(mode, func(t *testing.T) {
			db := "bench_" + mode
			mariaRoot(t, s, fmt.Sprintf("CREATE DATABASE %[1]s; CREATE TABLE %[1]s.t (id INT PRIMARY KEY, a VARCHAR(200), b INT, c DATETIME);"+
				"INSERT INTO %[1]s.t SELECT seq, CONCAT(MD5(seq), ' ', REPEAT('x', seq %% 40)), seq * 7, '2024-01-01' + INTERVAL seq MINUTE FROM %[1]s.seq_1_to_%[2]d;", db, rows))
			p := newPool(t)
			src := mariaSource(s, "databases", db)
			m1, err := pull(t, p, NewMariaDB(), src)
			must(t, err)
			where := fmt.Sprintf("id > %d", rows-rows/100)
			if mode == "scattered" {
				where = "id % 100 = 0"
			}
			mariaRoot(t, s, fmt.Sprintf("UPDATE %s.t SET b = b + 1 WHERE %s", db, where))
			m2, err := pull(t, p, NewMariaDB(), src)
			must(t, err)
			frac := float64(m2.BytesNew) / float64(m2.Bytes)
			t.Logf("mariadb %s: dump %d bytes; first snapshot stored %d new bytes, second (1%% of rows changed) %d = %.1f%% of the dump",
				mode, m2.Bytes, m1.BytesNew, m2.BytesNew, 100*frac)
			if mode == "clustered" && frac > 0.25 {
				t.Errorf("clustered 1%% change stored %.1f%% anew", 100*frac)
			}
		})
	}
}
