//! Tests of the real `tincan` binary against a real Synapse and a DNSSEC-signed directory zone (knotd).

// The signed test zone is shared with the client core's tests.
mod acceptance;
mod cli;
#[path = "../../../core/tests/it/dns.rs"]
mod dns;
