//! [`GatewayClient`]: the charging interface over HTTP, for services in other processes (the SMS bridge, the
//! call routing). It speaks the `/v1/quote` and `/v1/holds…` endpoints with a service token and maps the API's
//! typed errors back to [`ChargeError`]; a transport failure or a 5xx is [`ChargeError::Unavailable`], after
//! which the caller repeats the same request (same idempotency key) — the gateway answers a repeat with the
//! first answer.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::ErrorBody;
use crate::charging::{
    ChargeError, Charging, ExtendRequest, Hold, HoldId, HoldState, Quote, QuoteRequest, ReleaseRequest, ReserveRequest,
    SettleRequest, Settlement,
};

/// A client of the gateway's charging API.
#[derive(Debug, Clone)]
pub struct GatewayClient {
    http: reqwest::Client,
    base: url::Url,
    token: String,
}

impl GatewayClient {
    /// A client of the gateway at `base` (`http://127.0.0.1:8095`) with a service token; requests time out
    /// after 10 s.
    pub fn new(base: &str, token: impl Into<String>) -> Result<GatewayClient, ChargeError> {
        let base = url::Url::parse(base).map_err(|e| ChargeError::Invalid(format!("gateway URL: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ChargeError::Unavailable(e.to_string()))?;
        Ok(GatewayClient { http, base, token: token.into() })
    }

    /// A hold of this service.
    pub async fn hold(&self, id: HoldId) -> Result<Hold, ChargeError> {
        self.call::<(), _>(Method::GET, &format!("v1/holds/{id}"), None).await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ChargeError> {
        let url = self.base.join(path).map_err(|e| ChargeError::Invalid(e.to_string()))?;
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| ChargeError::Unavailable(e.to_string()))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ChargeError::Unavailable(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ChargeError::Unavailable(format!("bad answer: {e}")));
        }
        let detail = serde_json::from_slice::<ErrorBody>(&bytes).ok().map(|b| b.error);
        Err(match detail {
            Some(d) => from_code(status, &d.code, d.message),
            None => ChargeError::Unavailable(format!("HTTP {status}")),
        })
    }
}

/// The [`ChargeError`] an API error code stands for.
fn from_code(status: StatusCode, code: &str, message: String) -> ChargeError {
    let after_colon = || message.split_once(": ").map_or(message.clone(), |(_, m)| m.to_owned());
    match code {
        "account_not_found" => ChargeError::AccountNotFound,
        "account_disabled" => ChargeError::AccountDisabled,
        "hold_not_found" => ChargeError::HoldNotFound,
        "insufficient_funds" => ChargeError::InsufficientFunds,
        "hold_closed" => {
            let state = message.rsplit(' ').next().and_then(HoldState::parse).unwrap_or(HoldState::Released);
            ChargeError::HoldClosed(state)
        }
        "hold_expired" => ChargeError::HoldExpired,
        "exceeds_hold" => ChargeError::ExceedsHold,
        "idempotency_conflict" => ChargeError::IdempotencyConflict,
        "no_rate" => ChargeError::NoRate,
        "destination_blocked" => ChargeError::DestinationBlocked(after_colon()),
        "limit_exceeded" => ChargeError::LimitExceeded(after_colon()),
        "unauthorized" | "forbidden" => ChargeError::Unauthorized(message),
        "rate_limited" => ChargeError::Unavailable(message),
        "run_taken_over" => ChargeError::RunTakenOver,
        "call_elsewhere" => ChargeError::CallElsewhere,
        _ if status.is_server_error() => ChargeError::Unavailable(message),
        _ => ChargeError::Invalid(message),
    }
}

#[async_trait::async_trait]
impl Charging for GatewayClient {
    async fn quote(&self, req: &QuoteRequest) -> Result<Quote, ChargeError> {
        self.call(Method::POST, "v1/quote", Some(req)).await
    }

    async fn reserve(&self, req: &ReserveRequest) -> Result<Hold, ChargeError> {
        self.call(Method::POST, "v1/holds", Some(req)).await
    }

    async fn extend(&self, req: &ExtendRequest) -> Result<Hold, ChargeError> {
        self.call(Method::POST, &format!("v1/holds/{}/extend", req.hold), Some(req)).await
    }

    async fn settle(&self, req: &SettleRequest) -> Result<Settlement, ChargeError> {
        self.call(Method::POST, &format!("v1/holds/{}/settle", req.hold), Some(req)).await
    }

    async fn release(&self, req: &ReleaseRequest) -> Result<Hold, ChargeError> {
        self.call(Method::POST, &format!("v1/holds/{}/release", req.hold), Some(req)).await
    }
}
