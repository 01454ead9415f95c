-- Call detail records: one row per attempt of a call on a carrier (or per call refused before any carrier),
-- answered or not, written before the call's hold is settled or released.

CREATE TABLE call_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    attempt INTEGER NOT NULL CHECK (attempt >= 0),
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    hold_id BIGINT,
    destination TEXT NOT NULL,
    carrier TEXT,
    result TEXT NOT NULL CHECK (result IN ('answered', 'busy', 'no_answer', 'failed', 'cancelled', 'refused')),
    sip_status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    q850_cause INTEGER,
    started_at BIGINT NOT NULL,
    answered_at BIGINT,
    ended_at BIGINT NOT NULL,
    billed_seconds BIGINT,
    price BIGINT,
    cost BIGINT,
    currency TEXT NOT NULL,
    UNIQUE (call_id, attempt)
);
CREATE INDEX call_records_account ON call_records (account_id, id);
