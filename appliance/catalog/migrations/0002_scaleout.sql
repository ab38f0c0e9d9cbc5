-- Scale-out: instances of `cairn serve` sharing one catalog register here
-- with a heartbeat, and queued jobs are leased to one of them.

CREATE TABLE instances (
	id             TEXT PRIMARY KEY,
	host           TEXT NOT NULL DEFAULT '',
	addr           TEXT NOT NULL DEFAULT '',
	version        TEXT NOT NULL DEFAULT '',
	started        BIGINT NOT NULL,
	last_heartbeat BIGINT NOT NULL,
	running        BIGINT NOT NULL DEFAULT 0,
	capacity       BIGINT NOT NULL DEFAULT 0,
	load_milli     BIGINT NOT NULL DEFAULT 0,
	stopped        BIGINT NOT NULL DEFAULT 0
);

-- instance: the instance that runs (or last ran) the job; lease_until: the
-- time its lease ends unless renewed (0 = no lease, single-instance mode);
-- attempt: attempts started; not_before: a retried job waits until then;
-- cancel_req: cancellation asked on another instance than its runner.
ALTER TABLE jobs ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN not_before BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN cancel_req BIGINT NOT NULL DEFAULT 0;
CREATE INDEX jobs_instance ON jobs (instance, state);
