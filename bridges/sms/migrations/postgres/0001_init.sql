-- The SMS bridge's own state (the core keeps portals, ghosts and its queues in its own database).

-- Outgoing messages: one row per Matrix event handed to the bridge, written before the core marks the event
-- done, so nothing between the homeserver's transaction and the SMSC's submit_sm_resp lives only in memory.
CREATE TABLE sms_messages (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL,
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    coding TEXT NOT NULL,
    parts INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    reported_state TEXT,
    hold TEXT,
    unit_price TEXT,
    billing TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX sms_messages_unreported ON sms_messages (id) WHERE reported_state IS DISTINCT FROM state;
CREATE INDEX sms_messages_billing ON sms_messages (id) WHERE billing = 'held' AND state <> 'queued';

-- Their short messages, as they go into submit_sm.
CREATE TABLE sms_segments (
    id BIGSERIAL PRIMARY KEY,
    message_id BIGINT NOT NULL REFERENCES sms_messages (id),
    seq INTEGER NOT NULL,
    short_message BYTEA NOT NULL,
    esm_class INTEGER NOT NULL,
    data_coding INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    uncertain INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    smsc TEXT,
    smsc_message_id TEXT,
    error TEXT,
    receipt TEXT,
    submitted_at BIGINT,
    UNIQUE (message_id, seq)
);
CREATE INDEX sms_segments_due ON sms_segments (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX sms_segments_sending ON sms_segments (id) WHERE state = 'sending';
CREATE INDEX sms_segments_smsc_id ON sms_segments (smsc_message_id);

-- Parts of long inbound messages waiting for their siblings (acknowledged to the SMSC once stored here).
CREATE TABLE sms_inbound_parts (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    reference INTEGER NOT NULL,
    total INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    coding TEXT NOT NULL,
    payload BYTEA NOT NULL,
    received_at BIGINT NOT NULL,
    UNIQUE (source, destination, reference, total, seq)
);

-- The provider's numbers (DIDs) and who holds them; a user's default is the one new conversations use.
CREATE TABLE sms_numbers (
    number TEXT PRIMARY KEY,
    holder TEXT,
    is_default INTEGER NOT NULL DEFAULT 0,
    assigned_at BIGINT
);
CREATE INDEX sms_numbers_holder ON sms_numbers (holder);

-- The number a conversation sends from, kept so the other side always sees the same sender.
CREATE TABLE sms_conversations (
    holder TEXT NOT NULL,
    remote TEXT NOT NULL,
    number TEXT NOT NULL,
    PRIMARY KEY (holder, remote)
);

-- Recipients who answered STOP to one of our numbers.
CREATE TABLE sms_opt_outs (
    remote TEXT NOT NULL,
    number TEXT NOT NULL,
    keyword TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (remote, number)
);

-- Delivery receipts that came before their submit_sm_resp was recorded (an SMSC may answer and report in
-- either order): applied when the segment's id is recorded.
CREATE TABLE sms_early_receipts (
    smsc_message_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    reason TEXT,
    at BIGINT NOT NULL
);
