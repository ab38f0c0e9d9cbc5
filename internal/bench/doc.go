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
// # Flags
//
// BENCH_QUICK=1 (or -quick) uses a ≈200 MiB corpus. -tools selects tools,
// -runs the number of runs, -work the work directory (default
// /var/tmp/cairn-bench; corpora there are reused while their stamp files
// match). -gen-only only generates the corpora. Every run saves its figures
// to WORK/results-{full,quick}.json; -render FILE writes the report again
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
