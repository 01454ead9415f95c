-- Registrations of users' SIP devices (RFC 3261 §10 bindings): one row per (number, contact).
CREATE TABLE sip_bindings (
    number TEXT NOT NULL,
    contact TEXT NOT NULL,
    username TEXT NOT NULL,
    transport TEXT NOT NULL,
    source TEXT NOT NULL,
    call_id TEXT NOT NULL,
    cseq BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    user_agent TEXT,
    PRIMARY KEY (number, contact)
);
CREATE INDEX sip_bindings_expiry ON sip_bindings (expires_at);
CREATE INDEX sip_bindings_username ON sip_bindings (username);

-- Calls the bridge opened at rtpengine and has not yet deleted: what a restart deletes.
CREATE TABLE sip_media_sessions (
    call_id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
