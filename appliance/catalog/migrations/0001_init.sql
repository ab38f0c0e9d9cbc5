CREATE TABLE settings (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);

CREATE TABLE groups (
	id       {{id}},
	name     TEXT NOT NULL UNIQUE,
	settings TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE hosts (
	id       {{id}},
	name     TEXT NOT NULL UNIQUE,
	address  TEXT NOT NULL DEFAULT '',
	enabled  BIGINT NOT NULL DEFAULT 1,
	settings TEXT NOT NULL DEFAULT '{}',
	created  BIGINT NOT NULL
);

CREATE TABLE host_groups (
	host_id  BIGINT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
	group_id BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
	PRIMARY KEY (host_id, group_id)
);

CREATE TABLE sources (
	id       {{id}},
	host_id  BIGINT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
	name     TEXT NOT NULL,
	method   TEXT NOT NULL,
	path     TEXT NOT NULL DEFAULT '',
	excludes TEXT NOT NULL DEFAULT '[]',
	options  TEXT NOT NULL DEFAULT '{}',
	secret   {{blob}},
	UNIQUE (host_id, name)
);

CREATE TABLE schedules (
	id       {{id}},
	host_id  BIGINT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
	source   TEXT NOT NULL DEFAULT '',
	cron     TEXT NOT NULL,
	jitter   BIGINT NOT NULL DEFAULT 0,
	blackout TEXT NOT NULL DEFAULT '[]',
	last_run BIGINT NOT NULL DEFAULT 0,
	UNIQUE (host_id, source)
);

CREATE TABLE retention (
	host_id      BIGINT PRIMARY KEY REFERENCES hosts(id) ON DELETE CASCADE,
	keep_last    BIGINT NOT NULL DEFAULT 0,
	keep_hourly  BIGINT NOT NULL DEFAULT 0,
	keep_daily   BIGINT NOT NULL DEFAULT 0,
	keep_weekly  BIGINT NOT NULL DEFAULT 0,
	keep_monthly BIGINT NOT NULL DEFAULT 0,
	keep_yearly  BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE snapshots (
	id        TEXT PRIMARY KEY,
	host      TEXT NOT NULL,
	source    TEXT NOT NULL,
	started   BIGINT NOT NULL,
	finished  BIGINT NOT NULL,
	root      TEXT NOT NULL,
	status    TEXT NOT NULL,
	files     BIGINT NOT NULL DEFAULT 0,
	bytes     BIGINT NOT NULL DEFAULT 0,
	bytes_new BIGINT NOT NULL DEFAULT 0,
	errors    BIGINT NOT NULL DEFAULT 0,
	job_id    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX snapshots_host_source ON snapshots (host, source, started);

CREATE TABLE jobs (
	id       {{id}},
	kind     TEXT NOT NULL,
	host     TEXT NOT NULL DEFAULT '',
	state    TEXT NOT NULL,
	manual   BIGINT NOT NULL DEFAULT 0,
	params   TEXT NOT NULL DEFAULT '{}',
	progress TEXT NOT NULL DEFAULT '{}',
	error    TEXT NOT NULL DEFAULT '',
	retry_of BIGINT NOT NULL DEFAULT 0,
	created  BIGINT NOT NULL,
	started  BIGINT NOT NULL DEFAULT 0,
	finished BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX jobs_state ON jobs (state, id);

CREATE TABLE job_events (
	id      {{id}},
	job_id  BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
	time    BIGINT NOT NULL,
	level   TEXT NOT NULL,
	message TEXT NOT NULL
);
CREATE INDEX job_events_job ON job_events (job_id, id);

CREATE TABLE users (
	id            {{id}},
	name          TEXT NOT NULL UNIQUE,
	password_hash TEXT NOT NULL,
	role          TEXT NOT NULL,
	created       BIGINT NOT NULL
);

CREATE TABLE user_groups (
	user_id  BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	group_id BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
	PRIMARY KEY (user_id, group_id)
);

CREATE TABLE tokens (
	id        {{id}},
	user_id   BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name      TEXT NOT NULL,
	hash      TEXT NOT NULL UNIQUE,
	created   BIGINT NOT NULL,
	last_used BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE backup_status (
	host         TEXT NOT NULL,
	source       TEXT NOT NULL,
	status       TEXT NOT NULL,
	error        TEXT NOT NULL DEFAULT '',
	attempt      BIGINT NOT NULL,
	last_success BIGINT NOT NULL DEFAULT 0,
	duration     BIGINT NOT NULL DEFAULT 0,
	files        BIGINT NOT NULL DEFAULT 0,
	bytes        BIGINT NOT NULL DEFAULT 0,
	bytes_new    BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (host, source)
);
