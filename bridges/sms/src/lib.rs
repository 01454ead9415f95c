//! The Tincan SMS bridge: Matrix direct messages to and from phone numbers over SMPP, as a connector on the
//! bridge core (`tincan-appservice`).
//!
//! - [`protocol`]: pure SMS logic (alphabets, segmentation, reassembly, delivery receipts, keywords).
//! - [`store`]: the durable outbox, inbound parts, numbers and opt-outs (SQLite or PostgreSQL).
//! - [`link`]: SMPP sessions to the SMSCs (supervised, windowed, throttled, with failover) sending the outbox.
//! - [`limits`]: token buckets.

pub mod limits;
pub mod link;
pub mod protocol;
pub mod store;
