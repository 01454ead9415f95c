//! Integration tests of `tincan-directory`: the DNS engine in-process against delv/dig (`dns_*`), the storage
//! conformance suite on SQLite and PostgreSQL, and the real binary driven over HTTP and DNS on free loopback ports.

mod api_errors;
mod api_list;
mod api_ownership;
mod api_props;
mod binary;
mod dns_behaviour;
mod dns_negative_cache;
mod dns_scale;
mod dns_support;
mod dns_transport;
mod dns_validation;
mod dns_walk;
mod ds_check;
mod follow;
mod harness;
mod import;
mod metrics;
mod ports;
mod provider_sync;
mod public_reads;
mod rollover;
mod storage;
mod tcp_flood;
mod translog;
mod xfr;
