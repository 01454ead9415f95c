//! Integration tests for `tincan-ext`: the real binary against real peers (Synapse, the smpp34 SMSC
//! simulator, PostgreSQL).

mod at_rest;
mod bench;
mod binary;
mod charter;
mod directory;
mod discovery;
mod dns_counter;
mod guessing;
mod harness;
mod identity;
mod log_checked;
/// The man-in-the-middle on the directory's log API the client's tests use.
#[path = "../../../clients/core/tests/it/log_proxy.rs"]
mod log_proxy;
mod lookup_limits;
mod oidc;
mod oidc_props;
mod porting;
mod pumping;
mod register_discovery;
mod register_fetch;
mod registration_lock;
mod side_effects;
mod signup;
mod smpp;
mod store;
mod threepid;
