//! Operators' account endpoints: `POST /v1/accounts` (a business account, or a user's), `GET
//! /v1/accounts/{id}`, `POST /v1/accounts/{id}/adjustments` (credit or debit by hand, idempotent).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::auth::Operator;
use super::body::JsonBody;
use crate::charging::{AccountId, AccountRef, IdempotencyKey};
use crate::ledger::Ledger;
use crate::money::{Amount, Currency};
use crate::storage::{Account, AccountKind, EntryKind, Limits};

/// An account as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountView {
    /// Its id.
    pub id: AccountId,
    /// `user` or `business`.
    pub kind: AccountKind,
    /// Display name.
    pub name: String,
    /// The Matrix user (user accounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The user's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// Its currency.
    pub currency: Currency,
    /// The sum of its journal legs.
    pub balance: Amount,
    /// The sum of its open holds.
    pub held: Amount,
    /// Balance minus holds: what can be reserved.
    pub available: Amount,
    /// Whether reservations are refused.
    pub disabled: bool,
    /// Its price plan.
    pub plan: String,
}

impl From<Account> for AccountView {
    fn from(a: Account) -> Self {
        AccountView {
            available: a.available(),
            id: a.id,
            kind: a.kind,
            name: a.name,
            user_id: a.user_id,
            number: a.number,
            currency: a.currency,
            balance: a.balance,
            held: a.held,
            disabled: a.disabled,
            plan: a.plan,
        }
    }
}

/// `POST /v1/accounts` body.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// A business's name; or
    #[serde(default)]
    pub business: Option<String>,
    /// a Matrix user's ID (their account is created if missing).
    #[serde(default)]
    pub user_id: Option<String>,
    /// Its currency.
    pub currency: Currency,
}

#[utoipa::path(post, path = "/v1/accounts", tag = "operators", request_body = CreateAccount, responses((status = 200, body = AccountView), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn create(
    State(ledger): State<Arc<Ledger>>,
    _op: Operator,
    JsonBody(req): JsonBody<CreateAccount>,
) -> Result<Json<AccountView>, ApiError> {
    let a = match (req.business, req.user_id) {
        (Some(name), None) => ledger.create_business(&name, req.currency).await?,
        (None, Some(user)) if is_user_id(&user) => ledger.user_account(&user, None, req.currency).await?,
        _ => return Err(ApiError::InvalidParam("give business (a name) or user_id (@user:server)".into())),
    };
    Ok(Json(a.into()))
}

#[utoipa::path(get, path = "/v1/accounts/{id}", operation_id = "get_account", tag = "operators", params(("id" = i64, Path)), responses((status = 200, body = AccountView), (status = 404, body = crate::api::ErrorBody), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn get(
    State(ledger): State<Arc<Ledger>>,
    _op: Operator,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(ledger.account(&AccountRef::Id { account_id: id }).await?.into()))
}

/// `POST /v1/accounts/{id}/adjustments` body.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjust {
    /// Makes the request safe to repeat.
    pub idempotency_key: IdempotencyKey,
    /// Positive credits the account; negative takes money back (below the available balance only as debt).
    pub amount: Amount,
    /// Why (shown in the history).
    pub memo: String,
}

/// The adjustment's result.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Adjusted {
    /// The account after it.
    pub account: AccountView,
}

#[utoipa::path(post, path = "/v1/accounts/{id}/adjustments", tag = "operators", params(("id" = i64, Path)), request_body = Adjust, responses((status = 200, body = Adjusted), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn adjust(
    State(ledger): State<Arc<Ledger>>,
    op: Operator,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<Adjust>,
) -> Result<Json<Adjusted>, ApiError> {
    let id = parse_id(&id)?;
    if req.memo.is_empty() || req.memo.len() > 200 {
        return Err(ApiError::InvalidParam("memo: 1 to 200 characters".into()));
    }
    let principal = op.0.principal();
    if req.amount.is_positive() {
        ledger
            .credit(&principal, &req.idempotency_key, id, req.amount, EntryKind::Adjustment, "operator", &req.memo)
            .await?;
    } else if req.amount.is_negative() {
        ledger.take_back(&principal, &req.idempotency_key, id, -req.amount, EntryKind::Adjustment, "operator").await?;
    } else {
        return Err(ApiError::InvalidParam("amount: not zero".into()));
    }
    let account = ledger.account(&AccountRef::Id { account_id: id }).await?.into();
    Ok(Json(Adjusted { account }))
}

/// `PUT /v1/accounts/{id}/limits`: the account's own fraud limits (unset numbers: the configured defaults).
#[utoipa::path(put, path = "/v1/accounts/{id}/limits", tag = "operators", params(("id" = i64, Path)), request_body = crate::storage::Limits, responses((status = 200, body = crate::storage::Limits), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn set_limits(
    State(ledger): State<Arc<Ledger>>,
    _op: Operator,
    Path(id): Path<String>,
    JsonBody(limits): JsonBody<Limits>,
) -> Result<Json<Limits>, ApiError> {
    let id = parse_id(&id)?;
    ledger.set_limits(id, limits.clone()).await?;
    Ok(Json(limits))
}

/// `PUT /v1/accounts/{id}/plan` body.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPlan {
    /// The price plan's name.
    pub plan: String,
}

/// `PUT /v1/accounts/{id}/plan`: moves the account to a price plan.
#[utoipa::path(put, path = "/v1/accounts/{id}/plan", tag = "operators", params(("id" = i64, Path)), request_body = SetPlan, responses((status = 200, body = AccountView), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn set_plan(
    State(ledger): State<Arc<Ledger>>,
    _op: Operator,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<SetPlan>,
) -> Result<Json<AccountView>, ApiError> {
    let id = parse_id(&id)?;
    let ok = !req.plan.is_empty()
        && req.plan.len() <= 64
        && req.plan.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok {
        return Err(ApiError::InvalidParam("a plan name is 1 to 64 of A-Z a-z 0-9 - _ .".into()));
    }
    let mut tx = ledger.storage().begin().await?;
    if !tx.accounts().set_plan(id, &req.plan).await? {
        return Err(crate::charging::ChargeError::AccountNotFound.into());
    }
    tx.commit().await?;
    Ok(Json(ledger.account(&AccountRef::Id { account_id: id }).await?.into()))
}

pub(super) fn parse_id(raw: &str) -> Result<AccountId, ApiError> {
    let ok = !raw.is_empty() && raw.len() <= 18 && raw.bytes().all(|b| b.is_ascii_digit());
    let id = if ok { raw.parse().ok() } else { None };
    id.map(AccountId).ok_or_else(|| {
        ApiError::InvalidParam(format!("not an account id: {:?}", raw.chars().take(40).collect::<String>()))
    })
}

/// Whether `s` looks like a Matrix user ID (`@localpart:server`).
pub(crate) fn is_user_id(s: &str) -> bool {
    s.len() <= 255
        && s.strip_prefix('@').and_then(|r| r.split_once(':')).is_some_and(|(local, server)| {
            !local.is_empty()
                && !server.is_empty()
                && local.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._=-/+".contains(&b))
                && server.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
}
