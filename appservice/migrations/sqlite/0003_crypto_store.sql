-- The ghosts' crypto stores (end-to-bridge encryption) in the bridge's database, as in PostgreSQL: one row per
-- object the ghost's OlmMachine saved (account, Olm and Megolm sessions, devices, identities, message hashes…),
-- grouped by the ghost's user ID (`owner`) and the object's `kind`. `value` is the crypto crate's serde form
-- (JSON), encrypted with the store cipher when a passphrase is set; the cipher itself, encrypted with the
-- passphrase, is the row ('', 'cipher', '').
CREATE TABLE crypto_object (
    owner TEXT NOT NULL,
    kind  TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (owner, kind, key)
) WITHOUT ROWID;
