-- The SIP dialogs (a digest of the INVITE's Call-ID and From tag) whose calls a gateway node took, written with
-- each call's first hold, so that the same INVITE reaching a second node (a proxy failing over from a node
-- that was slow to answer) starts no second call. Kept past the call's end, pruned by age.
CREATE TABLE sip_dialogs (
    dialog TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX sip_dialogs_created ON sip_dialogs (created_at);
