//! Charging for SMS: quote → reserve → settle | release, per segment, through the PSTN gateway's ledger.
//!
//! [`Billing`] is the seam: [`Free`] when the operator runs no gateway (a community provider; the bridge says
//! so at start), and [`Gateway`] otherwise: the gateway's `Charging` interface (`tincan-gateway`), over HTTP
//! with a service token ([`Gateway::http`]) or in process. Segments are held by usage (`segments`), so the
//! gateway prices them at the user's rate and keeps that rate with the hold; settlement names the segments an
//! SMSC accepted. A message's segments are quoted and reserved
//! before it is stored (no credit, no send, and the sender is told why); the hold is settled for the segments
//! an SMSC accepted, or released when none was, by a worker that retries until the gateway answers (every
//! write carries an idempotency key derived from the Matrix event, so a retry never charges twice).
//! An MMS is one unit of the gateway's `mms` service ([`Billing::reserve_mms`]), settled with one segment.

use async_trait::async_trait;
use std::sync::Arc;
use tincan_enum_core::E164;
use tincan_gateway::charging::{
    AccountRef, ChargeError, Charging, HoldState, IdempotencyKey, QuoteRequest, ReleaseRequest, ReserveRequest,
    ServiceKind, SettleRequest,
};

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
    /// Holds the price of one MMS (the gateway's `mms` service); settle it with one segment.
    async fn reserve_mms(&self, user: &str, destination: &str, key: &str) -> Result<Hold, BillingError>;
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
    async fn reserve_mms(&self, _: &str, _: &str, _: &str) -> Result<Hold, BillingError> {
        Err(BillingError::Unavailable("this bridge charges nothing; nothing to reserve".into()))
    }
    async fn settle(&self, _: &str, _: u32, _: &str, _: &str) -> Result<(), BillingError> {
        Ok(())
    }
    async fn release(&self, _: &str, _: &str) -> Result<(), BillingError> {
        Ok(())
    }
}

/// Charging through the PSTN gateway's ledger.
pub struct Gateway {
    charging: Arc<dyn Charging>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gateway")
    }
}

/// How long a hold lives: the gateway's maximum, so that a message waiting for a link still has its money.
const HOLD_TTL_SECS: u32 = 86_400;

impl Gateway {
    /// Charging through `charging` (in process, or a `GatewayClient`).
    pub fn new(charging: Arc<dyn Charging>) -> Self {
        Self { charging }
    }

    /// The gateway's HTTP API at `url` with a service token.
    pub fn http(url: &str, token: &str) -> Result<Self, BillingError> {
        let client = tincan_gateway::client::GatewayClient::new(url, token).map_err(map)?;
        Ok(Self::new(Arc::new(client)))
    }
}

fn map(e: ChargeError) -> BillingError {
    match e {
        ChargeError::InsufficientFunds => BillingError::InsufficientFunds(String::new()),
        ChargeError::NoRate => BillingError::NoRate,
        ChargeError::DestinationBlocked(why) | ChargeError::LimitExceeded(why) => BillingError::Refused(why),
        ChargeError::AccountDisabled => BillingError::Refused("your account is disabled".into()),
        e if e.is_retryable() => BillingError::Unavailable(e.to_string()),
        e => BillingError::Refused(e.to_string()),
    }
}

fn number(destination: &str) -> Result<E164, BillingError> {
    E164::parse(destination).map_err(|e| BillingError::Refused(format!("{destination}: {e}")))
}

fn key(k: &str) -> Result<IdempotencyKey, BillingError> {
    IdempotencyKey::new(k).map_err(|e| BillingError::Refused(e.to_string()))
}

fn hold_id(h: &str) -> Result<tincan_gateway::charging::HoldId, BillingError> {
    h.parse().map_err(|e: ChargeError| BillingError::Refused(e.to_string()))
}

impl Gateway {
    /// Holds the price of `n` units of `service` (SMS segments, MMS messages); without credit, the refusal says
    /// what it costs and what there is.
    async fn reserve_usage(
        &self,
        service: ServiceKind,
        user: &str,
        destination: &str,
        n: u32,
        k: &str,
    ) -> Result<Hold, BillingError> {
        let request = ReserveRequest {
            idempotency_key: key(k)?,
            account: AccountRef::User { user_id: user.to_owned() },
            service,
            destination: number(destination)?,
            amount: None,
            seconds: None,
            segments: Some(n),
            ttl_secs: Some(HOLD_TTL_SECS),
        };
        match self.charging.reserve(&request).await {
            Ok(h) => Ok(Hold { id: h.id.to_string(), unit_price: String::new() }),
            Err(ChargeError::InsufficientFunds) => {
                let quote = |segments| QuoteRequest {
                    account: AccountRef::User { user_id: user.to_owned() },
                    service,
                    destination: request.destination.clone(),
                    seconds: None,
                    segments,
                };
                let what = if service == ServiceKind::Mms { "MMS" } else { "SMS" };
                let why = match self.charging.quote(&quote(Some(n))).await {
                    Ok(q) => format!(
                        "{n} {what} cost {} {}",
                        q.amount.map(|a| a.to_string()).unwrap_or_default(),
                        q.currency
                    ),
                    Err(_) => format!("{n} {what}"),
                };
                let available = self
                    .charging
                    .quote(&quote(None))
                    .await
                    .map(|q| format!("; you have {} {}", q.available, q.currency))
                    .unwrap_or_default();
                Err(BillingError::InsufficientFunds(format!("{why}{available}")))
            }
            Err(e) => Err(map(e)),
        }
    }
}

#[async_trait]
impl Billing for Gateway {
    fn is_free(&self) -> bool {
        false
    }

    async fn quote(&self, user: &str, destination: &str, segments: u32) -> Result<Quote, BillingError> {
        let q = self
            .charging
            .quote(&QuoteRequest {
                account: AccountRef::User { user_id: user.to_owned() },
                service: ServiceKind::Sms,
                destination: number(destination)?,
                seconds: None,
                segments: Some(segments),
            })
            .await
            .map_err(map)?;
        let total = q.amount.map(|a| a.to_string()).unwrap_or_default();
        Ok(Quote { unit_price: q.per_segment.to_string(), total, currency: q.currency.to_string() })
    }

    async fn reserve(&self, user: &str, destination: &str, segments: u32, k: &str) -> Result<Hold, BillingError> {
        self.reserve_usage(ServiceKind::Sms, user, destination, segments, k).await
    }

    async fn reserve_mms(&self, user: &str, destination: &str, k: &str) -> Result<Hold, BillingError> {
        self.reserve_usage(ServiceKind::Mms, user, destination, 1, k).await
    }

    async fn settle(&self, hold: &str, segments: u32, _unit_price: &str, k: &str) -> Result<(), BillingError> {
        let request = SettleRequest {
            idempotency_key: key(k)?,
            hold: hold_id(hold)?,
            amount: None,
            seconds: None,
            segments: Some(segments),
            carrier: None,
        };
        match self.charging.settle(&request).await {
            Ok(_) | Err(ChargeError::HoldClosed(HoldState::Settled)) => Ok(()),
            Err(e @ (ChargeError::HoldExpired | ChargeError::HoldClosed(_) | ChargeError::HoldNotFound)) => {
                // Nothing to settle any more: the money went back to the user.
                tracing::error!(%hold, error = %e, "an SMS hold could not be settled; it is not charged");
                Ok(())
            }
            Err(e) => Err(map(e)),
        }
    }

    async fn release(&self, hold: &str, k: &str) -> Result<(), BillingError> {
        let request = ReleaseRequest { idempotency_key: key(k)?, hold: hold_id(hold)? };
        match self.charging.release(&request).await {
            Ok(_) | Err(ChargeError::HoldClosed(_) | ChargeError::HoldExpired | ChargeError::HoldNotFound) => Ok(()),
            Err(e) => Err(map(e)),
        }
    }
}
