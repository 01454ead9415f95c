//! `GET /v1/rates/{number}?service=voice|sms|mms[&account=ID]`: the price of a destination (users: their own
//! plan and balance; services and operators: the account named, else the default plan);
//! `GET /v1/routes/{number}?service=voice|sms|mms`: the carriers to try, least cost first (services, operators);
//! `GET|PUT /v1/plans/{plan}/rates`: a price plan's rate deck as CSV (operators).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use tincan_enum_core::E164;

use super::accounts::parse_id;
use super::auth::{Caller, Operator};
use super::query::QueryParams;
use super::{ApiError, DeckLimit};
use crate::charging::{AccountRef, ChargeError, Charging, Quote, QuoteRequest, ServiceKind};
use crate::ledger::Ledger;
use crate::rating;
use crate::storage::{CarrierRoute, Scope};

/// The query of the rate and route endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateQuery {
    /// `voice` (default) or `sms`.
    #[serde(default)]
    pub service: Option<String>,
    /// The account whose plan and balance (services and operators).
    #[serde(default)]
    pub account: Option<String>,
}

pub(super) fn number(raw: &str) -> Result<E164, ApiError> {
    E164::parse(raw).map_err(|e| {
        ApiError::InvalidParam(format!("not an E.164 number ({e}): {:?}", raw.chars().take(40).collect::<String>()))
    })
}

fn service(raw: Option<&str>) -> Result<ServiceKind, ApiError> {
    raw.unwrap_or("voice").parse().map_err(|_| ApiError::InvalidParam("service: voice, sms or mms".into()))
}

#[utoipa::path(get, path = "/v1/rates/{number}", tag = "rates", params(("number" = String, Path), ("service" = Option<String>, Query), ("account" = Option<String>, Query)), responses((status = 200, body = crate::charging::Quote), (status = 404, body = crate::api::ErrorBody), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn rate(
    State(ledger): State<Arc<Ledger>>,
    caller: Caller,
    Path(raw): Path<String>,
    QueryParams(q): QueryParams<RateQuery>,
) -> Result<Json<Quote>, ApiError> {
    let destination = number(&raw)?;
    let service = service(q.service.as_deref())?;
    let account = match (caller.0.scope, q.account) {
        (Scope::User, None) => caller.0.account.ok_or(ApiError::Unauthorized)?,
        (Scope::User, Some(_)) => return Err(ApiError::Forbidden("a user sees their own rates only")),
        (_, Some(a)) => parse_id(&a)?,
        (_, None) => return Err(ApiError::InvalidParam("account: which account's plan".into())),
    };
    let req = QuoteRequest {
        account: AccountRef::Id { account_id: account },
        service,
        destination,
        seconds: None,
        segments: None,
    };
    Ok(Json(ledger.charging(caller.principal()).quote(&req).await?))
}

/// `GET /v1/routes/{number}` answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Routes {
    /// The carriers to try, in order.
    pub routes: Vec<CarrierRoute>,
}

#[utoipa::path(get, path = "/v1/routes/{number}", tag = "rates", params(("number" = String, Path), ("service" = Option<String>, Query)), responses((status = 200, body = Routes), (status = 404, body = crate::api::ErrorBody), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn routes(
    State(ledger): State<Arc<Ledger>>,
    caller: Caller,
    Path(raw): Path<String>,
    QueryParams(q): QueryParams<RateQuery>,
) -> Result<Json<Routes>, ApiError> {
    if caller.0.scope == Scope::User {
        return Err(ApiError::Forbidden("routes are for services and operators"));
    }
    if q.account.is_some() {
        return Err(ApiError::InvalidParam("account: not a parameter of routes".into()));
    }
    let destination = number(&raw)?;
    let routes = ledger.routes(&destination, service(q.service.as_deref())?).await?;
    if routes.is_empty() {
        return Err(ChargeError::NoRate.into());
    }
    Ok(Json(Routes { routes }))
}

fn plan_name(raw: &str) -> Result<&str, ApiError> {
    let ok =
        !raw.is_empty() && raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok { Ok(raw) } else { Err(ApiError::InvalidParam("a plan name is 1 to 64 of A-Z a-z 0-9 - _ .".into())) }
}

#[utoipa::path(get, path = "/v1/plans/{plan}/rates", tag = "rates", params(("plan" = String, Path)), responses((status = 200, description = "The deck as CSV", content_type = "text/csv", body = String), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn export(
    State(ledger): State<Arc<Ledger>>,
    _op: Operator,
    Path(plan): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let plan = plan_name(&plan)?;
    let mut tx = ledger.storage().begin_read().await?;
    let deck = tx.rates().deck(plan).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], rating::to_csv(&deck)))
}

/// `PUT /v1/plans/{plan}/rates` answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Imported {
    /// The plan.
    pub plan: String,
    /// How many prefixes it has now.
    pub prefixes: usize,
}

#[utoipa::path(put, path = "/v1/plans/{plan}/rates", tag = "rates", params(("plan" = String, Path)), request_body(content = String, content_type = "text/csv"), responses((status = 200, body = Imported), (status = 413, description = "The deck is larger than api.max_deck_bytes", body = crate::api::ErrorBody), (status = 400, description = "Bad input", body = crate::api::ErrorBody), (status = 401, description = "No valid token", body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn import(
    State(ledger): State<Arc<Ledger>>,
    State(limit): State<DeckLimit>,
    _op: Operator,
    Path(plan): Path<String>,
    body: Body,
) -> Result<Json<Imported>, ApiError> {
    let plan = plan_name(&plan)?;
    let body = axum::body::to_bytes(body, limit.0).await.map_err(|_| ApiError::DeckTooLarge { limit: limit.0 })?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::InvalidParam("the deck is not UTF-8".into()))?;
    let deck = rating::parse_csv(text).map_err(|e| ApiError::InvalidParam(e.to_string()))?;
    let mut tx = ledger.storage().begin().await?;
    tx.rates().replace(plan, &deck).await?;
    tx.commit().await?;
    Ok(Json(Imported { plan: plan.to_owned(), prefixes: deck.len() }))
}
