//! The provider API under `/v1/` (see the crate README for every endpoint), plus `GET /healthz` and
//! `GET /metrics`. Every write is one storage transaction (nothing is written on any error); charging requests
//! go through the ledger's hold workers.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::ledger::Ledger;

mod accounts;
mod auth;
mod body;
mod error;
mod holds;
mod rate_limit;

pub use accounts::{AccountView, Adjust, Adjusted, CreateAccount};
pub use auth::Caller;
pub use error::{ApiError, ErrorBody, ErrorDetail, charge_status};
pub use rate_limit::{RateLimitConfig, RateLimiter};

/// The largest request body accepted (bigger → 400 `body_too_large`).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Everything the handlers need; each takes only the parts it uses (via [`FromRef`]).
#[derive(Clone, FromRef)]
pub struct ApiState {
    /// The ledger (and through it storage and the clock).
    pub ledger: Arc<Ledger>,
    /// Per-caller rate limits.
    pub limiter: Arc<RateLimiter>,
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
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
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
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

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}
