//! Tests of the real `tincan` binary against a real Synapse, a DNSSEC-signed directory zone (knotd) and, with
//! `TINCAN_TEST_EXT_BIN`, the real homeserver extension.

mod acceptance;
mod cli;
// The signed test zone is shared with the client core's tests.
#[path = "../../../core/tests/it/dns.rs"]
mod dns;
mod signup;
