//! The user's side: `POST /v1/auth/openid` exchanges a Matrix OpenID token (from the user's homeserver,
//! `POST /_matrix/client/v3/user/{userId}/openid/request_token`) for an API token, as an Identity Service does;
//! the account is created on first use. Then `GET /v1/me`, `GET /v1/me/history`, `GET /v1/me/cdrs`. Operators
//! read any account's history and CDRs at `GET /v1/accounts/{id}/history|cdrs`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, FromRef, Path, State};
use serde::{Deserialize, Serialize};

use super::accounts::{AccountView, is_user_id, parse_id};
use super::auth::{Caller, Operator};
use super::body::JsonBody;
use super::query::QueryParams;
use super::{ApiError, RateLimiter};
use crate::charging::{AccountId, AccountRef, Hold};
use crate::ledger::{Ledger, hold_view};
use crate::storage::{HistoryItem, Scope, TokenHash, unix_ms};

/// Who vouches for users: the provider's homeserver.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeserverConfig {
    /// Its server name (the part after `:` in user IDs), e.g. `tincan.test`.
    pub server_name: String,
    /// Where the gateway reaches it, e.g. `http://127.0.0.1:8008`.
    pub url: String,
    /// How long a user's API token lasts, in seconds. Default 86400.
    pub token_ttl_secs: u32,
}

impl Default for HomeserverConfig {
    fn default() -> Self {
        HomeserverConfig {
            server_name: "tincan.test".into(),
            url: "http://127.0.0.1:8008".into(),
            token_ttl_secs: 86_400,
        }
    }
}

/// What user sign-in needs besides the ledger.
#[derive(Debug, Clone)]
pub struct UserAuth {
    /// The homeserver.
    pub homeserver: HomeserverConfig,
    /// The currency of accounts created on first use.
    pub currency: crate::money::Currency,
    /// For the homeserver's OpenID userinfo.
    pub http: reqwest::Client,
}

/// `POST /v1/auth/openid` body: the OpenID token as the homeserver gave it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenIdToken {
    /// The token.
    pub access_token: String,
    /// `Bearer`.
    #[serde(default)]
    pub token_type: Option<String>,
    /// The homeserver that issued it.
    pub matrix_server_name: String,
    /// Seconds it stays valid.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// `POST /v1/auth/openid` answer.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Session {
    /// The API token (Bearer) for the `/v1/me…` endpoints.
    pub token: String,
    /// The Matrix user.
    pub user_id: String,
    /// Their account.
    pub account_id: AccountId,
    /// Seconds until the token expires.
    pub expires_in: u32,
}

#[utoipa::path(post, path = "/v1/auth/openid", tag = "users", request_body = OpenIdToken, responses((status = 200, body = Session), (status = 403, body = crate::api::ErrorBody), (status = 502, body = crate::api::ErrorBody), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)))]
pub(crate) async fn openid<S>(
    State(state): State<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(req): JsonBody<OpenIdToken>,
) -> Result<Json<Session>, ApiError>
where
    S: Send + Sync + Clone + 'static,
    Arc<Ledger>: FromRef<S>,
    Arc<RateLimiter>: FromRef<S>,
    Arc<UserAuth>: FromRef<S>,
{
    Arc::<RateLimiter>::from_ref(&state).check(&format!("ip:{}", peer.ip()))?;
    let (ledger, auth) = (Arc::<Ledger>::from_ref(&state), Arc::<UserAuth>::from_ref(&state));
    if req.access_token.is_empty() || req.access_token.len() > 1024 {
        return Err(ApiError::InvalidParam("access_token: 1 to 1024 characters".into()));
    }
    if req.matrix_server_name != auth.homeserver.server_name {
        return Err(ApiError::Forbidden("this provider serves the users of its own homeserver only"));
    }
    let mut url = url::Url::parse(&format!(
        "{}/_matrix/federation/v1/openid/userinfo",
        auth.homeserver.url.trim_end_matches('/')
    ))
    .map_err(|e| ApiError::Homeserver(e.to_string()))?;
    url.query_pairs_mut().append_pair("access_token", &req.access_token);
    let resp = auth.http.get(url).send().await.map_err(|e| ApiError::Homeserver(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(ApiError::Unauthorized);
    }
    let info: serde_json::Value = resp.json().await.map_err(|e| ApiError::Homeserver(e.to_string()))?;
    let user_id = info["sub"].as_str().ok_or_else(|| ApiError::Homeserver("no sub in userinfo".into()))?;
    // The homeserver vouches only for its own users.
    if !is_user_id(user_id) || !user_id.ends_with(&format!(":{}", auth.homeserver.server_name)) {
        return Err(ApiError::Homeserver("the homeserver vouched for another server's user".into()));
    }
    let account = ledger.user_account(user_id, None, auth.currency).await?;
    let token = crate::cli::new_token().map_err(|_| ApiError::Homeserver("no randomness".into()))?;
    let now = unix_ms(ledger.clock().now());
    let ttl = auth.homeserver.token_ttl_secs;
    let mut tx = ledger.storage().begin().await?;
    let expires = now + i64::from(ttl) * 1000;
    tx.tokens().add(TokenHash::of(&token), Scope::User, user_id, Some(account.id), Some(expires), now).await?;
    tx.commit().await?;
    Ok(Json(Session { token, user_id: user_id.to_owned(), account_id: account.id, expires_in: ttl }))
}

fn own(caller: &Caller) -> Result<AccountId, ApiError> {
    match caller.0.scope {
        Scope::User => caller.0.account.ok_or(ApiError::Unauthorized),
        _ => Err(ApiError::Forbidden("a user token is required")),
    }
}

#[utoipa::path(get, path = "/v1/me", tag = "users", responses((status = 200, body = AccountView), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn me(State(ledger): State<Arc<Ledger>>, caller: Caller) -> Result<Json<AccountView>, ApiError> {
    let id = own(&caller)?;
    Ok(Json(ledger.account(&AccountRef::Id { account_id: id }).await?.into()))
}

/// The paging query of history and CDR lists.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// The `next` of the previous page.
    #[serde(default)]
    pub before: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[serde(default)]
    pub limit: Option<String>,
}

impl Page {
    fn parse(&self) -> Result<(Option<i64>, u32), ApiError> {
        let num = |name: &str, v: &str| {
            v.parse::<i64>()
                .ok()
                .filter(|n| *n > 0 && v.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| ApiError::InvalidParam(format!("{name}: a positive whole number")))
        };
        let before = self.before.as_deref().map(|b| num("before", b)).transpose()?;
        let limit = self.limit.as_deref().map(|l| num("limit", l)).transpose()?.unwrap_or(50);
        if limit > 200 {
            return Err(ApiError::InvalidParam("limit: at most 200".into()));
        }
        Ok((before, limit as u32))
    }
}

/// One page of an account's history.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryPage {
    /// Newest first.
    pub items: Vec<HistoryItem>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One page of an account's call detail records (settled holds).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CdrPage {
    /// Newest first.
    pub items: Vec<Cdr>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A call detail record: a settled hold and what it charged.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cdr {
    /// The hold.
    #[serde(flatten)]
    pub hold: Hold,
    /// Billable seconds (voice) or segments (SMS), when settled by usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<i64>,
    /// The carrier that carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    /// When it was settled (Unix ms).
    pub settled_at_ms: i64,
}

async fn history_of(ledger: &Ledger, account: AccountId, page: &Page) -> Result<HistoryPage, ApiError> {
    let (before, limit) = page.parse()?;
    let mut tx = ledger.storage().begin_read().await?;
    let items = tx.journal().history(account, before, limit).await?;
    let next = (items.len() == limit as usize).then(|| items.last().map(|i| i.id.to_string())).flatten();
    Ok(HistoryPage { items, next })
}

async fn cdrs_of(ledger: &Ledger, account: AccountId, page: &Page) -> Result<CdrPage, ApiError> {
    let (before, limit) = page.parse()?;
    let currency = ledger.account(&AccountRef::Id { account_id: account }).await?.currency;
    let mut tx = ledger.storage().begin_read().await?;
    let holds = tx.holds().settled(account, before, limit).await?;
    let next = (holds.len() == limit as usize).then(|| holds.last().map(|h| h.id.seq.to_string())).flatten();
    let items = holds
        .iter()
        .map(|h| {
            Ok(Cdr {
                hold: hold_view(h, currency)?,
                units: h.usage,
                carrier: h.carrier.clone(),
                settled_at_ms: h.closed_at_ms.unwrap_or(h.created_at_ms),
            })
        })
        .collect::<Result<Vec<_>, crate::storage::StorageError>>()?;
    Ok(CdrPage { items, next })
}

#[utoipa::path(get, path = "/v1/me/history", tag = "users", params(("before" = Option<String>, Query), ("limit" = Option<String>, Query)), responses((status = 200, body = HistoryPage), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn my_history(
    State(ledger): State<Arc<Ledger>>,
    caller: Caller,
    QueryParams(page): QueryParams<Page>,
) -> Result<Json<HistoryPage>, ApiError> {
    Ok(Json(history_of(&ledger, own(&caller)?, &page).await?))
}

#[utoipa::path(get, path = "/v1/me/cdrs", tag = "users", params(("before" = Option<String>, Query), ("limit" = Option<String>, Query)), responses((status = 200, body = CdrPage), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn my_cdrs(
    State(ledger): State<Arc<Ledger>>,
    caller: Caller,
    QueryParams(page): QueryParams<Page>,
) -> Result<Json<CdrPage>, ApiError> {
    Ok(Json(cdrs_of(&ledger, own(&caller)?, &page).await?))
}

#[utoipa::path(get, path = "/v1/accounts/{id}/history", tag = "operators", params(("id" = i64, Path), ("before" = Option<String>, Query), ("limit" = Option<String>, Query)), responses((status = 200, body = HistoryPage), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn history(
    State(ledger): State<Arc<Ledger>>,
    _op: Operator,
    Path(id): Path<String>,
    QueryParams(page): QueryParams<Page>,
) -> Result<Json<HistoryPage>, ApiError> {
    let id = parse_id(&id)?;
    ledger.account(&AccountRef::Id { account_id: id }).await?;
    Ok(Json(history_of(&ledger, id, &page).await?))
}

#[utoipa::path(get, path = "/v1/accounts/{id}/cdrs", tag = "operators", params(("id" = i64, Path), ("before" = Option<String>, Query), ("limit" = Option<String>, Query)), responses((status = 200, body = CdrPage), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn cdrs(
    State(ledger): State<Arc<Ledger>>,
    _op: Operator,
    Path(id): Path<String>,
    QueryParams(page): QueryParams<Page>,
) -> Result<Json<CdrPage>, ApiError> {
    Ok(Json(cdrs_of(&ledger, parse_id(&id)?, &page).await?))
}
