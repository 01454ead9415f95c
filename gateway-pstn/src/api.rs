//! The provider API under `/v1/` (see the crate README for every endpoint), plus `GET /healthz` and
//! `GET /metrics`. Every write is one storage transaction (nothing is written on any error); charging requests
//! go through the ledger's hold workers.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};

use crate::ledger::Ledger;

pub(crate) mod accounts;
mod auth;
mod body;
pub(crate) mod calls;
pub(crate) mod credit;
mod error;
pub(crate) mod holds;
pub(crate) mod me;
mod query;
mod rate_limit;
pub(crate) mod rates;

pub use accounts::{AccountView, Adjust, Adjusted, CreateAccount, SetPlan};
pub use auth::Caller;
pub use calls::CallPage;
pub use credit::{Batch, CreateBatch, Redeem, Redeemed, VoucherLimiter};
pub use error::{ApiError, ErrorBody, ErrorDetail, charge_status};
pub use me::{Cdr, CdrPage, HistoryPage, HomeserverConfig, OpenIdToken, Session, UserAuth};
pub use rate_limit::{RateLimitConfig, RateLimiter};
pub use rates::{Imported, Routes};

/// The largest request body accepted (bigger → 400 `body_too_large`).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Everything the handlers need; each takes only the parts it uses (via [`FromRef`]).
#[derive(Clone, FromRef)]
pub struct ApiState {
    /// The ledger (and through it storage and the clock).
    pub ledger: Arc<Ledger>,
    /// Per-caller rate limits.
    pub limiter: Arc<RateLimiter>,
    /// User sign-in through the homeserver.
    pub auth: Arc<UserAuth>,
    /// Voucher attempts per account.
    pub vouchers: Arc<VoucherLimiter>,
    /// The payment webhooks' secrets.
    pub payments: Arc<crate::payments::PaymentsConfig>,
    /// The largest rate deck `PUT /v1/plans/{plan}/rates` takes.
    pub deck_limit: DeckLimit,
}

/// The largest rate deck accepted, in bytes (`api.max_deck_bytes`; bigger → 413 `deck_too_large`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeckLimit(pub usize);

impl Default for DeckLimit {
    fn default() -> Self {
        DeckLimit(DEFAULT_MAX_DECK_BYTES)
    }
}

/// `api.max_deck_bytes` by default: 8 MiB (some 150,000 prefixes).
pub const DEFAULT_MAX_DECK_BYTES: usize = 8 * 1024 * 1024;

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/v1/quote", post(holds::quote))
        .route("/v1/holds", post(holds::reserve))
        .route("/v1/holds/{id}", get(holds::get))
        .route("/v1/holds/{id}/extend", post(holds::extend))
        .route("/v1/holds/{id}/settle", post(holds::settle))
        .route("/v1/holds/{id}/release", post(holds::release))
        .route("/v1/accounts", post(accounts::create))
        .route("/v1/accounts/{id}", get(accounts::get))
        .route("/v1/accounts/{id}/adjustments", post(accounts::adjust))
        .route("/v1/accounts/{id}/limits", put(accounts::set_limits))
        .route("/v1/accounts/{id}/plan", put(accounts::set_plan))
        .route("/v1/accounts/{id}/history", get(me::history))
        .route("/v1/accounts/{id}/cdrs", get(me::cdrs))
        .route("/v1/accounts/{id}/calls", get(calls::calls))
        .route("/v1/auth/openid", post(me::openid::<ApiState>))
        .route("/v1/me", get(me::me))
        .route("/v1/me/history", get(me::my_history))
        .route("/v1/me/cdrs", get(me::my_cdrs))
        .route("/v1/me/calls", get(calls::my_calls))
        .route("/v1/me/vouchers", post(credit::redeem))
        .route("/v1/vouchers", post(credit::create_batch))
        .route("/v1/payments/stripe", post(credit::stripe::<ApiState>))
        .route("/v1/payments/generic", post(credit::generic::<ApiState>))
        .route("/v1/rates/{number}", get(rates::rate))
        .route("/v1/routes/{number}", get(rates::routes))
        // The deck is read against its own limit (a 413 with the error body), not axum's default one.
        .route(
            "/v1/plans/{plan}/rates",
            get(rates::export).put(rates::import).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}

/// `GET /v1/openapi.json`: the API's OpenAPI document, generated from the code.
async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::document())
}

/// `GET /healthz`: 200 when the database answers.
async fn healthz(State(ledger): State<Arc<Ledger>>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let mut tx = ledger.storage().begin_read().await?;
    tx.accounts().get(crate::charging::AccountId(0)).await?;
    Ok(axum::Json(serde_json::json!({"status": "ok"})))
}

/// `GET /metrics`: the Prometheus text exposition (see [`crate::metrics`]).
async fn metrics(State(ledger): State<Arc<Ledger>>) -> Result<impl IntoResponse, ApiError> {
    let mut tx = ledger.storage().begin_read().await?;
    let open = tx.holds().open_total().await?;
    drop(tx);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], ledger.metrics().render(Some(open))))
}

/// Serves `app` (the API's [`router`], and the portal's when it is on) on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
