//! Integration tests of the client core against a real Synapse and a DNSSEC-signed directory zone (knotd).

mod directory;
mod dm;
mod dns;
mod harness;
mod signup;
