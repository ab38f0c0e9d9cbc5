// Package retention decides which snapshots of one host a retention policy
// keeps and which it removes. It is pure: no I/O, no clock, no module
// imports. The caller groups snapshots (one host, or one host and source)
// and deletes what Apply returns in remove.
//
// # Semantics
//
// Apply follows `restic forget` (restic 0.17 and later):
//
//   - Snapshots are sorted newest first (ties broken by ID).
//   - KeepLast n keeps the n newest snapshots.
//   - KeepHourly/Daily/Weekly/Monthly/Yearly n keep, for each of the n
//     most recent periods that contain at least one snapshot, the newest
//     snapshot of that period. Periods are wall-clock periods in the given
//     location: hour YYYY-MM-DD HH, day YYYY-MM-DD, ISO 8601 week
//     (YYYY-Www, so 2024-12-30 and 2025-01-02 share week 2025-W01), month,
//     year. Around a DST fall-back the repeated wall-clock hour is one
//     hourly period, exactly as in restic.
//   - When a rule still has counts left after the last (oldest) snapshot,
//     that oldest snapshot is kept too, even if its period already has a
//     newer kept snapshot ("oldest" in the reason), so the history reaches
//     as far back as the policy allows.
//   - A negative count means unlimited (restic's "unlimited").
//   - KeepWithin d keeps every snapshot strictly newer than (newest complete
//     snapshot − d). It is relative to the newest snapshot, not to now, so an
//     appliance that stopped taking backups does not expire its history.
//   - A snapshot is kept if any rule keeps it; its reasons list every rule
//     that did, e.g. "daily 2026-11-20", "weekly 2026-W47".
//   - An empty policy (all zero) keeps everything.
//
// # Invariants beyond restic
//
//   - The newest complete snapshot is never removed, whatever the policy.
//   - Partial snapshots (Complete == false: an interrupted job's data) take
//     no part in the rules: they fill no period and use up no count. A
//     partial snapshot newer than the newest complete one is kept (reason
//     "partial, newer than newest complete"): it may hold the only copy of
//     recent data, and a re-run deduplicates against it. A partial snapshot
//     older than the newest complete one is superseded and removed. If there
//     is no complete snapshot at all, every partial one is kept.
//   - keep and remove are disjoint, together hold every input snapshot, and
//     are both sorted newest first. reasons has an entry for exactly the kept
//     IDs. Snapshot IDs must be unique.
package retention
