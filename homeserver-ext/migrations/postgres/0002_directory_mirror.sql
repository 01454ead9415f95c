-- Mirror of the directory's number list (GET /v1/numbers, any provider), for hashed lookups of numbers other
-- providers registered. Only the number, the zone version of its last change and its lookup hash under the
-- current pepper; the Matrix user is always resolved through DNSSEC-validated DNS, never stored here.
CREATE TABLE directory_mirror (
    number TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    lookup_hash TEXT NOT NULL
);
CREATE INDEX directory_mirror_hash ON directory_mirror (lookup_hash);
