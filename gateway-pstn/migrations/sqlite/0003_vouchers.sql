-- Vouchers: batches of single-use codes, stored as SHA-256 hashes only.

CREATE TABLE voucher_batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    count INTEGER NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE vouchers (
    code_hash BLOB PRIMARY KEY,
    batch_id BIGINT NOT NULL REFERENCES voucher_batches (id),
    redeemed_by BIGINT REFERENCES accounts (id),
    redeemed_at BIGINT
);
