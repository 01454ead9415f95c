//! Integration tests of the client core: against a real Synapse alone (`dm`), and against the real chain of
//! Synapse, the homeserver extension and the directory (`network`, `bench`), and two such providers federating
//! on one directory (`federation`, and a number moving between them: `porting`).

mod at_rest;
mod bench;
mod chain;
mod charter;
mod charter_routing;
mod charter_server;
mod dm;
mod fake_bridge;
mod federation;
mod harness;
mod key_proxy;
mod late_keys;
mod log_proxy;
mod network;
mod outage;
mod parent_dns;
mod parent_ds;
mod porting;
mod reach;
mod registration_lock;
mod resolve_log;
mod session_store;
