-- Logins of local users on the network (`login` in the management room): who the user is there and the
-- connector's data for it. Deleted with `logout`.
CREATE TABLE user_login (
    user_id   TEXT PRIMARY KEY NOT NULL,
    remote_id TEXT NOT NULL,
    metadata  TEXT NOT NULL DEFAULT '{}'
);

-- The rooms users invited the bridge bot into: their commands (`help`, `login`, `logout`, `status`) come there.
CREATE TABLE management_room (
    room_id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL
);
