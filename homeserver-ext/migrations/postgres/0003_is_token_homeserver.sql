-- An Identity Service token names the homeserver that vouched for its user (account/register's OpenID
-- exchange) and expires (identity.token_ttl_secs). Tokens made before this have no expiry recorded (0): they
-- are expired, and their users register again.
ALTER TABLE is_tokens ADD COLUMN server_name TEXT NOT NULL DEFAULT '';
ALTER TABLE is_tokens ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX is_tokens_expires ON is_tokens (expires_at);
