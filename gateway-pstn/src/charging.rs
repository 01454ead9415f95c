//! The charging interface services call: **quote → reserve → extend* → settle | release**.
//!
//! The SMS bridge and the PSTN call routing charge a user's prepaid balance through this interface, either in
//! process ([`crate::ledger::Ledger::charging`]) or over HTTP ([`crate::client::GatewayClient`], the
//! `/v1/quote` and `/v1/holds…` endpoints); both implement [`Charging`] with the same types and errors. The
//! crate's README describes the flow and the rules; in short:
//!
//! - [`Charging::quote`] prices a destination for a service and says how much the account can afford (the
//!   maximum call duration or SMS segments for its available balance).
//! - [`Charging::reserve`] holds an amount — explicit, or the price of the usage asked for — with one
//!   conditional statement (available = balance − open holds ≥ amount), or fails with
//!   [`ChargeError::InsufficientFunds`]. The hold expires at `expires_at_ms` unless extended or closed; an
//!   expired hold releases itself.
//! - [`Charging::extend`] holds more and/or for longer (a call going on), under the same condition.
//! - [`Charging::settle`] charges the actual amount (≤ held; the rest is released) and records the call detail.
//! - [`Charging::release`] gives the whole hold back (the call failed, the SMS was refused).
//!
//! Every write carries an idempotency key (scoped to the caller): repeating a request with the same key
//! returns the first answer and changes nothing, so a caller that crashed or timed out just sends it again.
//! The same key with a different request is [`ChargeError::IdempotencyConflict`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tincan_enum_core::E164;

use crate::money::{Amount, Currency};

/// An account's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(pub i64);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which account a request is about: a Matrix user's (the phone identity the sign-up extension created) or
/// an account by id (business accounts operators created).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum AccountRef {
    /// `{"user_id": "@alice:hs.example"}`.
    User {
        /// The Matrix user ID.
        user_id: String,
    },
    /// `{"account_id": 12}`.
    Id {
        /// The account id.
        account_id: AccountId,
    },
}

/// What is being charged for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// A call to the phone network, rated per minute with billing increments.
    Voice,
    /// An SMS, rated per segment.
    Sms,
    /// An MMS (a picture message through a carrier's API), rated per message; `segments` counts messages.
    Mms,
}

impl ServiceKind {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Voice => "voice",
            ServiceKind::Sms => "sms",
            ServiceKind::Mms => "mms",
        }
    }
}

impl FromStr for ServiceKind {
    type Err = ChargeError;
    fn from_str(s: &str) -> Result<Self, ChargeError> {
        match s {
            "voice" => Ok(ServiceKind::Voice),
            "sms" => Ok(ServiceKind::Sms),
            "mms" => Ok(ServiceKind::Mms),
            _ => Err(ChargeError::Invalid(format!("unknown service {s:?}: voice, sms or mms"))),
        }
    }
}

/// A caller-chosen key that makes a write safe to repeat: 1 to 128 characters of `A-Z a-z 0-9 - _ . :`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks a key.
    pub fn new(key: impl Into<String>) -> Result<Self, ChargeError> {
        let key = key.into();
        let ok = (1..=128).contains(&key.len())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if ok {
            Ok(IdempotencyKey(key))
        } else {
            Err(ChargeError::Invalid("an idempotency key is 1 to 128 characters of A-Z a-z 0-9 - _ . :".into()))
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for IdempotencyKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IdempotencyKey::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A hold's id: opaque to callers (`h_<account>_<n>`); it names the account so a request for it is routed
/// without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HoldId {
    /// The account holding it.
    pub account: AccountId,
    /// Its row.
    pub seq: i64,
}

impl fmt::Display for HoldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "h_{}_{}", self.account.0, self.seq)
    }
}

impl FromStr for HoldId {
    type Err = ChargeError;
    fn from_str(s: &str) -> Result<Self, ChargeError> {
        let bad = || ChargeError::Invalid(format!("not a hold id: {:?}", s.chars().take(40).collect::<String>()));
        let rest = s.strip_prefix("h_").ok_or_else(bad)?;
        let (a, n) = rest.split_once('_').ok_or_else(bad)?;
        let digits = |x: &str| !x.is_empty() && x.len() <= 18 && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(a) || !digits(n) {
            return Err(bad());
        }
        Ok(HoldId { account: AccountId(a.parse().map_err(|_| bad())?), seq: n.parse().map_err(|_| bad())? })
    }
}

impl Serialize for HoldId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HoldId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a hold is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HoldState {
    /// Holding money.
    Open,
    /// Charged (part of) its amount; the rest went back.
    Settled,
    /// Given back whole by the service.
    Released,
    /// Given back whole because it was not extended or closed in time.
    Expired,
}

impl HoldState {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Open => "open",
            HoldState::Settled => "settled",
            HoldState::Released => "released",
            HoldState::Expired => "expired",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<HoldState> {
        Some(match s {
            "open" => HoldState::Open,
            "settled" => HoldState::Settled,
            "released" => HoldState::Released,
            "expired" => HoldState::Expired,
            _ => return None,
        })
    }
}

/// `POST /v1/quote`: the price of a destination and what the account can afford.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// Whose balance and price plan.
    pub account: AccountRef,
    /// Voice or SMS.
    pub service: ServiceKind,
    /// The number called or texted.
    #[schema(value_type = String, example = "+4930123456")]
    pub destination: E164,
    /// Voice: price this many seconds as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
    /// SMS: price this many segments as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<u32>,
}

/// A price and what the account's available balance affords at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Quote {
    /// The account's currency.
    pub currency: Currency,
    /// The rate deck prefix that matched (longest prefix).
    pub prefix: String,
    /// The matched destination's name (`Germany mobile`).
    pub description: String,
    /// Voice: charged once when a call is answered.
    pub connect_fee: Amount,
    /// Voice: the price of a minute.
    pub per_minute: Amount,
    /// Voice: the first billed increment in seconds (`60` of 60/60).
    pub first_increment: u32,
    /// Voice: each later increment in seconds (`6` of 30/6).
    pub next_increment: u32,
    /// SMS: the price of one segment.
    pub per_segment: Amount,
    /// MMS: the price of one message (0 where the prefix has no MMS price; `amount`/`max_segments` tell).
    #[serde(default)]
    pub per_mms: Amount,
    /// The price of the `seconds` or `segments` asked for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    /// Balance minus open holds.
    pub available: Amount,
    /// Voice: the longest call the available balance pays for (0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<u32>,
    /// SMS: how many segments the available balance pays for; MMS: how many messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_segments: Option<u32>,
}

/// `POST /v1/holds`: reserve an amount on an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveRequest {
    /// Makes the request safe to repeat.
    pub idempotency_key: IdempotencyKey,
    /// Whose balance.
    pub account: AccountRef,
    /// Voice or SMS.
    pub service: ServiceKind,
    /// The number called or texted.
    #[schema(value_type = String, example = "+4930123456")]
    pub destination: E164,
    /// The amount to hold, in the account's currency; or leave it out and give `seconds`/`segments` to hold
    /// their price at the account's rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    /// Voice: hold the price of this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
    /// SMS: hold the price of this many segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<u32>,
    /// Seconds until the hold expires unless extended (default 120, at most 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u32>,
}

/// `POST /v1/holds/{id}/extend`: hold more, for longer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// Makes the request safe to repeat.
    pub idempotency_key: IdempotencyKey,
    /// The hold.
    #[serde(skip_serializing, default = "placeholder_hold")]
    #[schema(ignore)]
    pub hold: HoldId,
    /// Hold this much more (may be zero: only move the expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    /// Voice: hold the price of this many more seconds (at the rate of the hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
    /// Seconds from now until the hold expires (default 120, at most 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u32>,
}

/// `POST /v1/holds/{id}/settle`: charge what was used; the rest of the hold goes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettleRequest {
    /// Makes the request safe to repeat.
    pub idempotency_key: IdempotencyKey,
    /// The hold.
    #[serde(skip_serializing, default = "placeholder_hold")]
    #[schema(ignore)]
    pub hold: HoldId,
    /// The amount to charge (≤ held); or leave it out and give the usage to charge its price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    /// Voice: the call's billable seconds (from answer to hang-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
    /// SMS: the segments sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<u32>,
    /// The carrier that carried it (recorded in the call detail record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
}

/// `POST /v1/holds/{id}/release`: give the whole hold back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// Makes the request safe to repeat.
    pub idempotency_key: IdempotencyKey,
    /// The hold.
    #[serde(skip_serializing, default = "placeholder_hold")]
    #[schema(ignore)]
    pub hold: HoldId,
}

/// The hold id of a request body: the path names it, so the body leaves it out.
fn placeholder_hold() -> HoldId {
    HoldId { account: AccountId(0), seq: 0 }
}

/// A reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Hold {
    /// Its id.
    pub id: HoldId,
    /// The account it holds money of.
    pub account_id: AccountId,
    /// The account's currency.
    pub currency: Currency,
    /// What it holds now (after extensions).
    pub amount: Amount,
    /// Open, settled, released or expired.
    pub state: HoldState,
    /// Voice or SMS.
    pub service: ServiceKind,
    /// The number called or texted.
    #[schema(value_type = String, example = "+4930123456")]
    pub destination: E164,
    /// When it was made (Unix milliseconds).
    pub created_at_ms: i64,
    /// When it expires unless extended or closed (Unix milliseconds).
    pub expires_at_ms: i64,
    /// What was charged, once settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charged: Option<Amount>,
}

/// The answer to a settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Settlement {
    /// The hold, now settled.
    pub hold: Hold,
    /// What was charged.
    pub charged: Amount,
    /// What went back to the available balance.
    pub released: Amount,
}

/// Why a charging request failed. Every variant has a stable [`ChargeError::code`] that the HTTP API sends
/// and [`crate::client::GatewayClient`] maps back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChargeError {
    /// The request is malformed (400 `invalid_request`).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No such account (404 `account_not_found`).
    #[error("no such account")]
    AccountNotFound,
    /// The account is closed or suspended (403 `account_disabled`).
    #[error("the account is disabled")]
    AccountDisabled,
    /// No such hold, or not one of this caller's (404 `hold_not_found`).
    #[error("no such hold")]
    HoldNotFound,
    /// Available balance below the amount (402 `insufficient_funds`).
    #[error("insufficient funds")]
    InsufficientFunds,
    /// The hold was already settled, released or expired (409 `hold_closed`).
    #[error("the hold is already {}", .0.as_str())]
    HoldClosed(HoldState),
    /// The hold's expiry passed before this request (409 `hold_expired`).
    #[error("the hold expired")]
    HoldExpired,
    /// Settling more than is held (409 `exceeds_hold`).
    #[error("the amount exceeds the hold")]
    ExceedsHold,
    /// The same idempotency key came with a different request (409 `idempotency_conflict`).
    #[error("this idempotency key was used for a different request")]
    IdempotencyConflict,
    /// No rate covers the destination for the service (404 `no_rate`).
    #[error("no rate for this destination")]
    NoRate,
    /// The destination is blocked for the account or needs an opt-in it lacks (403 `destination_blocked`).
    #[error("destination blocked: {0}")]
    DestinationBlocked(String),
    /// A fraud limit (concurrent holds, spend per hour or day) stops it (429 `limit_exceeded`).
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The caller may not do this (401/403 from the HTTP API).
    #[error("not authorised: {0}")]
    Unauthorized(String),
    /// The service could not be reached or failed; repeat the request with the same idempotency key.
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
    /// A call's first hold was asked for by a gateway process that another node has taken over (it was
    /// silent past `calls.takeover_after_secs`): it may start no call, nothing was held (503 `run_taken_over`;
    /// only the gateway's own calls meet it).
    #[error("this gateway process was taken over by another node; restart it")]
    RunTakenOver,
    /// A call's first hold was asked for an INVITE whose SIP dialog (Call-ID and From tag) another call has
    /// taken: the same INVITE offered twice, as a proxy does when it fails over from a gateway node that was
    /// slow to answer. Nothing was held: the other call carries it (409 `call_elsewhere`; only the gateway's own
    /// calls meet it).
    #[error("this call is carried by another call of the same SIP dialog")]
    CallElsewhere,
}

impl ChargeError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ChargeError::Invalid(_) => "invalid_request",
            ChargeError::AccountNotFound => "account_not_found",
            ChargeError::AccountDisabled => "account_disabled",
            ChargeError::HoldNotFound => "hold_not_found",
            ChargeError::InsufficientFunds => "insufficient_funds",
            ChargeError::HoldClosed(_) => "hold_closed",
            ChargeError::HoldExpired => "hold_expired",
            ChargeError::ExceedsHold => "exceeds_hold",
            ChargeError::IdempotencyConflict => "idempotency_conflict",
            ChargeError::NoRate => "no_rate",
            ChargeError::DestinationBlocked(_) => "destination_blocked",
            ChargeError::LimitExceeded(_) => "limit_exceeded",
            ChargeError::Unauthorized(_) => "unauthorized",
            ChargeError::Unavailable(_) => "unavailable",
            ChargeError::RunTakenOver => "run_taken_over",
            ChargeError::CallElsewhere => "call_elsewhere",
        }
    }

    /// Whether repeating the same request (same idempotency key) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ChargeError::Unavailable(_))
    }
}

/// The charging interface: implemented in process by [`crate::ledger::LocalCharging`] and over HTTP by
/// [`crate::client::GatewayClient`].
#[async_trait::async_trait]
pub trait Charging: Send + Sync {
    /// Prices a destination and says what the account affords.
    async fn quote(&self, req: &QuoteRequest) -> Result<Quote, ChargeError>;
    /// Holds money, or fails with [`ChargeError::InsufficientFunds`].
    async fn reserve(&self, req: &ReserveRequest) -> Result<Hold, ChargeError>;
    /// Holds more and/or for longer.
    async fn extend(&self, req: &ExtendRequest) -> Result<Hold, ChargeError>;
    /// Charges what was used; the rest goes back.
    async fn settle(&self, req: &SettleRequest) -> Result<Settlement, ChargeError>;
    /// Gives the whole hold back.
    async fn release(&self, req: &ReleaseRequest) -> Result<Hold, ChargeError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_ids_round_trip_and_reject_junk() {
        let id = HoldId { account: AccountId(12), seq: 345 };
        assert_eq!(id.to_string(), "h_12_345");
        assert_eq!("h_12_345".parse::<HoldId>().unwrap(), id);
        for bad in ["", "h_", "h_1", "h_1_", "h__1", "x_1_2", "h_1_2_3", "h_-1_2", "h_1_2x", "h_1234567890123456789_1"]
        {
            assert!(bad.parse::<HoldId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn idempotency_keys_are_bounded() {
        assert!(IdempotencyKey::new("call-42:settle.1_x").is_ok());
        assert!(IdempotencyKey::new("").is_err());
        assert!(IdempotencyKey::new("a b").is_err());
        assert!(IdempotencyKey::new("x".repeat(129)).is_err());
        assert!(serde_json::from_str::<IdempotencyKey>("\"ä\"").is_err());
    }

    #[test]
    fn account_refs_parse_both_forms() {
        let u: AccountRef = serde_json::from_str(r#"{"user_id":"@a:hs"}"#).unwrap();
        assert_eq!(u, AccountRef::User { user_id: "@a:hs".into() });
        let i: AccountRef = serde_json::from_str(r#"{"account_id":7}"#).unwrap();
        assert_eq!(i, AccountRef::Id { account_id: AccountId(7) });
    }
}
