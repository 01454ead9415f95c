//! `GET /v1/numbers/{e164}`: the stored record of a number (any authenticated provider may read; DNS publishes
//! the same data anyway). 404 `number_not_found` when it is not registered.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use super::super::path::NumberPath;
use super::super::{ApiError, Authenticated};
use super::NumberResponse;
use crate::storage::Storage;

pub(crate) async fn handler(
    State(storage): State<Arc<dyn Storage>>,
    Authenticated(_provider): Authenticated,
    NumberPath(number): NumberPath,
) -> Result<Json<NumberResponse>, ApiError> {
    let mut tx = storage.begin_read().await?;
    let stored = tx.numbers().get(&number).await?.ok_or(ApiError::NumberNotFound)?;
    let holder = tx.providers().by_id(stored.provider).await?.map(|p| p.name).unwrap_or_default();
    Ok(Json(NumberResponse::new(stored, &holder)))
}
