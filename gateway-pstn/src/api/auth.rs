//! Bearer-token authentication (tokens are stored as SHA-256 hashes) with a scope per token, then the caller's
//! rate limit. [`Service`] and [`Operator`] extract a caller of that scope (403 for another scope).

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{ApiError, RateLimiter};
use crate::ledger::Ledger;
use crate::storage::{ApiToken, Scope, TokenHash, unix_ms};

/// An authenticated caller of any scope, within its rate limit.
#[derive(Debug, Clone)]
pub struct Caller(pub ApiToken);

impl Caller {
    /// The idempotency scope and hold owner of this caller's requests.
    pub fn principal(&self) -> String {
        match self.0.scope {
            Scope::Service => format!("svc:{}", self.0.subject),
            Scope::Operator => format!("op:{}", self.0.subject),
            Scope::User => format!("user:{}", self.0.account.map_or(0, |a| a.0)),
        }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Arc<Ledger>: FromRef<S>,
    Arc<RateLimiter>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer_token(parts)?;
        let ledger = Arc::<Ledger>::from_ref(state);
        let now = unix_ms(ledger.clock().now());
        let mut tx = ledger.storage().begin_read().await?;
        let found = tx.tokens().by_hash(&TokenHash::of(token), now).await?.ok_or(ApiError::Unauthorized)?;
        drop(tx);
        Arc::<RateLimiter>::from_ref(state).check(&format!("token:{}", found.id))?;
        Ok(Caller(found))
    }
}

macro_rules! scoped {
    ($name:ident, $scope:path, $doc:literal, $why:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone)]
        pub struct $name(pub Caller);

        impl<S> FromRequestParts<S> for $name
        where
            S: Send + Sync,
            Arc<Ledger>: FromRef<S>,
            Arc<RateLimiter>: FromRef<S>,
        {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
                let caller = Caller::from_request_parts(parts, state).await?;
                if caller.0.scope == $scope { Ok($name(caller)) } else { Err(ApiError::Forbidden($why)) }
            }
        }
    };
}

scoped!(Service, Scope::Service, "A service (SMS bridge, call routing).", "a service token is required");
scoped!(Operator, Scope::Operator, "An operator.", "an operator token is required");
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
