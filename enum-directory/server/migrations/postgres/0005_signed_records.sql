-- Each number's signed DNS records (the zone's compact wire-format entry with its RRSIGs), written with the
-- number so a start-up loads signatures instead of making them. NULL: not signed yet (signed at load).
ALTER TABLE numbers ADD COLUMN signed BYTEA;
