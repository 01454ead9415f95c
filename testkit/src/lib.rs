//! Test harness for Tincan's integration tests: real peers, not mocks.
//!
//! - [`Synapse`]: a real Synapse homeserver from the project's venv, on a free loopback port, with a fresh
//!   SQLite data dir; stopped when dropped (and by a watchdog if the test process dies).
//! - [`synapse_oidc`]: Synapse's `oidc_providers` block for an OpenID provider under test.
//! - [`Postgres`]: a fresh PostgreSQL database per test, dropped afterwards.
//! - [`tools`]: Debian tools (`delv`, `ldns-verify-zone`, `sipp`…) with an error naming the missing package.
//! - [`dnssec`]: zones signed with BIND's tools and served by Knot (as signed, or signed online).
//! - [`federation`]: providers that federate — Synapses over real TLS with a test CA, each with its own
//!   `tincan-ext` on one directory.
//! - [`directory`]: the real `tincan-directory` binary (provider, trust anchor, registrar client) and a DNS
//!   man-in-the-middle that tampers with its signatures.
//! - [`secondary`]: a Knot DNS secondary pulling a zone by AXFR/IXFR with TSIG (optionally signing online).
//! - [`matrix`]: a client-server API caller, path-segment encoding, polling.
//! - [`node`]: matrix-js-sdk (Rust crypto) under node, an independent encrypted Matrix client.
//! - [`sip`]: rtpengine (userspace) and sipp scenarios.
//! - [`smsc`]: the SMSC peer of the SMS tests (smpp34, from the venv).
//! - [`ports`]: free loopback ports, reserved across parallel test processes.
//! - [`process`]: child processes that never outlive the test.

// A test harness: throwaway secrets come from the thread RNG and timeouts from the wall clock, which the
// workspace lints keep out of product code.
#![allow(clippy::disallowed_methods)]

pub mod directory;
pub mod dnssec;
pub mod federation;
mod knotd;
pub mod matrix;
pub mod node;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod secondary;
pub mod sip;
pub mod smsc;
pub mod synapse;
pub mod synapse_oidc;
pub mod tools;

pub use postgres::Postgres;
pub use process::ChildGuard;
pub use synapse::{RegisteredUser, Synapse, SynapseBuilder};

/// Whether we run in CI (`CI=true`), where a missing peer is a failure rather than a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false)
}

/// The repository root (the workspace root), found from this crate's manifest directory.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testkit lives in the workspace root").to_owned()
}
