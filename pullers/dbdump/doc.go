// Package dbdump is the puller for logical database dumps: PostgreSQL
// (method "postgres", pg_dump) and MariaDB/MySQL (method "mariadb",
// mariadb-dump or mysqldump). Both register themselves with
// pullers.Register in init. Two modes per source:
//
//	(a) Options["via"]="" or "local": the dump tool runs on the appliance
//	    against the database's TCP port (or a local socket);
//	(b) Options["via"]="ssh": it runs on the host over SSH (the host's own
//	    tools, so no version skew) and the dump streams back on the SSH
//	    channel. Options["ssh_host"] (default: the job's host),
//	    ["ssh_port"] (22), ["ssh_user"] (root), ["ssh_host_key"] (pinned,
//	    authorized_keys format; empty: trust on first use, reported by
//	    Puller.SeenHostKey; a different key fails with ErrHostKeyChanged,
//	    permanent), Secret["ssh_private_key"], ["ssh_passphrase"],
//	    ["ssh_password"]. The database host defaults to "localhost" as
//	    seen from the host, and Options["bin_dir"] names the tools' dir
//	    on the host (default: its PATH). The database password is sent on
//	    the session's stdin into a 0600 file in a private mktemp dir on
//	    the host, removed by a shell trap; it is never on a command line.
//
// # Snapshot layout
//
// One file per database, in the snapshot root:
//
//	<db>.sql            plain SQL (default)
//	<db>.dump           PostgreSQL custom format (Options["format"]="custom",
//	                    uncompressed: -Z0)
//	pg_globals.sql      PostgreSQL roles and tablespaces (pg_dumpall
//	                    --globals-only), unless Options["globals"]="false"
//
// "/" and "%" in a database name are escaped as %2F and %25. Files are
// mode 0600, mtime = the start of the pull. Uncompressed formats are the
// point: the pool's content-defined chunking stores only the changed
// regions of day-to-day dumps (measured in the tests: 1% of rows changed
// in the newest rows stores 0.3% (MariaDB) to 4.5% (PostgreSQL) of the
// dump size anew; 1% scattered over the whole table touches nearly every
// 1 MiB chunk and stores ~28%, about a full compressed copy).
//
// # Source
//
//	Options["host"], ["port"]   TCP address (default: the job's host; 5432 / 3306)
//	Options["socket"]           unix socket (PostgreSQL: its directory) instead of TCP
//	Options["user"]             login (PostgreSQL default "postgres")
//	Secret["password"]          password
//	Options["databases"]        comma-separated list; empty: discover all
//	                            (PostgreSQL: datallowconn, not templates;
//	                            MariaDB: SHOW DATABASES minus
//	                            information_schema, performance_schema, sys, mysql)
//	Options["exclude_databases"] comma-separated names left out
//	Options["format"]           PostgreSQL: plain (default) or custom
//	Options["globals"]          PostgreSQL: "false" skips pg_globals.sql
//	Options["bin_dir"]          where the tools are (default: the newest
//	                            /usr/lib/postgresql/*/bin, else PATH;
//	                            mariadb-dump/mariadb else mysqldump/mysql)
//	Options["spool_dir"]        where the short-lived 0600 credential files go
//	                            (default os.TempDir(); the appliance passes
//	                            its data dir). Dumps are never spooled.
//	Options["connect_timeout"]  PostgreSQL connect timeout, default 30s
//
// MariaDB dumps run with --single-transaction --routines --events
// --triggers --hex-blob --skip-dump-date and without --databases, so a
// dump has no CREATE DATABASE/USE and loads into any database.
//
// # Secrets
//
// The password is never on a command line or in an environment: it is
// written to a 0600 file in a private 0700 directory made for the run
// (PostgreSQL: a pgpass file named by PGPASSFILE; MariaDB: the only
// option file, --defaults-file) and removed when the pull ends. The tools
// get a minimal environment (no inherited PG*/MYSQL_* variables). Error
// messages have the password masked.
//
// # Failure
//
// A tool that exits non-zero (or a lost connection, which makes it do so)
// fails the pull with the tool's name, exit status and the tail of its
// stderr (4 KiB). Nothing of a failed dump reaches the sink, so the
// appliance aborts the snapshot and the previous good one stays the
// latest. The tools run in their own process group, killed on cancel.
// pg_dump refuses a server newer than itself ("server version mismatch");
// in mode (a) the error then says to use mode (b).
//
// # Streaming
//
// A dump's stdout is piped straight into the sink's AddStream
// (pullers.StreamSink; *pool.Writer implements it): the pool chunks,
// hashes and stores it as it arrives, so no temporary file holds a dump
// and memory stays within the writer's bounds however big the database
// is. A tool that fails ends the stream with its error, so the half-read
// dump is rejected and nothing of it is stored. (pg_dump -Fc to a pipe
// writes no data offsets into its table of contents; pg_restore reads
// such a dump sequentially, which is all a full restore needs.)
//
// The stages overlap: the tool writes into a pipe with a 1 MiB kernel
// buffer (its stdout itself, no copying goroutine); a goroutine reads it
// ahead into at most 4 blocks of 1 MiB (pipe.go) while the pool writer
// chunks and hashes the blocks before them, and the writer's workers
// compress and store chunks meanwhile. The tools run under coreutils
// stdbuf with a 1 MiB stdout buffer where it works (mode (a): found on
// PATH and tried once per process; mode (b): the host's, tried in the
// session's shell): stdio writes a pipe 4 KiB at a time otherwise, and
// every write wakes the reader. On mariadb-dump that took a dump's CPU
// time (tool and appliance) down by about a quarter.
//
// # Restore
//
// Puller.Restore loads a stored dump into a NEW database (CREATE DATABASE
// fails if it exists): psql -v ON_ERROR_STOP=1 for .sql, pg_restore
// --no-owner --exit-on-error for .dump, mariadb for MariaDB.
// Puller.TableSums returns each base table's row count and checksum
// (PostgreSQL: md5 of the rows' text in order; MariaDB: CHECKSUM TABLE
// EXTENDED), so a restored copy can be compared with the original.
//
// # Restore test
//
// With Options["record_sums"]="true" each dump gets "<db>.sums.json"
// (type Sums) next to it: PostgreSQL in mode (a) computes the sums inside
// the dump's own snapshot (a REPEATABLE READ transaction over pgx whose
// pg_export_snapshot() pg_dump imports with --snapshot), so they match the
// dump exactly ("consistent": true); otherwise they are taken right after
// the dump and are exact only for tables not written meanwhile.
// Puller.Verify loads a dump into a scratch database, computes the sums,
// drops the scratch database and reports every table whose row count or
// checksum differs from the recorded ones (tested: one changed row in a
// dump is caught).
package dbdump
