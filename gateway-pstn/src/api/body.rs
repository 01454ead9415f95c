//! JSON request bodies: read up to [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES), then parsed with typed errors
//! (oversized and malformed bodies are 400s, never 413/422, so every bad input has one error shape).

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::{ApiError, MAX_BODY_BYTES};

/// A JSON body parsed into `T`.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::BodyTooLarge { limit: MAX_BODY_BYTES })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| ApiError::InvalidJson(e.to_string()))
    }
}
