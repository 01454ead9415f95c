//! The Tincan SMS bridge: Matrix direct messages to and from phone numbers over SMPP, as a connector on the
//! bridge core (`tincan-appservice`).
//!
//! - [`protocol`]: pure SMS logic (alphabets, segmentation, reassembly, delivery receipts, keywords).
//! - [`store`]: the durable outbox, inbound parts, numbers and opt-outs (SQLite or PostgreSQL).
//! - [`link`]: SMPP sessions to the SMSCs (supervised, windowed, throttled, with failover) sending the outbox.
//! - [`limits`]: token buckets.
//! - [`bridge`]: the connector: outbound checks and the outbox, inbound routing and reassembly, message status,
//!   commands.
//! - [`billing`]: charging through the gateway's ledger, or free.
//! - [`mms`]: images as MMS through a carrier's HTTP API (Twilio's Messages API).
//! - [`config`], [`cli`], [`http`], [`metrics`]: the binary and its operator surface.

pub mod billing;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod http;
pub mod limits;
pub mod link;
pub mod metrics;
pub mod mms;
pub mod protocol;
pub mod store;
