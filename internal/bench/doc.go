// Command bench is `make bench`: it generates the deterministic corpus
// (package corpus) in a work directory outside the repository, runs Cairn,
// restic, borg and rsync over the same scenarios, and writes BENCHMARKS.md.
//
// # Scenarios
//
// For every run and every tool, starting from the pristine corpus and an
// empty repository: first snapshot, no-change snapshot, mutated snapshot
// (after corpus.Mutate in place) and a full restore of that latest snapshot,
// which is then compared byte for byte with the source. The corpus is
// reverted afterwards so the next run starts from the same state. rsync
// copies (first and no-change) are the transfer floor.
//
// Each timed command is one child process; wall time comes from the clock,
// CPU time (user+sys) and peak RSS from its rusage. Stored bytes are the
// repository's apparent and allocated sizes. The source is read once before
// timing so it is in the page cache, and dirty pages are synced before every
// timed command.
//
// # Peer scenarios (issues 5–8, 14)
//
// After the local-directory scenarios, the bench starts servers from
// internal/testenv (sshd, rsync daemon, Samba, vsftpd, PostgreSQL), bind-
// mounts the corpus as their served directory, and measures Cairn against
// each scenario's natural peer: rsync -a (daemon and SSH), sftp -r,
// smbclient mget, lftp mirror, pg_dump > /dev/null and mariadb-dump >
// /dev/null (plus the dedup of a second dump after 1% of the rows changed,
// the newest or every 100th, on the same generated table in both), restic
// mount and borg mount when borg has its llfuse/pyfuse3 module (ls -R
// cold and warm, cat of the large files, tar of the whole tree, and
// benchdrv randread: every 64 KiB block of the first 40 MiB of the
// largest file once in a shuffled order, checked against the source's
// digest; the quick corpus's largest file is 24 MiB) and a plain
// x/net/webdav server (PROPFIND walk + GET of every file). Each pull
// transport also pulls the mutated tree (corpus.Mutate, the local
// scenarios' seed) onto its previous snapshot, against the peer's run
// into its previous copy when the peer is incremental (rsync -a, lftp
// mirror; SFTP against rsync over SSH); the corpus is reverted after.
// Every pull but FTP's (whose data connections go to ports the server
// announces) reaches its server through a byte-counting TCP proxy in the
// runner (proxy.go), so bytes received are measured the same way for
// Cairn and the peer (issue 6: mutated ≤ 1.5× rsync's). Cairn's side is
// internal/bench/benchdrv, which drives the same pullers, pool.Writer,
// fusefs and WebDAV handler as the appliance (the cairn CLI pulls only
// local directories without a running appliance). pairSpec lists every
// comparison with its issue's target; report_peers.go renders them in one
// table with a verdict and what limits each miss.
//
// The scale part snapshots a 50k- and a -scale-files (1M) small-file tree
// (first and no-change, local and rsync daemon), then runs ls -R through
// FUSE on the big snapshot. It is on by default, off in quick mode unless
// -scale or BENCH_SCALE=1.
//
// The report opens with one table of every target of the earlier issues
// (report_targets.go: pool, pullers, FUSE, WebDAV, dump throughput and
// dedup, rsync delta bytes, images, scale, scale-out, load), each not met
// with what limits it. The load test's figures (issue 15: p50/p99 latency
// of PROPFIND and GET under 50 clients, backup throughput loss) are not
// measured here: internal/torture TestLoad writes them to bench/load.json
// (-load), and the bench copies them into its results.
//
// # Results
//
// All figures go to bench/results.json (-results) as well as the work
// dir. make bench-compare OLD=a.json NEW=b.json (-compare-old/-compare-new)
// prints every median of both files with its change (and warns when the
// two runs used different corpora). A scale part measured in a separate
// -only scale run is merged into a saved run with -render FILE
// -merge-scale SCALE.json (this rewrites -results and -out). Likewise
// peer parts re-measured in a separate run (-only dump,fuse -runs 0
// -flat=false, which skips the local scenarios; give -pull-runs then) are
// merged with -render FILE -merge ONLY.json: that run's pairs, results,
// dump rows, verification notes and load figures replace or join the
// saved ones, and the report names the run they came from. A results file
// saved before a field existed (bytes received, mutated pulls, load
// figures) still loads; -render takes the load figures from -load when
// the file has none.
//
// # Flags
//
// BENCH_QUICK=1 (or -quick) uses a ≈200 MiB corpus and one run of each
// peer scenario (-pull-runs). -peers=false skips the peer scenarios, -only
// selects some of them (pulls, dump, fuse, webdav, scale), -transports
// some of the pulls' transports ("rsync daemon,rsync ssh", sftp, smb,
// ftp; sftp's no-change peer is rsync ssh's), -shared flags
// the report as made on a shared machine. -tools selects tools,
// -runs the number of runs, -work the work directory (default
// /var/tmp/cairn-bench; corpora there are reused while their stamp files
// match). -gen-only only generates the corpora. Every run saves its figures
// to WORK/results-{full,quick}.json (an -only run to
// WORK/results-full-only-pulls.json and the like, so it does not overwrite
// the whole run's); -render FILE writes the report again
// from such a file without running anything. results/ (full-<cairn commit>.json) keeps the saved
// figures of the runs whose BENCHMARKS.md was committed, for comparing
// versions later.
//
// # Measuring
//
// Peak RSS and CPU come from GNU time (/usr/bin/time), not from Go's own
// wait: Go starts children with vfork, and Linux carries the parent's peak
// RSS into the child's ru_maxrss at exec, which would add the runner's own
// memory to every figure.
package main
