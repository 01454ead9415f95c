-- The directory's state: providers, numbers, DNSSEC keys and the append-only change journal.
-- Timestamps are Unix milliseconds (UTC). Services and journal records are JSON text.

CREATE TABLE providers (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT      NOT NULL UNIQUE,
    token_hash  BYTEA     NOT NULL UNIQUE,
    created_at  BIGINT    NOT NULL
);

CREATE TABLE provider_prefixes (
    provider_id BIGINT NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    prefix      TEXT   NOT NULL,
    PRIMARY KEY (provider_id, prefix)
);

-- One row; every change to a number takes the next version under this row's lock, so versions are gap-free
-- and in commit order even with several directory nodes writing.
CREATE TABLE zone_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO zone_version (id, version) VALUES (1, 0);

CREATE TABLE numbers (
    e164        TEXT   PRIMARY KEY,
    services    TEXT   NOT NULL,
    master_key  TEXT,
    provider_id BIGINT NOT NULL REFERENCES providers (id),
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE journal (
    version     BIGINT PRIMARY KEY,
    e164        TEXT   NOT NULL,
    old_record  TEXT,
    new_record  TEXT,
    provider_id BIGINT REFERENCES providers (id),
    at          BIGINT NOT NULL
);
CREATE INDEX journal_e164 ON journal (e164);

CREATE TABLE dnssec_keys (
    id          BIGSERIAL PRIMARY KEY,
    apex        TEXT   NOT NULL,
    role        TEXT   NOT NULL CHECK (role IN ('ksk', 'zsk')),
    algorithm   TEXT   NOT NULL,
    pkcs8       BYTEA  NOT NULL,
    state       TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX dnssec_keys_apex ON dnssec_keys (apex);
