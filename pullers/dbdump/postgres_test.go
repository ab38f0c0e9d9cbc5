package dbdump

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pullers"
)

func pgExec(t testing.TB, dsn string, sql ...string) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	must(t, err)
	defer c.Close(ctx)
	for _, s := range sql {
		if _, err := c.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func pgSource(s *testenv.PGServer, opts ...string) pullers.Source {
	o := map[string]string{"host": s.Host, "port": strconv.Itoa(s.Port), "user": s.User}
	for i := 0; i+1 < len(opts); i += 2 {
		o[opts[i]] = opts[i+1]
	}
	return pullers.Source{Method: MethodPostgres, Name: "dumps", Options: o,
		Secret: map[string]string{"password": "not-used-trust-auth"}}
}

// TestPostgres dumps every database of a real server (discovery), plain
// and custom format, restores a dump into a scratch database, compares
// row counts and checksums, and checks that a tampered copy is caught.
func TestPostgres(t *testing.T) {
	testenv.Need(t, "pg_dump", "psql")
	s := testenv.Postgres(t)
	ctx := context.Background()
	app := s.CreateDB(t, "appdb")
	s.CreateDB(t, "other db")
	pgExec(t, app,
		`CREATE TABLE items (id int PRIMARY KEY, name text, price numeric, tags text[])`,
		`INSERT INTO items SELECT i, 'item ' || i, i * 1.5, ARRAY['a', 'b'] FROM generate_series(1, 2000) i`,
		`CREATE SCHEMA "odd schema"`,
		`CREATE TABLE "odd schema"."Odd Table" (k text, v bytea)`,
		`INSERT INTO "odd schema"."Odd Table" VALUES ('x', '\x00ff'), ('tab	here', NULL)`,
		`CREATE ROLE reader LOGIN`)
	p := newPool(t)
	pl := NewPostgres()

	for _, format := range []string{"plain", "custom"} {
		t.Run(format, func(t *testing.T) {
			m, err := pull(t, p, pl, pgSource(s, "format", format))
			must(t, err)
			ext := map[string]string{"plain": ".sql", "custom": ".dump"}[format]
			want := []string{"appdb" + ext, "other db" + ext, "pg_globals.sql", "postgres" + ext}
			if format == "custom" {
				want = append(want, "restored_plain"+ext) // restored by the plain run
			}
			if got := names(t, p, m); !reflect.DeepEqual(got, want) {
				t.Fatalf("snapshot files %q, want %q", got, want)
			}
			if g := readFile(t, p, m, "pg_globals.sql"); !bytes.Contains(g, []byte("CREATE ROLE reader")) {
				t.Errorf("globals dump lacks the role:\n%s", g)
			}
			dump := readFile(t, p, m, "appdb"+ext)
			target := "restored_" + format
			must(t, pl.Restore(ctx, "127.0.0.1", pgSource(s), bytes.NewReader(dump), "appdb"+ext, target))
			orig, err := pl.TableSums(ctx, "", pgSource(s), "appdb")
			must(t, err)
			back, err := pl.TableSums(ctx, "", pgSource(s), target)
			must(t, err)
			if len(orig) != 2 || orig["public.items"].Rows != 2000 || orig[`"odd schema"."Odd Table"`].Rows != 2 {
				t.Fatalf("original sums %v", orig)
			}
			if !maps.Equal(orig, back) {
				t.Fatalf("restored copy differs:\n%v\n%v", orig, back)
			}
			// The restore check catches one changed row.
			pgExec(t, strings.Replace(app, "/appdb?", "/"+target+"?", 1), `UPDATE items SET price = price + 0.01 WHERE id = 1234`)
			back, err = pl.TableSums(ctx, "", pgSource(s), target)
			must(t, err)
			if maps.Equal(orig, back) || back["public.items"].Rows != 2000 {
				t.Fatalf("a tampered row was not caught: %v", back)
			}
			// The target must be new.
			if err := pl.Restore(ctx, "", pgSource(s), bytes.NewReader(dump), "appdb"+ext, target); err == nil ||
				!strings.Contains(err.Error(), "already exists") {
				t.Errorf("restore into an existing database: %v", err)
			}
		})
	}

	t.Run("verify", func(t *testing.T) {
		m, err := pull(t, p, pl, pgSource(s, "databases", "appdb", "record_sums", "true"))
		must(t, err)
		if got := names(t, p, m); !reflect.DeepEqual(got, []string{"appdb.sql", "appdb.sums.json", "pg_globals.sql"}) {
			t.Fatalf("files %q", got)
		}
		dump, sums := readFile(t, p, m, "appdb.sql"), readFile(t, p, m, "appdb.sums.json")
		if !bytes.Contains(sums, []byte(`"consistent": true`)) || !bytes.Contains(sums, []byte(`"rows": 2000`)) {
			t.Errorf("sums file:\n%s", sums)
		}
		res, err := pl.Verify(ctx, "", pgSource(s), bytes.NewReader(dump), "appdb.sql", sums, "scratch_ok")
		must(t, err)
		if !res.OK() || res.Tables != 2 {
			t.Fatalf("verify of a good dump: %+v", res)
		}
		// One changed row in the dump is caught.
		bad := bytes.Replace(dump, []byte("item 1234\t"), []byte("item 9999\t"), 1)
		if bytes.Equal(bad, dump) {
			t.Fatal("test dump has no row 'item 1234'")
		}
		res, err = pl.Verify(ctx, "", pgSource(s), bytes.NewReader(bad), "appdb.sql", sums, "scratch_bad")
		must(t, err)
		if res.OK() || len(res.Mismatches) != 1 || !strings.HasPrefix(res.Mismatches[0], "public.items: checksum") {
			t.Fatalf("verify of a tampered dump: %+v", res)
		}
		// The scratch databases are gone.
		s.CreateDB(t, "scratch_ok")
		s.CreateDB(t, "scratch_bad")
	})

	t.Run("selected", func(t *testing.T) {
		m, err := pull(t, p, pl, pgSource(s, "databases", "appdb, other db", "exclude_databases", "other db", "globals", "false"))
		must(t, err)
		if got := names(t, p, m); !reflect.DeepEqual(got, []string{"appdb.sql"}) {
			t.Errorf("files %q", got)
		}
	})

	t.Run("failure", func(t *testing.T) {
		src := pgSource(s, "databases", "appdb,nosuchdb")
		src.Secret["password"] = "Sup3rSecretPw"
		_, err := pull(t, p, pl, src)
		if err == nil || !strings.Contains(err.Error(), `database "nosuchdb" does not exist`) || !strings.Contains(err.Error(), "pg_dump") {
			t.Fatalf("dump of a missing database: %v", err)
		}
		if strings.Contains(err.Error(), "Sup3rSecretPw") {
			t.Errorf("the password leaked into %v", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		src := pgSource(s, "port", "1", "databases", "appdb")
		if _, err := pull(t, p, pl, src); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "Connection refused") {
			t.Fatalf("unreachable server: %v", err)
		}
	})
}

// TestPostgresDedup measures how much of a second dump, after 1% of the
// rows changed, the pool stores anew — scattered and clustered changes.
func TestPostgresDedup(t *testing.T) {
	testenv.Need(t, "pg_dump", "psql")
	s := testenv.Postgres(t)
	const rows = 200_000
	for _, mode := range []string{"clustered", "scattered"} {
		t.Run(mode, func(t *testing.T) {
			dsn := s.CreateDB(t, "bench_"+mode)
			pgExec(t, dsn,
				`CREATE TABLE t (id int PRIMARY KEY, a text, b int, c timestamptz)`,
				fmt.Sprintf(`INSERT INTO t SELECT i, md5(i::text) || ' ' || repeat('x', i %% 40), i * 7, '2024-01-01'::timestamptz + i * interval '1 minute' FROM generate_series(1, %d) i`, rows))
			p := newPool(t)
			src := pgSource(s, "databases", "bench_"+mode, "globals", "false")
			// Throughput, for the report (not asserted): pg_dump to
			// /dev/null alone, then the pull into the pool.
			t0 := time.Now()
			cmd := exec.Command(filepath.Join(pgBinDir(), "pg_dump"), "-h", s.Host, "-p", strconv.Itoa(s.Port), "-U", s.User, "-d", "bench_"+mode, "-f", "/dev/null")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("pg_dump: %v\n%s", err, out)
			}
			alone := time.Since(t0)
			t0 = time.Now()
			m1, err := pull(t, p, NewPostgres(), src)
			must(t, err)
			t.Logf("postgres %s: pg_dump > /dev/null %v, dump into the pool %v (%.2fx)", mode, alone, time.Since(t0), alone.Seconds()/time.Since(t0).Seconds())
			var ids []string
			r := rand.New(rand.NewPCG(7, 8))
			for i := 0; i < rows/100; i++ {
				id := rows - rows/100 + i + 1 // the newest 1%
				if mode == "scattered" {
					id = r.IntN(rows) + 1
				}
				ids = append(ids, strconv.Itoa(id))
			}
			slices.Sort(ids)
			pgExec(t, dsn, `UPDATE t SET b = b + 1 WHERE id IN (`+strings.Join(ids, ",")+`)`)
			m2, err := pull(t, p, NewPostgres(), src)
			must(t, err)
			frac := float64(m2.BytesNew) / float64(m2.Bytes)
			t.Logf("postgres %s: dump %d bytes; first snapshot stored %d new bytes, second (1%% of rows changed) %d = %.1f%% of the dump",
				mode, m2.Bytes, m1.BytesNew, m2.BytesNew, 100*frac)
			if mode == "clustered" && frac > 0.25 {
				t.Errorf("clustered 1%% change stored %.1f%% anew", 100*frac)
			}
		})
	}
}
