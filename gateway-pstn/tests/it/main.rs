//! Integration tests of `tincan-gateway`: the storage conformance suite and the ledger's correctness
//! acceptance (concurrent reservations with an observer) on SQLite and PostgreSQL, and the real binary driven
//! over HTTP (the charging API, a `kill -9` in the middle of settlements, the portal in headless Chromium).

mod api;
mod api_props;
mod calls;
mod concurrency;
mod crash;
mod credit;
mod expiry;
mod harness;
mod openapi;
mod portal;
mod rating;
mod storage;
