// Package torture holds Cairn's tests that try to break it: SIGKILL of
// `cairn serve` in a loop (during backups, GC and retention), a pool on a
// full filesystem, bit rot, storage faults behind a real S3 wire protocol,
// and many concurrent WebDAV and HTTP clients during a backup.
//
// The tests drive the real binary, built once by TestMain, like the tests
// of cmd/cairn do. They have two lengths:
//
//   - `go test ./internal/torture` (part of `make test`) runs the fast
//     versions: 5 crash iterations, 20 concurrent clients.
//   - `make torture` sets TORTURE_TIME (default 10m) and runs the long
//     versions: 50 crash iterations (more while time remains), 50
//     clients, then every fuzz target for FUZZTIME (default 1m) each.
//
// # Invariants checked after every fault
//
//   - `cairn pool check --read-data` finds no error;
//   - the catalog's snapshots are exactly the pool's manifests;
//   - every snapshot that was complete before the fault keeps its root
//     digest and restores to the same files (sha256 compared);
//   - an interrupted job is re-run on restart and completes.
//
// The S3 fault proxy also breaks the bucket check when a pool is opened
// (opening is retried), and TestS3Faults runs `pool check --read-data`
// while object and manifest reads come back flipped or short: damaged
// reads are re-read afresh, the check passes and quarantines nothing.
//
// The load test writes its figures to bench/load.json (p99 latency of
// PROPFIND and GET, backup throughput with and without load) for the
// benchmark report.
package torture
