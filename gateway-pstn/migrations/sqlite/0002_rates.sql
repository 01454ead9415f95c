-- Rates and routes: rate decks per price plan, carriers with their cost decks, per-account fraud limits.

ALTER TABLE accounts ADD COLUMN plan TEXT NOT NULL DEFAULT 'default';

CREATE TABLE rates (
    plan TEXT NOT NULL,
    prefix TEXT NOT NULL,
    description TEXT NOT NULL,
    connect_fee BIGINT NOT NULL,
    per_minute BIGINT,
    first_incr INTEGER NOT NULL,
    next_incr INTEGER NOT NULL,
    per_sms BIGINT,
    PRIMARY KEY (plan, prefix)
);

CREATE TABLE carriers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('sip', 'smsc')),
    priority INTEGER NOT NULL,
    max_concurrent INTEGER NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE carrier_rates (
    carrier_id BIGINT NOT NULL REFERENCES carriers (id),
    prefix TEXT NOT NULL,
    description TEXT NOT NULL,
    connect_fee BIGINT NOT NULL,
    per_minute BIGINT,
    first_incr INTEGER NOT NULL,
    next_incr INTEGER NOT NULL,
    per_sms BIGINT,
    PRIMARY KEY (carrier_id, prefix)
);

CREATE TABLE account_limits (
    account_id BIGINT PRIMARY KEY REFERENCES accounts (id),
    max_open_holds INTEGER,
    max_spend_hour BIGINT,
    max_spend_day BIGINT,
    -- JSON lists of prefixes (digits): opted in to (premium…), and blocked for this account.
    opt_in TEXT NOT NULL DEFAULT '[]',
    blocked TEXT NOT NULL DEFAULT '[]'
);
