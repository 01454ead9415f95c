//! `GET /v1/log/entries?start=S&end=E`: leaves S..E (at most [`MAX_ENTRIES`] per call; `end` defaults to the
//! current size). Needs a bearer token (see [`super`] for who sees what in clear).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use tincan_translog::LogEntry;
use tincan_translog::wire::{Entries, LoggedEntry};

use super::super::ApiError;
use super::{LogReader, size_param};
use crate::translog::TransLog;

/// The most entries one call returns.
pub const MAX_ENTRIES: u32 = 1000;

pub(crate) async fn handler(
    State(log): State<Arc<TransLog>>,
    reader: LogReader,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Entries>, ApiError> {
    let start = size_param("start", params.get("start"))?.unwrap_or(0);
    let end = match size_param("end", params.get("end"))? {
        Some(end) => end,
        None => log.sth().await?.head.tree_size,
    };
    let leaves = log.leaves(start, end, MAX_ENTRIES).await?;
    let entries = leaves
        .into_iter()
        .map(|leaf| {
            let visible = match reader {
                LogReader::Auditor => true,
                LogReader::Provider(id) => match LogEntry::parse(&leaf.entry) {
                    Ok(LogEntry::Number { provider, .. }) => provider == Some(id.0),
                    // Both providers of a port see it.
                    Ok(LogEntry::Port { from, to, .. }) => from.provider == id.0 || to.provider == id.0,
                    Ok(LogEntry::Key { .. }) => true,
                    Err(_) => false,
                },
            };
            LoggedEntry { index: leaf.index, leaf_hash: leaf.leaf_hash, entry: visible.then_some(leaf.entry) }
        })
        .collect();
    Ok(Json(Entries { entries }))
}
