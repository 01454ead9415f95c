//! `GET /v1/log/proof/consistency?from=N&to=M`: the proof that the tree of N leaves is a prefix of the tree of
//! M leaves, with both roots (public). `to` defaults to the current size.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use tincan_translog::wire::ConsistencyProof;

use super::super::{ApiError, PublicClient};
use super::size_param;
use crate::translog::TransLog;

pub(crate) async fn handler(
    _client: PublicClient,
    State(log): State<Arc<TransLog>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let from =
        size_param("from", params.get("from"))?.ok_or_else(|| ApiError::InvalidQuery("from is required".into()))?;
    let to = match size_param("to", params.get("to"))? {
        Some(to) => to,
        None => log.sth().await?.head.tree_size,
    };
    Ok(Json(log.consistency(from, to).await?))
}
