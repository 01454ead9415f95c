-- The transparency log: one leaf per accepted change (numbers: written with the journal entry in the same
-- transaction; zone keys: by the key code), the log's right edge for O(log n) appends, signed tree heads and
-- the log's Ed25519 signing key.

CREATE TABLE translog (
    idx       BIGINT PRIMARY KEY,
    entry     TEXT   NOT NULL,
    leaf_hash BYTEA  NOT NULL,
    e164      TEXT,
    version   BIGINT
);
CREATE INDEX translog_e164 ON translog (e164, idx);

-- One row: the tree size and the roots of its perfect subtrees (32 bytes each, largest first).
CREATE TABLE translog_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    size     BIGINT NOT NULL,
    frontier BYTEA  NOT NULL
);
INSERT INTO translog_head (id, size, frontier) VALUES (1, 0, ''::bytea);

CREATE TABLE translog_sth (
    tree_size    BIGINT PRIMARY KEY,
    timestamp_ms BIGINT NOT NULL,
    root_hash    BYTEA  NOT NULL,
    signature    TEXT   NOT NULL
);

CREATE TABLE log_keys (
    id         BIGSERIAL PRIMARY KEY,
    seed       BYTEA  NOT NULL,
    created_at BIGINT NOT NULL
);
