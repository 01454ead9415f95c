-- How far the watch of a kept old account whose number moved away (porting::old_account) has read the account's
-- /sync, per port: a restarted node, or another node, goes on from there, so what arrived while no node was
-- watching (an invitation, whose stripped state carries no time) is still seen as new, after the port.
CREATE TABLE moved_watch (
    port_id BIGINT PRIMARY KEY,
    next_batch TEXT NOT NULL
);
