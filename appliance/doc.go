// Package appliance is the running Cairn server (`cairn serve`): it wires
// the catalog, the pool, the pullers, the scheduler and job queue, the
// REST API, auth, the web UI and metrics together.
//
// # Data directory
//
//	DATA/lock         flock held while serving; names the holder (pid, host, start)
//	DATA/catalog.db   SQLite catalog (or --db postgres://…), see package catalog
//	DATA/secret.key   AES-256 key sealing host credentials (0600)
//	DATA/pool/        the pool (pool.NewDirBackend), its UUID recorded in the catalog
//	DATA/images/      the block-image pool (images.go; Config.Images), made by the
//	                  first image backup; DATA/images.key when encrypted
//	DATA/cairn.sock   the API over a unix socket (0600): root there is admin
//	DATA/restores/    where operators may restore to
//
// On start the catalog's pool ID must match the pool's identity file:
// anything else is "wrong or missing storage" and serve refuses to run
// (a new pool is only made when the catalog knows none). /healthz and a
// one-minute loop re-read the identity; while it fails the queue pauses.
//
// # Jobs
//
// Every unit of work is a catalog job row (queued → running → done,
// failed, cancelled or interrupted) with live progress and events.
// Backups go through schedule.Queue (global limit, never two for one host,
// manual first, scheduled runs retried with backoff unless the error is
// pullers.ErrPermanent); schedule.Scheduler feeds it from the hosts' cron
// schedules, and runs pool GC and check on their own schedules. Restore,
// check and gc jobs start at once. A backup pulls each source with
// pullers.Get(method) into a pool.Writer, with the previous snapshot as
// Previous; its manifest becomes a snapshot row, then retention runs.
// Image sources (image-ssh, image-sftp, image-smb, image-rsync;
// images_job.go) write an image version into the image pool and a
// placeholder snapshot naming it (images/FORMAT.md §6), so images are
// snapshots of their host and appear as <host>/<time>/images/<source>.img.
// Jobs running at shutdown end interrupted (a cancelled pull keeps a
// partial snapshot); at the next start interrupted jobs, and jobs found
// running after a crash, are re-queued once (RetryOf).
//
// # API and auth
//
// Routes live in one table (api.go) with a minimum role each; openapi.json
// documents them and TestOpenAPICoversRoutes keeps the two in step.
// Principals: bearer tokens (stored hashed), the web UI's session cookie
// (changing requests need its CSRF token), or root on the unix socket.
// Roles: admin > operator > user; a user sees only the hosts of its
// groups, and other hosts are 404, never 403. Only /healthz and
// /api/v1/status answer without credentials. Secrets are write-only: the
// API lists which credential keys a source has, never values, and puller
// errors are scrubbed of them before they reach logs, jobs or webhooks.
//
// # Replication and verification
//
// Replication targets (replicate.go) are another pool location (a
// directory or s3://), another appliance (replicate_remote.go: its
// /api/v1/replica routes, open to append-only tokens that can add but
// never delete or overwrite) or any rclone remote (replicate_rclone.go:
// `rclone serve webdav` on loopback, the imported rclone.conf passed in
// its environment). Each committed snapshot event wakes one worker per
// target; a run copies the complete snapshots not older than the newest
// the target holds of that host and source (pool.Replicate), then applies
// the target's retention and GC. The image versions of those snapshots go
// first, to the image pool nested at <target>/images (replicate_images.go,
// images.(*Store).Replicate). Keys of encrypted replicas received from
// another appliance stay on the primary unless an admin imports them
// (sealed, PUT /api/v1/replica/{pool}/key). Targets and their sealed secrets live in
// the settings table. verify.go runs the scheduled pool check over a
// rotating slice of the digest space and the restore tests (sample files
// read through the restore tree against their recorded digests; dumps
// loaded into a scratch database); audit.go compares each host's
// snapshots on the primary and on every target. Their results are in
// GET /api/v1/verify, /api/v1/audit and /metrics (verify_metrics.go).
//
// # Imports
//
// appliance wires concrete types together and may import every package of
// the module except cmd.
package appliance
