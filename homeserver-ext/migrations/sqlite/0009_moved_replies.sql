-- The moved notice's answers in the rooms of kept old accounts whose number moved away (porting::old_account):
-- per port and room, the event last answered and when. The node that answers claims the row first in one
-- conditional upsert, so several extension nodes watching the same account answer an event once, and a room at
-- most once per `porting.moved_reply_interval_secs`, and a restarted node keeps to that as well.
CREATE TABLE moved_replies (
    port_id BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    replied_at BIGINT NOT NULL,
    PRIMARY KEY (port_id, room_id)
);
