//! Bearer-token authentication of providers (tokens are stored as SHA-256 hashes), then the provider's rate
//! limit.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{ApiError, RateLimiter};
use crate::storage::{Provider, Storage, TokenHash};

/// The provider a request comes from, authenticated and within its rate limit.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Provider);

impl<S> FromRequestParts<S> for Authenticated
where
    S: Send + Sync,
    Arc<dyn Storage>: FromRef<S>,
    Arc<RateLimiter>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer_token(parts)?;
        let storage = Arc::<dyn Storage>::from_ref(state);
        let mut tx = storage.begin_read().await?;
        let provider = tx.providers().by_token_hash(&TokenHash::of(token)).await?.ok_or(ApiError::Unauthorized)?;
        drop(tx);
        Arc::<RateLimiter>::from_ref(state).check(provider.id)?;
        Ok(Authenticated(provider))
    }
}

/// The token of an `Authorization: Bearer …` header; 401 when it is missing, empty or another scheme.
pub(crate) fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized)
}
