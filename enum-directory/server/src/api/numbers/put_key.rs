//! `PUT /v1/numbers/{e164}/key` with `{"ed25519":"<unpadded base64>"}`: publishes the user's master
//! cross-signing key (TXT `v=tc1; mk=…`) for a number the calling provider holds. 200 with the stored record.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use tincan_enum_core::MasterKey;

use super::super::path::NumberPath;
use super::super::{ApiError, Authenticated, WriteLock, ZoneWriter, body};
use super::{KeyBody, NumberResponse, may_write};
use crate::storage::Storage;

pub(crate) async fn handler(
    State(storage): State<Arc<dyn Storage>>,
    State(zone): State<Arc<dyn ZoneWriter>>,
    State(writes): State<WriteLock>,
    Authenticated(provider): Authenticated,
    NumberPath(number): NumberPath,
    body: Body,
) -> Result<Json<NumberResponse>, ApiError> {
    let KeyBody { ed25519 } = body::json(body).await?;
    let key = MasterKey::from_base64(&ed25519)?;
    let _order = writes.lock().await;
    let mut tx = storage.begin().await?;
    let existing = tx.numbers().get(&number).await?;
    may_write(&provider, &number, existing.as_ref())?;
    let existing = existing.ok_or(ApiError::NumberNotFound)?;
    if existing.record.key == Some(key) {
        return Ok(Json(NumberResponse::new(existing, &provider.name)));
    }
    let mut record = existing.record;
    record.key = Some(key);
    let change = crate::change::put_number(&mut *tx, &*zone, &record, provider.id).await?;
    tx.commit().await?;
    let stored = change.publish(&*zone);
    Ok(Json(NumberResponse::new(stored, &provider.name)))
}
