//! `POST /v1/holds` (reserve), `GET /v1/holds/{id}`, `POST /v1/holds/{id}/extend|settle|release`, and
//! `POST /v1/quote`: the charging interface for services ([`crate::charging`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};

use super::ApiError;
use super::auth::{Caller, Service};
use super::body::JsonBody;
use crate::charging::{
    AccountRef, ChargeError, Charging, ExtendRequest, Hold, HoldId, Quote, QuoteRequest, ReleaseRequest,
    ReserveRequest, SettleRequest, Settlement,
};
use crate::ledger::{Ledger, hold_view};
use crate::storage::Scope;

fn hold_id(raw: &str) -> Result<HoldId, ApiError> {
    raw.parse::<HoldId>().map_err(|_| ApiError::InvalidParam(format!("not a hold id: {:?}", truncate(raw))))
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// `POST /v1/holds`.
#[utoipa::path(post, path = "/v1/holds", tag = "charging", request_body = crate::charging::ReserveRequest, responses((status = 200, body = crate::charging::Hold), (status = 402, description = "Insufficient funds", body = crate::api::ErrorBody), (status = 403, description = "Destination blocked", body = crate::api::ErrorBody), (status = 429, description = "A limit", body = crate::api::ErrorBody), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn reserve(
    State(ledger): State<Arc<Ledger>>,
    Service(caller): Service,
    JsonBody(req): JsonBody<ReserveRequest>,
) -> Result<Json<Hold>, ApiError> {
    Ok(Json(ledger.charging(caller.principal()).reserve(&req).await?))
}

/// `POST /v1/holds/{id}/extend`.
#[utoipa::path(post, path = "/v1/holds/{id}/extend", tag = "charging", params(("id" = String, Path, description = "The hold id")), request_body = crate::charging::ExtendRequest, responses((status = 200, body = crate::charging::Hold), (status = 402, body = crate::api::ErrorBody), (status = 409, body = crate::api::ErrorBody), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn extend(
    State(ledger): State<Arc<Ledger>>,
    Service(caller): Service,
    Path(id): Path<String>,
    JsonBody(mut req): JsonBody<ExtendRequest>,
) -> Result<Json<Hold>, ApiError> {
    req.hold = hold_id(&id)?;
    Ok(Json(ledger.charging(caller.principal()).extend(&req).await?))
}

/// `POST /v1/holds/{id}/settle`.
#[utoipa::path(post, path = "/v1/holds/{id}/settle", tag = "charging", params(("id" = String, Path, description = "The hold id")), request_body = crate::charging::SettleRequest, responses((status = 200, body = crate::charging::Settlement), (status = 409, body = crate::api::ErrorBody), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn settle(
    State(ledger): State<Arc<Ledger>>,
    Service(caller): Service,
    Path(id): Path<String>,
    JsonBody(mut req): JsonBody<SettleRequest>,
) -> Result<Json<Settlement>, ApiError> {
    req.hold = hold_id(&id)?;
    Ok(Json(ledger.charging(caller.principal()).settle(&req).await?))
}

/// `POST /v1/holds/{id}/release`.
#[utoipa::path(post, path = "/v1/holds/{id}/release", tag = "charging", params(("id" = String, Path, description = "The hold id")), request_body = crate::charging::ReleaseRequest, responses((status = 200, body = crate::charging::Hold), (status = 409, body = crate::api::ErrorBody), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn release(
    State(ledger): State<Arc<Ledger>>,
    Service(caller): Service,
    Path(id): Path<String>,
    JsonBody(mut req): JsonBody<ReleaseRequest>,
) -> Result<Json<Hold>, ApiError> {
    req.hold = hold_id(&id)?;
    Ok(Json(ledger.charging(caller.principal()).release(&req).await?))
}

/// `GET /v1/holds/{id}`: a hold of the calling service.
#[utoipa::path(get, path = "/v1/holds/{id}", operation_id = "get_hold", tag = "charging", params(("id" = String, Path, description = "The hold id")), responses((status = 200, body = crate::charging::Hold), (status = 404, body = crate::api::ErrorBody), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn get(
    State(ledger): State<Arc<Ledger>>,
    Service(caller): Service,
    Path(id): Path<String>,
) -> Result<Json<Hold>, ApiError> {
    let id = hold_id(&id)?;
    let mut tx = ledger.storage().begin_read().await?;
    let h = tx.holds().get(id).await?.filter(|h| h.principal == caller.principal()).ok_or(ChargeError::HoldNotFound)?;
    let currency = tx.accounts().get(id.account).await?.ok_or(ChargeError::HoldNotFound)?.currency;
    Ok(Json(hold_view(&h, currency)?))
}

/// `POST /v1/quote`: services quote any account; a user only their own.
#[utoipa::path(post, path = "/v1/quote", tag = "charging", request_body = crate::charging::QuoteRequest, responses((status = 200, body = crate::charging::Quote), (status = 404, description = "No account or no rate", body = crate::api::ErrorBody), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn quote(
    State(ledger): State<Arc<Ledger>>,
    caller: Caller,
    JsonBody(req): JsonBody<QuoteRequest>,
) -> Result<Json<Quote>, ApiError> {
    match caller.0.scope {
        Scope::Service => {}
        Scope::User => {
            let own = AccountRef::Id { account_id: caller.0.account.ok_or(ApiError::Unauthorized)? };
            let mine = ledger.account(&req.account).await.map(|a| a.id);
            if !matches!((&own, mine), (AccountRef::Id { account_id }, Ok(id)) if *account_id == id) {
                return Err(ChargeError::AccountNotFound.into());
            }
        }
        Scope::Operator => {}
    }
    Ok(Json(ledger.charging(caller.principal()).quote(&req).await?))
}
