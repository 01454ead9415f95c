//! `GET /v1/log/proof/inclusion?number=+…[&version=N]`: the newest entry of the number (or the one of zone
//! version N) and its audit path to the current signed tree head (public: the caller must know the number).
//! 404 `log_entry_not_found` when the log has no such entry.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use tincan_enum_core::E164;
use tincan_translog::wire::InclusionProof;

use super::super::{ApiError, PublicClient};
use crate::translog::TransLog;

pub(crate) async fn handler(
    _client: PublicClient,
    State(log): State<Arc<TransLog>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<InclusionProof>, ApiError> {
    let raw = params.get("number").ok_or_else(|| ApiError::InvalidQuery("number is required".into()))?;
    let number = E164::parse(raw).map_err(|e| ApiError::InvalidNumber(e.to_string()))?;
    let version = params
        .get("version")
        .map(|v| v.parse::<i64>().map_err(|_| ApiError::InvalidQuery("version must be an integer".into())))
        .transpose()?;
    log.inclusion(&number, version).await?.map(Json).ok_or(ApiError::LogEntryNotFound)
}
