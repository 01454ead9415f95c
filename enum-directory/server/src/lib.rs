//! The ENUM directory: storage of numbers, providers and DNSSEC keys ([`storage`]), the registrar HTTP API
//! ([`api`]), the DNSSEC-signed authoritative DNS server ([`dns`]), and the `tincan-directory` binary's
//! commands ([`cli`], [`serve`]).
#![warn(missing_docs)]

pub mod api;
pub mod audit;
pub mod change;
pub mod cli;
pub mod config;
pub mod dns;
pub mod ds_check;
pub mod follow;
pub mod import;
pub mod keys;
pub mod metrics;
pub mod ports;
pub mod provider_sync;
pub mod rollover;
pub mod serve;
pub mod storage;
pub mod translog;
pub mod xfr;
mod zone_writer;
