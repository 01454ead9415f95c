//! The HTTP API: Tincan's client endpoints (`/_tincan/client/v1/…`), the Identity Service API
//! (`/_matrix/identity/…`), the appservice endpoints the homeserver calls (`/_matrix/app/v1/…`) and the
//! directory's port webhook (`/_tincan/directory/v1/ports`, [`crate::porting`]).

mod appservice;
pub mod bodies;
mod extract;
mod keys_master;
mod register_request;
pub(crate) mod register_verify;
mod unregister;

pub use extract::{ClientIp, Json, MAX_RUMA_BODY, Ruma, bearer as extract_bearer, no_parameters};

use crate::app::App;
use axum::Router;
use axum::routing::{get, post, put};
use std::sync::Arc;

/// `GET /metrics`: Prometheus text (SMS sent, limit refusals, the global SMS budget alarm).
async fn metrics(axum::extract::State(app): axum::extract::State<Arc<App>>) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.limiter.metrics())
}

/// `GET /healthz`: 200 `{"status":"ok"}` when the database answers, else 503 `{"status":"unavailable"}` (the
/// other services' probe; `GET /health` stays a liveness answer that does not touch the database).
async fn healthz(axum::extract::State(app): axum::extract::State<Arc<App>>) -> impl axum::response::IntoResponse {
    use axum::http::StatusCode;
    match app.store.ping().await {
        Ok(()) => (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"}))),
        Err(e) => {
            tracing::warn!(error = %e, "healthz: the database does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "unavailable"})))
        }
    }
}

/// The whole router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/_tincan/client/v1/register/request", post(register_request::handler))
        .route("/_tincan/client/v1/register/verify", post(register_verify::handler))
        .route("/_tincan/client/v1/keys/master", put(keys_master::handler))
        .route("/_tincan/client/v1/unregister", post(unregister::handler))
        .route("/_tincan/client/v1/account/close", post(crate::porting::old_account::close))
        .route(
            "/_tincan/client/v1/registration_lock",
            get(crate::registration_lock::status)
                .put(crate::registration_lock::set)
                .delete(crate::registration_lock::remove),
        )
        .route("/_tincan/directory/v1/ports", post(crate::porting::webhook))
        .route("/_matrix/app/v1/transactions/{txn_id}", put(appservice::transaction))
        .route("/_matrix/app/v1/users/{user_id}", get(appservice::query))
        .route("/_matrix/app/v1/rooms/{alias}", get(appservice::query))
        .merge(crate::identity::router(app.clone()))
        .merge(crate::oidc::router(app.clone()))
        .route("/health", get(|| async { "ok" }))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(app)
}
