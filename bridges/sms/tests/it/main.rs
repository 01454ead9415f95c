//! Integration tests of the SMS bridge: the store conformance suite on SQLite and PostgreSQL, the carrier link
//! against an independent SMSC (the smpp34 simulator), and the whole bridge with a real Synapse (MMS through a
//! stand-in of Twilio's Messages API).

mod bridge;
mod crash;
mod encrypted;
mod harness;
mod link;
mod mms;
mod store;
