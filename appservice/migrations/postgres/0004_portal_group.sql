-- Whether a portal's chat is a group: kept when its room goes, so the chat's next room is a group room again.
ALTER TABLE portal ADD COLUMN is_group BIGINT NOT NULL DEFAULT 0;
