//! Request bodies: read up to [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES), then parsed as JSON with typed errors
//! (oversized and malformed bodies are 400s, never 413/422, so every bad input has one error shape).

use axum::body::{Body, Bytes};
use serde::de::DeserializeOwned;

use super::{ApiError, MAX_BODY_BYTES};

/// Reads the body, failing with [`ApiError::BodyTooLarge`] past the limit.
pub(super) async fn read(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| ApiError::BodyTooLarge { limit: MAX_BODY_BYTES })
}

/// Reads and parses a JSON body.
pub(super) async fn json<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = read(body).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))
}
