//! The provider's business service: accounts of phone identities and businesses, a prepaid double-entry
//! ledger whose reservations can never overdraw a balance, rates, and the provider API.
//!
//! Services charge through [`charging`] — **quote → reserve → settle/release** — in process
//! ([`ledger::Ledger::charging`]) or over HTTP ([`client::GatewayClient`]). The rules live in [`ledger`], the
//! state in [`storage`] (SQLite or PostgreSQL), the HTTP API in [`api`].
#![warn(missing_docs)]

pub mod api;
pub mod calls;
pub mod charging;
pub mod cli;
pub mod client;
pub mod config;
pub mod fraud;
pub mod ledger;
pub mod metrics;
pub mod money;
pub mod openapi;
pub mod payments;
pub mod portal;
pub mod rating;
pub mod routing;
pub mod serve;
pub mod storage;
pub mod vouchers;
