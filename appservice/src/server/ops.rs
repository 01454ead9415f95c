//! `GET /metrics` (Prometheus text) and `GET /healthz` (the store answers).

use crate::BridgeHandle;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

/// `GET /metrics`.
pub(crate) async fn metrics(State(bridge): State<BridgeHandle>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], bridge.0.metrics.render())
}

/// `GET /healthz`: 200 when the store answers, 503 otherwise.
pub(crate) async fn healthz(State(bridge): State<BridgeHandle>) -> impl IntoResponse {
    match bridge.0.store.pending_count().await {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable"),
    }
}
