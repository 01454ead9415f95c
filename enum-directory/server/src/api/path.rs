//! The `{e164}` path segment, parsed into a number (canonical E.164 only).

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use tincan_enum_core::E164;

use super::ApiError;

/// The number named by the path, exactly in E.164 form (`+442079460001`, no separators).
#[derive(Debug, Clone)]
pub struct NumberPath(pub E164);

impl<S: Send + Sync> FromRequestParts<S> for NumberPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::InvalidNumber(e.body_text()))?;
        Ok(NumberPath(canonical_number(&raw)?))
    }
}

/// A number exactly in E.164 form. Separators are accepted by the parser for humans; the API (and an import
/// file) must name a number one way only.
pub(crate) fn canonical_number(raw: &str) -> Result<E164, ApiError> {
    let number = E164::parse(raw).map_err(|e| ApiError::InvalidNumber(e.to_string()))?;
    if number.as_str() != raw {
        return Err(ApiError::InvalidNumber(format!("write it as {number}")));
    }
    Ok(number)
}
