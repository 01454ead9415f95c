-- The last transparency-log tree head the extension accepted, per log key (JSON of the signed tree head): the
-- next head must be consistent with it, across restarts too (a log that forks while the extension was down is
-- still caught).
CREATE TABLE log_heads (
    log_key TEXT PRIMARY KEY,
    sth TEXT NOT NULL
);
