-- API tokens may expire: expires is the time (nanoseconds) from which the
-- token is refused; 0 = never.

ALTER TABLE tokens ADD COLUMN expires BIGINT NOT NULL DEFAULT 0;
