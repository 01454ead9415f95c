//! Charging for SMS: quote → reserve → settle | release, per segment, through the PSTN gateway's ledger.
//!
//! [`Billing`] is the seam: [`Free`] when the operator runs no gateway (a community provider; the bridge says
//! so at start), and the gateway's charging API otherwise. A message's segments are quoted and reserved
//! before it is stored (no credit, no send, and the sender is told why); the hold is settled for the segments
//! an SMSC accepted, or released when none was, by a worker that retries until the gateway answers (every
//! write carries an idempotency key derived from the Matrix event, so a retry never charges twice).

use async_trait::async_trait;

/// Why a charge could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillingError {
    /// The balance does not cover the message.
    #[error("not enough credit: {0}")]
    InsufficientFunds(String),
    /// The gateway has no rate for the destination.
    #[error("no price for this destination")]
    NoRate,
    /// The gateway refuses the destination (fraud limits, blocked ranges).
    #[error("destination refused by the provider: {0}")]
    Refused(String),
    /// The gateway cannot be reached or failed; try again.
    #[error("billing unavailable: {0}")]
    Unavailable(String),
}

/// The price of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// Price of one segment, decimal text (`0.0425`).
    pub unit_price: String,
    /// Price of all segments.
    pub total: String,
    /// ISO 4217 currency.
    pub currency: String,
}

/// Money held for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The gateway's hold id.
    pub id: String,
    /// Price of one segment.
    pub unit_price: String,
}

/// The charging interface the bridge uses.
#[async_trait]
pub trait Billing: Send + Sync + std::fmt::Debug + 'static {
    /// Whether messages cost nothing (no gateway configured).
    fn is_free(&self) -> bool;
    /// The price of `segments` segments from `user` to `destination`.
    async fn quote(&self, user: &str, destination: &str, segments: u32) -> Result<Quote, BillingError>;
    /// Holds the price of `segments` segments; `key` makes a repeat return the first hold.
    async fn reserve(&self, user: &str, destination: &str, segments: u32, key: &str) -> Result<Hold, BillingError>;
    /// Charges `segments` segments of the hold (the rest goes back).
    async fn settle(&self, hold: &str, segments: u32, unit_price: &str, key: &str) -> Result<(), BillingError>;
    /// Gives the whole hold back.
    async fn release(&self, hold: &str, key: &str) -> Result<(), BillingError>;
}

/// No charging.
#[derive(Debug, Clone, Copy, Default)]
pub struct Free;

#[async_trait]
impl Billing for Free {
    fn is_free(&self) -> bool {
        true
    }
    async fn quote(&self, _: &str, _: &str, _: u32) -> Result<Quote, BillingError> {
        Ok(Quote { unit_price: "0".into(), total: "0".into(), currency: String::new() })
    }
    async fn reserve(&self, _: &str, _: &str, _: u32, _: &str) -> Result<Hold, BillingError> {
        Err(BillingError::Unavailable("this bridge charges nothing; nothing to reserve".into()))
    }
    async fn settle(&self, _: &str, _: u32, _: &str, _: &str) -> Result<(), BillingError> {
        Ok(())
    }
    async fn release(&self, _: &str, _: &str) -> Result<(), BillingError> {
        Ok(())
    }
}
