//! `GET /v1/accounts/{id}/calls` (operators) and `GET /v1/me/calls` (the user): an account's call detail
//! records, one per attempt of each call on a carrier (answered, busy, failed, cancelled) and one per call
//! refused before any carrier; oldest first, paged by id. `format=csv` gives the same records as CSV (every
//! page's rows under one header; the `next` id is in the `Tincan-Next` header).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::accounts::parse_id;
use super::auth::{Caller, Operator};
use super::query::QueryParams;
use crate::charging::{AccountId, AccountRef};
use crate::ledger::Ledger;
use crate::storage::{CALL_RECORDS_CSV_HEADER, CallRecord, Scope};

/// The paging query of call records.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsQuery {
    /// Records with an id above this (the `next` of the previous page).
    #[serde(default)]
    pub after: Option<String>,
    /// Records per page, 1 to 1000 (default 100).
    #[serde(default)]
    pub limit: Option<String>,
    /// `json` (default) or `csv`.
    #[serde(default)]
    pub format: Option<String>,
}

/// One page of call detail records.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallPage {
    /// Oldest first.
    pub items: Vec<CallRecord>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl CallsQuery {
    fn parse(&self) -> Result<(i64, u32, bool), ApiError> {
        let num = |name: &str, v: &str, zero_ok: bool| {
            v.parse::<i64>()
                .ok()
                .filter(|n| (*n > 0 || (zero_ok && *n == 0)) && v.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| ApiError::InvalidParam(format!("{name}: a whole number")))
        };
        let after = self.after.as_deref().map(|a| num("after", a, true)).transpose()?.unwrap_or(0);
        let limit = self.limit.as_deref().map(|l| num("limit", l, false)).transpose()?.unwrap_or(100);
        if limit > 1000 {
            return Err(ApiError::InvalidParam("limit: at most 1000".into()));
        }
        let csv = match self.format.as_deref() {
            None | Some("json") => false,
            Some("csv") => true,
            Some(_) => return Err(ApiError::InvalidParam("format: json or csv".into())),
        };
        Ok((after, limit as u32, csv))
    }
}

/// An account's records; a user's own view leaves out the provider's side (see [`CallRecord::as_seen_by_user`]).
async fn calls_of(ledger: &Ledger, account: AccountId, q: &CallsQuery, user: bool) -> Result<Response, ApiError> {
    let (after, limit, csv) = q.parse()?;
    ledger.account(&AccountRef::Id { account_id: account }).await?;
    let mut tx = ledger.storage().begin_read().await?;
    let mut items = tx.call_records().list(Some(account), after, limit).await?;
    drop(tx);
    if user {
        items = items.iter().map(CallRecord::as_seen_by_user).collect();
    }
    let next = (items.len() == limit as usize).then(|| items.last().map(|r| r.id.to_string())).flatten();
    if csv {
        let mut body = String::from(CALL_RECORDS_CSV_HEADER);
        body.push('\n');
        for r in &items {
            body.push_str(&r.csv_row());
            body.push('\n');
        }
        let mut resp = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response();
        if let Some(n) = next.and_then(|n| n.parse().ok()) {
            resp.headers_mut().insert("tincan-next", n);
        }
        return Ok(resp);
    }
    Ok(Json(CallPage { items, next }).into_response())
}

#[utoipa::path(get, path = "/v1/accounts/{id}/calls", tag = "operators", params(("id" = i64, Path), ("after" = Option<String>, Query), ("limit" = Option<String>, Query), ("format" = Option<String>, Query)), responses((status = 200, body = CallPage), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody), (status = 404, description = "No such account", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn calls(
    State(ledger): State<Arc<Ledger>>,
    _op: Operator,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<CallsQuery>,
) -> Result<Response, ApiError> {
    calls_of(&ledger, parse_id(&id)?, &q, false).await
}

#[utoipa::path(get, path = "/v1/me/calls", tag = "users", params(("after" = Option<String>, Query), ("limit" = Option<String>, Query), ("format" = Option<String>, Query)), responses((status = 200, body = CallPage), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn my_calls(
    State(ledger): State<Arc<Ledger>>,
    caller: Caller,
    QueryParams(q): QueryParams<CallsQuery>,
) -> Result<Response, ApiError> {
    let id = match caller.0.scope {
        Scope::User => caller.0.account.ok_or(ApiError::Unauthorized)?,
        _ => return Err(ApiError::Forbidden("a user token is required")),
    };
    calls_of(&ledger, id, &q, true).await
}
