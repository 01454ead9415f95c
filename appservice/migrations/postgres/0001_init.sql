-- Bridge core schema (PostgreSQL). The core owns the schema; connectors keep their data in the `metadata` JSON columns.

-- Transactions pushed by the homeserver: a txnId seen here is acknowledged again without being recorded twice.
CREATE TABLE as_transaction (
    txn_id      TEXT PRIMARY KEY NOT NULL,
    received_at BIGINT NOT NULL
);

-- The durable inbox: every event of a transaction, recorded in the same database transaction as its txnId,
-- processed in `seq` order and marked done once handled.
CREATE TABLE inbox_event (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txn_id     TEXT NOT NULL REFERENCES as_transaction (txn_id),
    kind       TEXT NOT NULL,
    event_json TEXT NOT NULL,
    done_at    BIGINT
);
CREATE INDEX inbox_event_pending ON inbox_event (seq) WHERE done_at IS NULL;

CREATE TABLE ghost (
    remote_id    TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL UNIQUE,
    display_name TEXT,
    avatar_url   TEXT,
    registered   BIGINT NOT NULL DEFAULT 0,
    metadata     TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE portal (
    receiver  TEXT NOT NULL,
    chat_id   TEXT NOT NULL,
    room_id   TEXT UNIQUE,
    other_user TEXT NOT NULL,
    metadata  TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (receiver, chat_id)
);

CREATE TABLE message (
    receiver  TEXT NOT NULL,
    chat_id   TEXT NOT NULL,
    remote_id TEXT NOT NULL,
    event_id  TEXT NOT NULL UNIQUE,
    room_id   TEXT NOT NULL,
    sender    TEXT NOT NULL,
    metadata  TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (receiver, chat_id, remote_id)
);
