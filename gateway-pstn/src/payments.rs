//! Payment-provider webhooks: signed payloads, verified, then credited (or refunded, or charged back) once
//! per provider event id.
//!
//! Two formats: Stripe's documented `Stripe-Signature: t=<unix>,v1=<hex>` (HMAC-SHA256 with the endpoint
//! secret over `<t>.<raw body>`, any of several `v1` may match), and a generic one for other providers or an
//! operator's own shop with the same scheme in `X-Tincan-Signature`. A timestamp outside the replay window is
//! refused like a bad signature. Refunds and chargebacks take back what the available balance covers and write
//! the rest as an explicit debt entry ([`crate::ledger::Ledger::take_back`]).

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tincan_common::Secret;

use crate::charging::{AccountId, ChargeError, IdempotencyKey};
use crate::ledger::{Ledger, LedgerError};
use crate::money::{Amount, Currency};
use crate::storage::EntryKind;

/// The webhook settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// Stripe's endpoint signing secret (`whsec_…`); empty: the Stripe webhook is off.
    pub stripe_secret: Secret,
    /// The generic webhook's shared secret; empty: it is off.
    pub generic_secret: Secret,
    /// How old (or how far ahead) a signed timestamp may be, in seconds. Default 300.
    pub tolerance_secs: u64,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig { stripe_secret: Secret::default(), generic_secret: Secret::default(), tolerance_secs: 300 }
    }
}

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The webhook is not configured.
    #[error("this webhook is not configured")]
    Off,
    /// Missing or malformed signature header, no matching signature, or a timestamp outside the window.
    #[error("bad signature: {0}")]
    Signature(&'static str),
    /// The payload is not an event this gateway understands.
    #[error("bad event: {0}")]
    Event(String),
    /// The ledger refused or failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Checks `<t>.<body>` against a `t=…,v1=…[,v1=…]` header: some `v1` must be its HMAC-SHA256 under `secret`
/// (compared in constant time) and `t` within `tolerance` seconds of `now`.
pub fn verify(header: &str, body: &[u8], secret: &str, now: u64, tolerance: u64) -> Result<(), WebhookError> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => sigs.push(hex::decode(v).map_err(|_| WebhookError::Signature("v1 is not hex"))?),
            _ => {}
        }
    }
    let t = t.ok_or(WebhookError::Signature("no timestamp"))?;
    if sigs.is_empty() {
        return Err(WebhookError::Signature("no v1 signature"));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| WebhookError::Off)?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let want = mac.finalize().into_bytes();
    if !sigs.iter().any(|s| bool::from(s.as_slice().ct_eq(want.as_slice()))) {
        return Err(WebhookError::Signature("no signature matches"));
    }
    if now.abs_diff(t) > tolerance {
        return Err(WebhookError::Signature("timestamp outside the replay window"));
    }
    Ok(())
}

/// The header value signing `body` at `t` (for tests and for shops sending the generic webhook).
pub fn sign(body: &[u8], secret: &str, t: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// What an event asks of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Movement {
    /// Credit bought.
    Payment,
    /// Credit returned to the payer.
    Refund,
    /// Credit reversed by the card issuer.
    Chargeback,
}

/// A verified event, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The provider's event id (the idempotency key).
    pub id: String,
    /// What to do.
    pub movement: Movement,
    /// Whose account.
    pub account: AccountId,
    /// How much.
    pub amount: Amount,
    /// In which currency.
    pub currency: Currency,
}

/// What a webhook did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Handled {
    /// The event id.
    pub id: String,
    /// `credited`, `taken_back` or `ignored`.
    pub outcome: String,
    /// The part written as debt, for refunds and chargebacks the balance did not cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debt: Option<Amount>,
}

/// Decimal places of a currency's minor unit as Stripe counts amounts.
fn minor_digits(c: &str) -> u32 {
    const ZERO: &[&str] = &[
        "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
    ];
    const THREE: &[&str] = &["BHD", "JOD", "KWD", "OMR", "TND"];
    if ZERO.contains(&c) {
        0
    } else if THREE.contains(&c) {
        3
    } else {
        2
    }
}

/// A Stripe event: `payment_intent.succeeded`, `checkout.session.completed` (paid), `refund.created`,
/// `charge.dispute.created`; the account is `metadata.account_id` (or a checkout session's
/// `client_reference_id`). Other types: `None` (acknowledged, ignored).
pub fn stripe_event(body: &[u8]) -> Result<Option<Event>, WebhookError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| WebhookError::Event(e.to_string()))?;
    let id = v["id"].as_str().ok_or_else(|| WebhookError::Event("no id".into()))?.to_owned();
    let o = &v["data"]["object"];
    let (movement, amount) = match v["type"].as_str().unwrap_or("") {
        "payment_intent.succeeded" => (Movement::Payment, &o["amount_received"]),
        "checkout.session.completed" if o["payment_status"] == "paid" => (Movement::Payment, &o["amount_total"]),
        "refund.created" => (Movement::Refund, &o["amount"]),
        "charge.dispute.created" => (Movement::Chargeback, &o["amount"]),
        _ => return Ok(None),
    };
    let account = o["metadata"]["account_id"]
        .as_str()
        .or_else(|| o["client_reference_id"].as_str())
        .and_then(|a| a.parse::<i64>().ok())
        .ok_or_else(|| WebhookError::Event("no metadata.account_id".into()))?;
    let currency = o["currency"].as_str().unwrap_or("").to_ascii_uppercase();
    let minor = amount.as_i64().filter(|a| *a > 0).ok_or_else(|| WebhookError::Event("no amount".into()))?;
    let currency: Currency = currency.parse().map_err(|_| WebhookError::Event("no currency".into()))?;
    let amount = Amount::from_decimal(rust_decimal::Decimal::new(minor, minor_digits(currency.as_str())))
        .map_err(|e| WebhookError::Event(e.to_string()))?;
    Ok(Some(Event { id, movement, account: AccountId(account), amount, currency }))
}

/// The generic event: `{"id","type":"payment"|"refund"|"chargeback","account_id","amount":"10.00","currency"}`.
pub fn generic_event(body: &[u8]) -> Result<Event, WebhookError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Generic {
        id: String,
        #[serde(rename = "type")]
        kind: String,
        account_id: i64,
        amount: Amount,
        currency: Currency,
    }
    let g: Generic = serde_json::from_slice(body).map_err(|e| WebhookError::Event(e.to_string()))?;
    let movement = match g.kind.as_str() {
        "payment" => Movement::Payment,
        "refund" => Movement::Refund,
        "chargeback" => Movement::Chargeback,
        other => return Err(WebhookError::Event(format!("unknown type {other:?}"))),
    };
    if !g.amount.is_positive() {
        return Err(WebhookError::Event("amount: above zero".into()));
    }
    Ok(Event { id: g.id, movement, account: AccountId(g.account_id), amount: g.amount, currency: g.currency })
}

/// Applies an event once (per `provider` and event id).
pub async fn apply(ledger: &Ledger, provider: &str, e: &Event) -> Result<Handled, WebhookError> {
    let key = IdempotencyKey::new(e.id.clone())
        .map_err(|_| WebhookError::Event("event id: 1 to 128 of A-Z a-z 0-9 - _ . :".into()))?;
    let principal = format!("payments:{provider}");
    let account = ledger
        .account(&crate::charging::AccountRef::Id { account_id: e.account })
        .await
        .map_err(|_| WebhookError::Event(format!("no account {}", e.account)))?;
    if account.currency != e.currency {
        return Err(WebhookError::Event(format!(
            "the account is in {}, the event in {}",
            account.currency, e.currency
        )));
    }
    let reference = format!("{provider} {}", e.id);
    let outcome = match e.movement {
        Movement::Payment => {
            ledger.credit(&principal, &key, e.account, e.amount, EntryKind::Payment, &reference, "payment").await?;
            Handled { id: e.id.clone(), outcome: "credited".into(), debt: None }
        }
        Movement::Refund | Movement::Chargeback => {
            let kind = if e.movement == Movement::Refund { EntryKind::Refund } else { EntryKind::Chargeback };
            let (_, debt) = ledger.take_back(&principal, &key, e.account, e.amount, kind, &reference).await?;
            Handled { id: e.id.clone(), outcome: "taken_back".into(), debt: debt.is_positive().then_some(debt) }
        }
    };
    Ok(outcome)
}

impl From<ChargeError> for WebhookError {
    fn from(e: ChargeError) -> Self {
        WebhookError::Ledger(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_in_the_window_only() {
        let body = br#"{"id":"evt_1"}"#;
        let h = sign(body, "whsec_test", 1_000_000);
        verify(&h, body, "whsec_test", 1_000_000, 300).unwrap();
        verify(&h, body, "whsec_test", 1_000_300, 300).unwrap();
        assert!(verify(&h, body, "whsec_test", 1_000_301, 300).is_err(), "too old: a replay");
        assert!(verify(&h, body, "whsec_test", 999_699, 300).is_err(), "too far ahead");
        assert!(verify(&h, body, "whsec_other", 1_000_000, 300).is_err(), "another secret");
        assert!(verify(&h, br#"{"id":"evt_2"}"#, "whsec_test", 1_000_000, 300).is_err(), "another body");
        let two = format!("{},v1={}", h.replace("v1=", "v1=00"), &h[h.find("v1=").unwrap() + 3..]);
        verify(&two, body, "whsec_test", 1_000_000, 300).expect("any v1 may match (secret rolling)");
        for bad in ["", "t=1000000", "v1=00", "t=x,v1=00", "t=1000000,v1=zz"] {
            assert!(verify(bad, body, "whsec_test", 1_000_000, 300).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stripe_events_map_to_movements_in_minor_units() {
        let e = stripe_event(br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"amount_received":1050,"currency":"eur","metadata":{"account_id":"7"}}}}"#).unwrap().unwrap();
        assert_eq!(
            (e.movement, e.account, e.amount.to_string(), e.currency.as_str()),
            (Movement::Payment, AccountId(7), "10.50".into(), "EUR")
        );
        let e = stripe_event(br#"{"id":"evt_2","type":"checkout.session.completed","data":{"object":{"payment_status":"paid","amount_total":500,"currency":"jpy","client_reference_id":"8"}}}"#).unwrap().unwrap();
        assert_eq!((e.amount.to_string(), e.account), ("500.00".into(), AccountId(8)), "JPY has no minor unit");
        let e = stripe_event(br#"{"id":"evt_3","type":"charge.dispute.created","data":{"object":{"amount":200,"currency":"usd","metadata":{"account_id":"7"}}}}"#).unwrap().unwrap();
        assert_eq!(e.movement, Movement::Chargeback);
        assert!(stripe_event(br#"{"id":"evt_4","type":"customer.created","data":{"object":{}}}"#).unwrap().is_none());
        assert!(
            stripe_event(
                br#"{"id":"evt_5","type":"checkout.session.completed","data":{"object":{"payment_status":"unpaid"}}}"#
            )
            .unwrap()
            .is_none()
        );
        assert!(
            stripe_event(br#"{"id":"evt_6","type":"refund.created","data":{"object":{"amount":1,"currency":"eur"}}}"#)
                .is_err(),
            "no account"
        );
    }
}
