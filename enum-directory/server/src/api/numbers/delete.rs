//! `DELETE /v1/numbers/{e164}`: unregisters a number the calling provider holds; DNS stops answering it before
//! the 200. 404 when not registered, 409 when another provider holds it.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tincan_enum_core::E164;

use super::super::path::NumberPath;
use super::super::{ApiError, Authenticated, WriteLock, ZoneWriter};
use super::may_write;
use crate::storage::Storage;

/// The answer to a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResponse {
    /// The number.
    pub number: E164,
    /// Always true.
    pub deleted: bool,
    /// The zone version of the deletion.
    pub version: i64,
}

pub(crate) async fn handler(
    State(storage): State<Arc<dyn Storage>>,
    State(zone): State<Arc<dyn ZoneWriter>>,
    State(writes): State<WriteLock>,
    Authenticated(provider): Authenticated,
    NumberPath(number): NumberPath,
) -> Result<Json<DeleteResponse>, ApiError> {
    let _order = writes.lock().await;
    let mut tx = storage.begin().await?;
    let existing = tx.numbers().get(&number).await?;
    may_write(&provider, &number, existing.as_ref())?;
    if existing.is_none() {
        return Err(ApiError::NumberNotFound);
    }
    crate::change::delete_number(&mut *tx, &number, Some(provider.id)).await?;
    let version = tx.journal().current_version().await?;
    tx.commit().await?;
    zone.remove(&number);
    tracing::info!(number = %tincan_common::telemetry::redact_number(number.as_str()), provider = %provider.name,
        version, "number deleted");
    Ok(Json(DeleteResponse { number, deleted: true, version }))
}
