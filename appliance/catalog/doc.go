// Package catalog is the appliance's database: hosts and their sources,
// schedules, retention policies, the snapshot index, jobs and their events,
// users, groups, API tokens, settings and the identity of the pool the
// catalog belongs to.
//
// # Backends
//
// It runs on database/sql over SQLite (modernc.org/sqlite, pure Go; the
// default, a file in the data dir) or PostgreSQL (pgx) for scale-out. Every
// query is written once with ? placeholders and rebound to $n for
// PostgreSQL; column types stay within what both understand (TEXT, BIGINT,
// times as Unix nanoseconds, JSON as TEXT).
//
// # Migrations
//
// Migrations are embedded SQL files migrations/NNNN_name.sql, applied in
// order inside one transaction each and recorded in schema_migrations. Two
// placeholders adapt DDL to the dialect: {{id}} (auto-increment primary key)
// and {{blob}} (binary column).
//
// # Invariants
//
//   - Secrets are stored sealed: the catalog never sees plaintext
//     credentials; sealing is the caller's job (appliance/internal/secret).
//   - Tokens are stored as SHA-256 hashes only.
//   - The snapshot index is a cache of the pool's manifests: it may be
//     rebuilt from them at any time (ReplaceSnapshots).
//
// # Imports
//
// catalog imports no other package of the module.
package catalog
