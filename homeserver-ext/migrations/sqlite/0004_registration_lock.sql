-- Registration locks: the PIN (Argon2id, keyed with registration_lock.secret, never stored), the last activity
-- of the account's devices (the lock lapses after registration_lock.lapse_secs without), and the wrong-PIN
-- count and wait, per account.
CREATE TABLE registration_locks (
    user_id TEXT PRIMARY KEY,
    pin_hash TEXT NOT NULL,
    last_active_at BIGINT NOT NULL,
    failures BIGINT NOT NULL DEFAULT 0,
    next_try_at BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
