//! Tests of the real `tincan` binary: its own contracts without services (`cli`), and the acceptance
//! against the real chain of Synapse, the homeserver extension and the directory (`acceptance`), and the
//! client's trust decisions against a lying log and a stripped DNSSEC chain (`trust`), and the SMS fall-back
//! through the real SMS bridge and an SMSC peer (`sms`), and the money commands
//! against a real `tincan-gateway` (`money`), and a directory whose parent zone's DS is not the charter's
//! (`parent_ds`), and a SIP phone's texts and calls seen by `tincan listen` through the real SIP bridge and
//! rtpengine (`sip`), and `account close` of an account whose number never moved (`close`).

mod acceptance;
// The real chain is shared with the client core's tests.
#[path = "../../../core/tests/it/chain.rs"]
mod chain;
#[path = "../../../core/tests/it/charter_server.rs"]
mod charter_server;
mod cli;
mod close;
#[path = "../../../core/tests/it/log_proxy.rs"]
mod log_proxy;
mod money;
#[path = "../../../core/tests/it/parent_dns.rs"]
mod parent_dns;
mod parent_ds;
mod sip;
mod sms;
mod trust;
