-- Outgoing MMS (pictures through the carrier's HTTP API): one row per Matrix event, written before the carrier is
-- asked, so an event the core hands over again after a crash is answered from here instead of being sent twice.
-- state: sending (asked, no answer recorded yet), sent (the carrier took it: sid), failed (refused: reason).
-- billing: free | held (the gateway's hold) | settled | released, closed by the status worker like SMS.
CREATE TABLE sms_mms_out (
    event_id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    destination TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('sending', 'sent', 'failed')),
    attempts INTEGER NOT NULL,
    sid TEXT,
    reason TEXT,
    hold TEXT,
    billing TEXT NOT NULL CHECK (billing IN ('free', 'held', 'settled', 'released')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX sms_mms_out_billing ON sms_mms_out (event_id) WHERE billing = 'held' AND state <> 'sending';
