//! `POST /_matrix/app/v1/ping`: the homeserver checks that it reaches the bridge.

use super::ApiError;
use axum::Json;
use axum::body::Bytes;

/// Answers `{}` to an authenticated ping (the body, `{"transaction_id": …}`, needs no handling).
pub(crate) async fn handler(body: Bytes) -> Result<Json<serde_json::Value>, ApiError> {
    if !body.is_empty() {
        serde_json::from_slice::<serde_json::Value>(&body).map_err(|_| ApiError::NotJson)?;
    }
    Ok(Json(serde_json::json!({})))
}
