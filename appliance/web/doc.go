// Package web is the browser face of `cairn serve`: session login, the
// first-boot setup wizard and the pages (dashboard, hosts, browse and
// restore, users, jobs).
//
// # Stack
//
// Pages are server-rendered html/template shells with one CSS file and one
// small plain-JavaScript file, all embedded in the binary (embed.FS): no
// framework, no CDN, no build step, so the appliance works offline and the
// UI cannot drift from a separately built bundle. The data on the pages
// comes from the same REST API the CLI uses (/api/v1/...), fetched by the
// browser with the session cookie; the web package has no private route
// to the catalog beyond what login and first-boot setup need before any
// user exists.
//
// # Sessions
//
// A session is server-side (memory): the cookie holds a random 256-bit ID,
// the server keeps only its SHA-256, the user ID, a CSRF token and the
// times. A session ends after IdleTimeout without use or MaxAge after
// login, on logout, or when the process restarts. The cookie is HttpOnly,
// SameSite=Strict, Path=/, and Secure when the request came over TLS.
//
// # CSRF
//
// Every request authenticated by the session cookie that is not GET, HEAD
// or OPTIONS must carry the session's CSRF token, in the X-CSRF-Token
// header (fetch) or the csrf_token form field (plain forms). The token is
// bound to the session (a synchronizer token), handed to pages in a meta
// tag and mirrored in the non-HttpOnly cookie cairn_csrf for scripts.
// Requests with a bearer token or over the unix socket carry no cookie
// and need no CSRF token.
//
// # Pages over newer API
//
// The host form is built from GET /api/v1/methods, which lists every
// option and credential field of each method (name, label, type,
// required, secret, default, choices, help, group): main fields first,
// the groups (advanced, commands, snapshot, jump) in closed <details>. An
// API 400 that names an option or credential shows next to its field. On
// an edit, credentials are never shown; an empty credential field is sent
// as "" and the appliance keeps the stored value. The host page runs the
// connection test (POST /hosts/{host}/test) for operators and offers
// admins to accept a changed host key (?accept=true). Browse links the
// directory shown as zip and tar.zst archives and shows its WebDAV
// address (/dav/<host>/<snapshot-time>/<source>/<path>/). The restore
// form writes to a directory on the appliance or back to the host
// (to_host; in place for admins only, behind a warning). The job page
// follows a job's progress events live. The dashboard shows the pool's
// stored and apparent bytes, the saving, and an SVG chart of both over
// time (GET /api/v1/pool/history).
//
// Pages over the verification, replication, scale-out and appliance
// APIs, each a template and a script of its own: Verify (GET
// /api/v1/verify: the last pool check, restore tests run now or on a
// schedule), Replication (targets, sync, append-only tokens), Audit,
// Instances, System (appliance image: GET /api/v1/system, the update
// upload, reboot). The account page changes the own password (PUT
// /api/v1/users/me/password) and holds the API tokens. Cron fields show
// the next runs as the appliance computes them (GET
// /api/v1/schedule/preview).
//
// # Appliance image
//
// GET /api/v1/status (public) carries data_persistent on the appliance
// image; while it is false every page shows a red banner (the data lives
// in RAM) and the setup's storage step sends the admin to the data disk
// step first (GET /api/v1/system/disks, POST /api/v1/system/disks/use):
// an empty disk is taken as is, any other only after its name is typed,
// disks in use are never offered. The appliance then restarts onto the
// disk and the page waits for it.
//
// # Page scripts
//
// app.js holds the shared helpers (window.cairn) and the older pages.
// A page with a script of its own defines the template block "scripts"
// (e.g. setup_storage.html loads static/setup_storage.js), which adds a
// function to cairn.pages; app.js runs the page's function on
// DOMContentLoaded, after every deferred script.
//
// # Setup
//
// While no admin exists every page redirects to /setup, which needs the
// one-time setup token printed by `cairn serve` (SetupToken). The token
// is compared in constant time and rotated once an admin is created.
// The storage step (GET/POST /api/v1/storage, POST /api/v1/storage/test)
// may replace the pool `cairn serve` created at first start while it was
// never used: a local directory or an S3 bucket, encrypted or not. The
// key of a new encrypted pool is shown once, with a download, and the
// wizard goes on only after the admin says it is saved.
// The steps: admin, storage, timezone, HTTPS, schedule, first host.
// The HTTPS step (/setup/tls, GET/POST /api/v1/tls) shows the served and
// the stored certificate with its SHA-256 fingerprint and makes a new
// self-signed one or installs an uploaded certificate and key.
//
// Tests: TestPlaywright runs the Playwright suite in e2e/ (playwright-core
// from the lockfile, Debian's chromium; `make deps` installs both) against
// the real binary and a real sshd; the other browser tests use cdp_test.go.
package web
