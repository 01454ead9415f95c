//! The error every AS API endpoint answers with: a Matrix error body with ruma's error codes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ruma::api::error::ErrorKind;

/// An AS API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `hs_token` presented.
    #[error("missing hs_token")]
    MissingToken,
    /// A wrong `hs_token`.
    #[error("wrong hs_token")]
    Forbidden,
    /// The body is not JSON.
    #[error("the body is not JSON")]
    NotJson,
    /// The body is JSON of the wrong shape.
    #[error("malformed body: {0}")]
    BadJson(String),
    /// No such user, room or third-party entity.
    #[error("not found")]
    NotFound,
    /// No such endpoint.
    #[error("unrecognized request")]
    Unrecognized,
    /// State could not be recorded; the homeserver will retry.
    #[error("storage failure")]
    Store(#[from] crate::store::StoreError),
    /// Something else failed on the bridge's side.
    #[error("bridge failure")]
    Bridge(#[from] crate::BridgeError),
}

impl ApiError {
    fn status_and_kind(&self) -> (StatusCode, ErrorKind) {
        match self {
            ApiError::MissingToken => (StatusCode::UNAUTHORIZED, ErrorKind::MissingToken),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, ErrorKind::Forbidden),
            ApiError::NotJson => (StatusCode::BAD_REQUEST, ErrorKind::NotJson),
            ApiError::BadJson(_) => (StatusCode::BAD_REQUEST, ErrorKind::BadJson),
            ApiError::NotFound => (StatusCode::NOT_FOUND, ErrorKind::NotFound),
            ApiError::Unrecognized => (StatusCode::NOT_FOUND, ErrorKind::Unrecognized),
            ApiError::Store(_) | ApiError::Bridge(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Unknown),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        if status.is_server_error() {
            tracing::error!(error = ?self, "AS API request failed");
        }
        let body = serde_json::json!({ "errcode": kind.errcode().as_str(), "error": self.to_string() });
        (status, Json(body)).into_response()
    }
}

/// Fallback for unknown routes and methods.
pub(crate) async fn unrecognized() -> ApiError {
    ApiError::Unrecognized
}
