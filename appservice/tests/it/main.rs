//! Integration tests of the bridge core: store conformance on SQLite and PostgreSQL, the AS API driven
//! directly, and the whole bridge against a real Synapse with a loopback network connector.

mod as_api;
mod commands;
mod crypto_store;
mod durable;
mod e2be;
mod gate;
mod group;
mod loopback;
mod media;
mod membership;
mod relations;
mod store;
mod synapse;
