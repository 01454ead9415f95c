-- The ledger: accounts, the double-entry journal, holds, idempotency records and API tokens.
-- Money is whole micro-units (10^-6 of the currency unit) in 64-bit integers.

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('user', 'business', 'system')),
    name TEXT NOT NULL,
    user_id TEXT UNIQUE,
    number TEXT,
    currency TEXT NOT NULL,
    -- Customer accounts: the sum of their legs and of their open holds, kept in the same transaction.
    balance BIGINT NOT NULL DEFAULT 0,
    held BIGINT NOT NULL DEFAULT 0 CHECK (held >= 0),
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX accounts_system ON accounts (name, currency) WHERE kind = 'system';

CREATE TABLE entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    reference TEXT NOT NULL,
    memo TEXT NOT NULL,
    hold_id BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX entries_hold ON entries (hold_id) WHERE hold_id IS NOT NULL;

CREATE TABLE legs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id BIGINT NOT NULL REFERENCES entries (id),
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    amount BIGINT NOT NULL
);
CREATE INDEX legs_account ON legs (account_id, id);
CREATE INDEX legs_entry ON legs (entry_id);

CREATE TABLE holds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    principal TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount >= 0),
    state TEXT NOT NULL CHECK (state IN ('open', 'settled', 'released', 'expired')),
    service TEXT NOT NULL,
    destination TEXT NOT NULL,
    rate TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    closed_at BIGINT,
    charged BIGINT CHECK (charged IS NULL OR (charged >= 0 AND charged <= amount)),
    units BIGINT,
    carrier TEXT
);
CREATE INDEX holds_open_expiry ON holds (expires_at) WHERE state = 'open';
CREATE INDEX holds_account ON holds (account_id, state, id);
CREATE INDEX holds_closed ON holds (account_id, closed_at) WHERE state = 'settled';

CREATE TABLE idempotency (
    principal TEXT NOT NULL,
    key TEXT NOT NULL,
    op TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (principal, key)
);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash BLOB NOT NULL UNIQUE,
    scope TEXT NOT NULL CHECK (scope IN ('user', 'service', 'operator')),
    subject TEXT NOT NULL,
    account_id BIGINT REFERENCES accounts (id),
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);
