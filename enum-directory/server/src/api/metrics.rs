//! `GET /metrics`: the Prometheus text exposition (see [`crate::metrics`]). Public, like `/healthz`: bind the
//! API listener where only the operator's scraper reaches it if that matters.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::ApiError;
use crate::metrics::DirectoryMetrics;
use crate::storage::Storage;

pub(super) async fn handler(
    State(metrics): State<Arc<DirectoryMetrics>>,
    State(storage): State<Arc<dyn Storage>>,
) -> Result<impl IntoResponse, ApiError> {
    let mut tx = storage.begin_read().await?;
    let log_size = tx.log().frontier().await?.size();
    drop(tx);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render(log_size)))
}
