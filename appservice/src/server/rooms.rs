//! `GET /_matrix/app/v1/rooms/{roomAlias}`: this bridge creates no rooms from aliases, so every alias is unknown.

use super::ApiError;
use axum::extract::Path;

/// 404 `M_NOT_FOUND` for any alias (portals are made from invites and remote events).
pub(crate) async fn handler(Path(_alias): Path<String>) -> ApiError {
    ApiError::NotFound
}
