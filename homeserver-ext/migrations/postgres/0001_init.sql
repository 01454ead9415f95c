-- Code sessions (sign-up and the Identity Service's msisdn validation).
CREATE TABLE code_sessions (
    sid TEXT PRIMARY KEY,
    client_secret_digest TEXT NOT NULL,
    number TEXT NOT NULL,
    purpose TEXT NOT NULL,
    code_hash BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    send_attempt BIGINT NOT NULL,
    last_sent_at BIGINT NOT NULL,
    validated_at BIGINT,
    consumed_at BIGINT
);
CREATE INDEX code_sessions_secret ON code_sessions (client_secret_digest, number, purpose);

-- One Matrix account per phone number; the localpart is random, never derived from the number.
CREATE TABLE accounts (
    number TEXT PRIMARY KEY,
    localpart TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    published_at BIGINT
);

-- Identity Service: number -> Matrix ID bindings, with the lookup hash under the current pepper.
CREATE TABLE bindings (
    number TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    lookup_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX bindings_hash ON bindings (lookup_hash);
CREATE INDEX bindings_user ON bindings (user_id);

-- Identity Service access tokens (stored as SHA-256 digests).
CREATE TABLE is_tokens (
    token_digest TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Lookup peppers; the newest row is current.
CREATE TABLE peppers (
    id BIGINT PRIMARY KEY,
    pepper TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
