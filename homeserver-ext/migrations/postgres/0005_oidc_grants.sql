-- The OpenID provider's short-lived state (src/oidc), in the database so that every node serves every step:
-- sign-ins in progress at its pages, authorization codes and access tokens. Codes and tokens are kept by their
-- SHA-256 only. Rows are deleted once expired (on the next insert into the same table).
CREATE TABLE oidc_sign_ins (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    state TEXT,
    nonce TEXT,
    code_challenge TEXT NOT NULL,
    scope TEXT NOT NULL,
    browser_digest TEXT NOT NULL,
    session_secret TEXT NOT NULL,
    sid TEXT,
    number TEXT,
    sends BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oidc_sign_ins_expires ON oidc_sign_ins (expires_at);

-- A redeemed code keeps its row (with the access token it gave) until that token expires, so a replay can
-- revoke it (RFC 6749 §4.1.2).
CREATE TABLE oidc_codes (
    code_digest TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce TEXT,
    scope TEXT NOT NULL,
    sub TEXT NOT NULL,
    phone_number TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    redeemed_token TEXT
);
CREATE INDEX oidc_codes_expires ON oidc_codes (expires_at);

CREATE TABLE oidc_tokens (
    token_digest TEXT PRIMARY KEY,
    sub TEXT NOT NULL,
    phone_number TEXT NOT NULL,
    scope TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oidc_tokens_expires ON oidc_tokens (expires_at);
