//! Integration tests of the SMS bridge: the store conformance suite on SQLite and PostgreSQL, and the carrier
//! link against an independent SMSC (the smpp34 simulator).

mod harness;
mod link;
mod store;
