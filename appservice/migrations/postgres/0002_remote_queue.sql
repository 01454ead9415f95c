-- The durable remote→Matrix queue: an event from the network is recorded here before the connector's queue call
-- returns, bridged in `seq` order per portal, and marked done (with the Matrix event it became, if any) once the
-- homeserver accepted it. A restart replays every event not marked done, in order.
CREATE TABLE remote_event (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    receiver   TEXT NOT NULL,
    chat_id    TEXT NOT NULL,
    event_json TEXT NOT NULL,
    queued_at  BIGINT NOT NULL,
    done_at    BIGINT,
    event_id   TEXT
);
CREATE INDEX remote_event_pending ON remote_event (seq) WHERE done_at IS NULL;
