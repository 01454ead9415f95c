//! `GET /healthz`: 200 when the database answers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use super::ApiError;
use crate::storage::Storage;

/// The health report.
#[derive(Debug, serde::Serialize)]
pub struct Health {
    status: &'static str,
    zone_version: i64,
}

pub(super) async fn handler(State(storage): State<Arc<dyn Storage>>) -> Result<Json<Health>, ApiError> {
    let mut tx = storage.begin_read().await?;
    let zone_version = tx.journal().current_version().await?;
    Ok(Json(Health { status: "ok", zone_version }))
}
