//! `GET /v1/numbers?after=<e164>&limit=N`: every registered number (any provider's) with the zone version of
//! its last change, in pages ordered by number.
//!
//! This is for **trusted providers' contact discovery**: a provider's identity server (the homeserver
//! extension) keeps a mirror of the directory so that it can answer hashed Identity Service lookups for
//! numbers other providers registered, then resolves each hit through DNSSEC-validated DNS. Providers are
//! trusted parties of the directory; the public, by contrast, only gets DNS, and the zone answers with compact
//! denial of existence (RFC 9824) precisely so that it need not be walkable: the list of numbers is given to
//! authenticated providers here, never to anyone through DNS.
//!
//! - `after`: the cursor, exclusive — the last number of the previous page (`next` of its answer); absent for
//!   the first page. Percent-encode the `+` (`%2B`); a bare-digit cursor is read as `+digits`.
//! - `limit`: page size, 1 to [`MAX_LIMIT`] (default [`DEFAULT_LIMIT`]).
//!
//! Answer: `{"numbers": [{"number": "+44…", "version": 7}, …], "next": "+44…" | null}`; `next` is null on
//! the last page. Deleted numbers are simply absent. A client detects changes by comparing versions.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use tincan_enum_core::E164;

use super::{ApiError, Authenticated};
use crate::storage::Storage;

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 500;
/// The largest page.
pub const MAX_LIMIT: u32 = 1000;

/// The query string.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<u32>,
}

/// One registered number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// The number.
    pub number: E164,
    /// The zone version of its last change.
    pub version: i64,
}

/// One page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse {
    /// The numbers of this page, ordered.
    pub numbers: Vec<Listed>,
    /// The cursor for the next page; `None` on the last one.
    pub next: Option<E164>,
}

pub(crate) async fn handler(
    State(storage): State<Arc<dyn Storage>>,
    Authenticated(_provider): Authenticated,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ListResponse>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let after = match q.after.as_deref().map(str::trim) {
        None | Some("") => None,
        // A `+` that was not percent-encoded arrives as a space (trimmed above).
        Some(raw) => {
            let raw = if raw.starts_with('+') { raw.to_owned() } else { format!("+{raw}") };
            Some(E164::parse(&raw).map_err(|e| ApiError::InvalidNumber(e.to_string()))?)
        }
    };
    let mut tx = storage.begin_read().await?;
    let page = tx.numbers().page(after.as_ref(), limit).await?;
    let next = (page.len() == limit as usize).then(|| page.last().map(|s| s.record.number.clone())).flatten();
    let numbers = page.into_iter().map(|s| Listed { number: s.record.number, version: s.version }).collect();
    Ok(Json(ListResponse { numbers, next }))
}
