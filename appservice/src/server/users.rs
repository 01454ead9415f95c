//! `GET /_matrix/app/v1/users/{userId}`: the homeserver asks whether a user in our namespace exists.

use super::ApiError;
use crate::BridgeHandle;
use axum::Json;
use axum::extract::{Path, State};

/// Creates the ghost when the ID names a valid remote user (200 `{}`), else 404 `M_NOT_FOUND`.
pub(crate) async fn handler(
    State(bridge): State<BridgeHandle>,
    Path(user_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = ruma::UserId::parse(&user_id).map_err(|_| ApiError::NotFound)?;
    let remote = bridge.0.namer.remote_id(&user).ok_or(ApiError::NotFound)?;
    if !bridge.0.connector.is_valid_remote_user(&remote) {
        return Err(ApiError::NotFound);
    }
    crate::bridge::ensure_ghost(&bridge, &remote).await?;
    Ok(Json(serde_json::json!({})))
}
