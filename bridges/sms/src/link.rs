//! The carrier link: SMPP sessions to one or more SMSCs, and the sending of the outbox through them.
//!
//! - [`session`]: one supervisor task per SMSC binds a transceiver (rusmppc, which has no reconnect of its
//!   own), keeps it with `enquire_link`, answers `deliver_sm` once the [`InboundHandler`] has recorded what came,
//!   and reconnects with exponential back-off when the link drops.
//! - [`dispatch`]: one dispatcher takes due segments from the outbox and hands each to the SMSC of best
//!   priority that is bound, not paused and has room in its window of outstanding `submit_sm`; a writer
//!   records the answers in batches. A window slot is freed only once the answer is committed, so at any
//!   moment at most `window` segments per link have an unknown outcome: that bounds the duplicates a link
//!   drop or a `kill -9` can leave at the SMSC (they are resent, and counted as possible duplicates).
//!   `ESME_RTHROTTLED` and `ESME_RMSGQFUL` pause the link and requeue the segment; permanent errors fail the
//!   message with the SMSC's reason; a response timeout or a dropped link requeues it as uncertain.
//! - `receipts`: delivery receipts recorded in the outbox in batches before their `deliver_sm` is answered.
//! - [`pdu`]: PDUs to and from the bridge's types.

pub mod dispatch;
pub mod pdu;
mod receipts;
pub mod session;

use crate::protocol::reassembly::InboundCoding;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tincan_common::Secret;

pub use dispatch::{LinkSet, LinkStatus};
pub use pdu::Inbound;

/// One SMSC.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmscConfig {
    /// A name for logs, metrics and the outbox (`carrier-a`).
    pub name: String,
    /// `host:port` (plain TCP: run a TLS tunnel such as stunnel where the carrier requires TLS).
    pub address: String,
    /// Bind `system_id`.
    pub system_id: String,
    /// Bind password.
    pub password: Secret,
    /// Bind `system_type`.
    pub system_type: String,
    /// `3.4` (the common one) or `5.0`.
    pub interface_version: String,
    /// Lower goes first; links of equal priority share the traffic.
    pub priority: u32,
    /// Outstanding `submit_sm` at most (the SMPP window).
    pub window: usize,
    /// Most `submit_sm` a second this SMSC allows (0: no limit).
    pub max_per_second: u32,
    /// Seconds between `enquire_link`s.
    pub enquire_link_secs: u64,
    /// Seconds to wait for a response before the outcome counts as unknown.
    pub response_timeout_secs: u64,
    /// First reconnect delay, milliseconds; it doubles up to `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay, milliseconds.
    pub reconnect_max_ms: u64,
    /// How long the link rests after `ESME_RTHROTTLED` or `ESME_RMSGQFUL`, milliseconds.
    pub throttle_pause_ms: u64,
    /// What this SMSC means by `data_coding` 0 inbound: `gsm7`, `latin1` or `ascii`.
    pub default_alphabet: String,
    /// Read numbers of unknown type (TON 0) as international, as many SMSCs send them.
    pub assume_international: bool,
    /// Ask for delivery receipts.
    pub delivery_receipts: bool,
}

impl Default for SmscConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            address: String::new(),
            system_id: String::new(),
            password: Secret::default(),
            system_type: String::new(),
            interface_version: "3.4".into(),
            priority: 0,
            window: 10,
            max_per_second: 0,
            enquire_link_secs: 30,
            response_timeout_secs: 10,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            throttle_pause_ms: 1_000,
            default_alphabet: "gsm7".into(),
            assume_international: true,
            delivery_receipts: true,
        }
    }
}

impl SmscConfig {
    /// Problems, each naming its key under `key` (`smsc[0]`).
    pub fn validate(&self, key: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.name.is_empty() || !self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            p.push(format!("{key}.name: {:?} must be a non-empty name of letters, digits, - _ .", self.name));
        }
        let port_ok =
            self.address.rsplit_once(':').is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            p.push(format!("{key}.address: {:?} is not host:port", self.address));
        }
        if self.system_id.is_empty() || self.system_id.len() > 15 {
            p.push(format!("{key}.system_id: must be 1 to 15 characters"));
        }
        if self.password.expose().len() > 8 {
            p.push(format!("{key}.password: SMPP passwords are at most 8 characters"));
        }
        if self.system_type.len() > 12 {
            p.push(format!("{key}.system_type: at most 12 characters"));
        }
        if !matches!(self.interface_version.as_str(), "3.4" | "5.0") {
            p.push(format!("{key}.interface_version: {:?} is neither 3.4 nor 5.0", self.interface_version));
        }
        if !(1..=1000).contains(&self.window) {
            p.push(format!("{key}.window: must be 1 to 1000"));
        }
        if self.enquire_link_secs == 0 || self.response_timeout_secs == 0 {
            p.push(format!("{key}: enquire_link_secs and response_timeout_secs must be at least 1"));
        }
        if self.reconnect_min_ms == 0 || self.reconnect_max_ms < self.reconnect_min_ms {
            p.push(format!("{key}: need 0 < reconnect_min_ms <= reconnect_max_ms"));
        }
        if self.inbound_default().is_none() {
            p.push(format!("{key}.default_alphabet: {:?} is not gsm7, latin1 or ascii", self.default_alphabet));
        }
        p
    }

    /// What `data_coding` 0 means inbound.
    pub fn inbound_default(&self) -> Option<InboundCoding> {
        match self.default_alphabet.as_str() {
            "gsm7" => Some(InboundCoding::Gsm7),
            "latin1" => Some(InboundCoding::Latin1),
            "ascii" => Some(InboundCoding::Ascii),
            _ => None,
        }
    }

    pub(crate) fn response_timeout(&self) -> Duration {
        Duration::from_secs(self.response_timeout_secs)
    }
}

/// Why a `deliver_sm` could not be taken now; the SMSC is told to try again later (`ESME_RX_T_APPN`).
#[derive(Debug, thiserror::Error)]
#[error("cannot take the message now: {0}")]
pub struct HandlerError(pub String);

/// What the bridge does with inbound messages (receipts go to the outbox). It must have recorded what it needs
/// durably before it returns `Ok`: only then is the SMSC told the message arrived.
#[async_trait]
pub trait InboundHandler: Send + Sync + 'static {
    /// A message, or a part of one, came in over `smsc` ([`Inbound::Message`]; never a receipt).
    async fn handle(&self, smsc: &str, inbound: Inbound) -> Result<(), HandlerError>;
}

/// An [`InboundHandler`] shared by every session.
pub type SharedHandler = Arc<dyn InboundHandler>;
