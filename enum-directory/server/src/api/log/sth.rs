//! `GET /v1/log/sth`: the current signed tree head and the log's public key (public).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use tincan_translog::wire::SthResponse;

use super::super::{ApiError, PublicClient};
use crate::translog::TransLog;

pub(crate) async fn handler(
    _client: PublicClient,
    State(log): State<Arc<TransLog>>,
) -> Result<Json<SthResponse>, ApiError> {
    Ok(Json(SthResponse { sth: log.sth().await?, log_key: log.public_key() }))
}
