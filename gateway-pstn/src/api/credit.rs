//! Credit: `POST /v1/me/vouchers` (a user redeems a code; attempts rate limited per account),
//! `POST /v1/vouchers` (an operator makes a batch), and the payment webhooks `POST /v1/payments/stripe` and
//! `POST /v1/payments/generic` (see [`crate::payments`]).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRef, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::auth::{Caller, Operator};
use super::body::JsonBody;
use super::{ApiError, RateLimiter};
use crate::charging::AccountRef;
use crate::ledger::Ledger;
use crate::money::{Amount, Currency};
use crate::payments::{self, Handled, PaymentsConfig, WebhookError};
use crate::storage::{Scope, unix_ms};
use crate::vouchers::{self, VoucherError};

/// The limiter of voucher attempts, per account (apart from the per-token one).
#[derive(Debug)]
pub struct VoucherLimiter(pub RateLimiter);

/// `POST /v1/me/vouchers` body.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Redeem {
    /// The code as printed (`XXXX-XXXX-XXXX-XXXX`; case, spaces and dashes do not matter).
    pub code: String,
}

/// `POST /v1/me/vouchers` answer.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Redeemed {
    /// What was credited.
    pub credited: Amount,
    /// The balance now.
    pub balance: Amount,
}

impl From<VoucherError> for ApiError {
    fn from(e: VoucherError) -> Self {
        match e {
            VoucherError::Ledger(l) => l.into(),
            other => ApiError::Voucher(
                other.to_string(),
                match other {
                    VoucherError::Unknown => "voucher_unknown",
                    VoucherError::Used => "voucher_used",
                    VoucherError::Expired => "voucher_expired",
                    _ => "voucher_currency",
                },
            ),
        }
    }
}

#[utoipa::path(post, path = "/v1/me/vouchers", tag = "users", request_body = Redeem, responses((status = 200, body = Redeemed), (status = 404, body = crate::api::ErrorBody), (status = 409, body = crate::api::ErrorBody), (status = 429, body = crate::api::ErrorBody), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn redeem(
    State(ledger): State<Arc<Ledger>>,
    State(limiter): State<Arc<VoucherLimiter>>,
    caller: Caller,
    JsonBody(req): JsonBody<Redeem>,
) -> Result<Json<Redeemed>, ApiError> {
    if caller.0.scope != Scope::User {
        return Err(ApiError::Forbidden("a user token is required"));
    }
    let account = caller.0.account.ok_or(ApiError::Unauthorized)?;
    limiter.0.check(&format!("voucher:{account}"))?;
    if req.code.len() > 64 {
        return Err(VoucherError::Unknown.into());
    }
    let done = vouchers::redeem(&ledger, account, &req.code).await?;
    let balance = ledger.account(&AccountRef::Id { account_id: account }).await?.balance;
    Ok(Json(Redeemed { credited: done.credited, balance }))
}

/// `POST /v1/vouchers` body.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    /// A name for the batch.
    pub name: String,
    /// What each code is worth.
    pub amount: Amount,
    /// Its currency.
    pub currency: Currency,
    /// How many codes (1 to 10000).
    pub count: u32,
    /// When the codes stop working (Unix ms), if ever.
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
}

/// `POST /v1/vouchers` answer: the codes, shown only now.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Batch {
    /// The batch.
    pub batch: crate::storage::VoucherBatch,
    /// Its codes.
    pub codes: Vec<String>,
}

#[utoipa::path(post, path = "/v1/vouchers", tag = "operators", request_body = CreateBatch, responses((status = 200, body = Batch), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn create_batch(
    State(ledger): State<Arc<Ledger>>,
    _op: Operator,
    JsonBody(req): JsonBody<CreateBatch>,
) -> Result<Json<Batch>, ApiError> {
    let (batch, codes) =
        vouchers::create_batch(&ledger, &req.name, req.amount, req.currency, req.count, req.expires_at_ms).await?;
    Ok(Json(Batch { batch, codes }))
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Off => ApiError::NotFound,
            WebhookError::Signature(_) => ApiError::Webhook(e.to_string(), "bad_signature"),
            WebhookError::Event(_) => ApiError::Webhook(e.to_string(), "bad_event"),
            WebhookError::Ledger(l) => l.into(),
        }
    }
}

async fn webhook<S>(
    state: &S,
    header_name: &str,
    headers: &HeaderMap,
    body: &[u8],
    provider: &str,
) -> Result<Json<Handled>, ApiError>
where
    Arc<Ledger>: FromRef<S>,
    Arc<PaymentsConfig>: FromRef<S>,
{
    let (ledger, config) = (Arc::<Ledger>::from_ref(state), Arc::<PaymentsConfig>::from_ref(state));
    let secret = if provider == "stripe" { &config.stripe_secret } else { &config.generic_secret };
    if secret.is_empty() {
        return Err(WebhookError::Off.into());
    }
    let header =
        headers.get(header_name).and_then(|v| v.to_str().ok()).ok_or(WebhookError::Signature("no signature header"))?;
    let now = unix_ms(ledger.clock().now()) as u64 / 1000;
    payments::verify(header, body, secret.expose(), now, config.tolerance_secs)?;
    let event = if provider == "stripe" {
        match payments::stripe_event(body)? {
            Some(e) => e,
            None => {
                let id = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_owned));
                return Ok(Json(Handled { id: id.unwrap_or_default(), outcome: "ignored".into(), debt: None }));
            }
        }
    } else {
        payments::generic_event(body)?
    };
    Ok(Json(payments::apply(&ledger, provider, &event).await?))
}

#[utoipa::path(post, path = "/v1/payments/stripe", tag = "payments", request_body(content = String, content_type = "application/json"), params(("Stripe-Signature" = String, Header)), responses((status = 200, body = crate::payments::Handled), (status = 400, body = crate::api::ErrorBody), (status = 404, description = "Not configured", body = crate::api::ErrorBody)))]
pub(crate) async fn stripe<S>(
    State(state): State<S>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Handled>, ApiError>
where
    S: Send + Sync + Clone + 'static,
    Arc<Ledger>: FromRef<S>,
    Arc<PaymentsConfig>: FromRef<S>,
{
    webhook(&state, "stripe-signature", &headers, &body, "stripe").await
}

#[utoipa::path(post, path = "/v1/payments/generic", tag = "payments", request_body(content = String, content_type = "application/json"), params(("X-Tincan-Signature" = String, Header)), responses((status = 200, body = crate::payments::Handled), (status = 400, body = crate::api::ErrorBody), (status = 404, description = "Not configured", body = crate::api::ErrorBody)))]
pub(crate) async fn generic<S>(
    State(state): State<S>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Handled>, ApiError>
where
    S: Send + Sync + Clone + 'static,
    Arc<Ledger>: FromRef<S>,
    Arc<PaymentsConfig>: FromRef<S>,
{
    webhook(&state, "x-tincan-signature", &headers, &body, "generic").await
}
