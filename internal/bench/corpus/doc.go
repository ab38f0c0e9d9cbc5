// Package corpus generates the deterministic benchmark corpus for `make bench`
// and the mutation applied to it for the "mutated snapshot" scenario.
//
// # Determinism
//
// Everything is a function of Config: the file list (paths, sizes, kinds,
// mtimes) comes from a PCG stream seeded by Config.Seed, and each file's
// content from its own PRNG seeded by (Seed, file index). Files can therefore
// be written in any order, by any number of workers, and a single file can be
// rewritten later (Revert) without regenerating the rest.
//
// # Shape
//
// Small files have log-normal sizes clamped to [MinSize, MaxSize] and live in
// a tree of nested directories; a few large files sit in the same tree.
// About half of the files (and half of the large files) are text-like —
// prose from a Zipf-distributed vocabulary, log lines or NDJSON — which
// zstd compresses about 3-4×; the rest are random bytes that do not compress.
//
// # Mutation
//
// Mutate changes about 2% of the files (small files rewritten, large files
// patched in place in the middle), deletes 1% and adds 1%, deterministically
// for a given tree and seed. Revert undoes a Mutate using the Config.
package corpus
