-- Key rollover: when each DNSSEC key entered its current state (Unix milliseconds).
ALTER TABLE dnssec_keys ADD COLUMN changed_at INTEGER NOT NULL DEFAULT 0;
UPDATE dnssec_keys SET changed_at = created_at;
