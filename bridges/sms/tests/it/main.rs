//! Integration tests of the SMS bridge: the store conformance suite on SQLite and PostgreSQL.

mod store;
