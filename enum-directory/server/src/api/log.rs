//! `/v1/log/…`: the transparency log (one file per operation).
//!
//! Privacy: the zone is walk-proof, so the log must not list numbers to anyone. Signed tree heads, consistency
//! proofs and inclusion proofs **by number** are public: an inclusion proof reveals a number's entry only to
//! someone who already names the number, and DNS answers that question anyway. Listing entries
//! (`/v1/log/entries`) needs a bearer token: a configured auditor token (`log.auditor_tokens`) sees every entry;
//! a provider sees in clear the entries it made and the key changes, and only the leaf hash of the others (enough
//! to check the tree, nothing to enumerate with).

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use tincan_common::Secret;

use super::{ApiError, RateLimiter};
use crate::storage::{ProviderId, Storage, TokenHash};
use crate::translog::LogError;

pub(super) mod consistency;
pub(super) mod entries;
pub(super) mod inclusion;
pub(super) mod sth;

/// The hashes of the configured auditor tokens.
#[derive(Debug, Clone, Default)]
pub struct AuditorTokens(Vec<TokenHash>);

impl AuditorTokens {
    /// From the configured tokens (empty ones are ignored).
    pub fn new(tokens: &[Secret]) -> Self {
        AuditorTokens(tokens.iter().filter(|t| !t.expose().is_empty()).map(|t| TokenHash::of(t.expose())).collect())
    }

    fn matches(&self, hash: &TokenHash) -> bool {
        // Check them all, so the time taken does not say which one matched.
        self.0.iter().fold(false, |found, h| h.matches(hash) | found)
    }
}

/// Who is reading the log's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogReader {
    /// An auditor: everything in clear.
    Auditor,
    /// A provider: its own entries in clear.
    Provider(ProviderId),
}

impl<S> FromRequestParts<S> for LogReader
where
    S: Send + Sync,
    Arc<dyn Storage>: FromRef<S>,
    Arc<RateLimiter>: FromRef<S>,
    Arc<AuditorTokens>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = super::auth::bearer_token(parts)?;
        let hash = TokenHash::of(token);
        if Arc::<AuditorTokens>::from_ref(state).matches(&hash) {
            return Ok(LogReader::Auditor);
        }
        let storage = Arc::<dyn Storage>::from_ref(state);
        let mut tx = storage.begin_read().await?;
        let provider = tx.providers().by_token_hash(&hash).await?.ok_or(ApiError::Unauthorized)?;
        drop(tx);
        Arc::<RateLimiter>::from_ref(state).check(provider.id)?;
        Ok(LogReader::Provider(provider.id))
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Storage(e) => ApiError::Storage(e),
            LogError::OutOfRange(what) => ApiError::LogRange(what),
            e @ (LogError::Random | LogError::Proof(_) | LogError::HeadMismatch { .. }) => ApiError::Log(e),
        }
    }
}

/// Parses one query parameter as a number of leaves.
fn size_param(name: &'static str, raw: Option<&String>) -> Result<Option<u64>, ApiError> {
    raw.map(|v| v.parse::<u64>().map_err(|_| ApiError::InvalidQuery(format!("{name} must be a non-negative integer"))))
        .transpose()
}
