//! `/v1/ports`: number porting between providers (see [`crate::ports`]).
//!
//! - `POST /v1/ports` (the gaining provider, after its own SMS verification of the number)
//!   `{"number":"+44…","services":[…],"ed25519":"…"}` files a request for a number another provider holds: 202
//!   with the request. Filing again while it is pending amends its services and key (the subscriber's key is
//!   known only after they signed in at the gaining provider).
//! - `GET /v1/ports?open=true` the caller's requests (either side); `GET /v1/ports/{id}` one of them.
//! - `POST /v1/ports/{id}/release` (the losing provider) moves the number at once.
//! - `POST /v1/ports/{id}/object` `{"reason":"registration_locked"}` (the losing provider, before the window
//!   ends, with a reason from [`ObjectionReason::ALL`]) refuses the move.
//!
//! Only the two parties see a request; anyone else gets 404 `port_not_found`.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tincan_common::Clock;
use tincan_enum_core::{E164, MasterKey, Service};

use super::{ApiError, Authenticated, RawService, WriteLock, ZoneWriter, body, canonical_number, validate_services};
use crate::ports::{Closed, PortEvent, Porting, complete, settle, side};
use crate::storage::{NewPort, ObjectionReason, PortRequest, PortState, Storage, StorageError};

/// A port request as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortResponse {
    /// Its id.
    pub id: i64,
    /// The number.
    pub number: E164,
    /// The losing provider's name.
    pub losing: String,
    /// The gaining provider's name.
    pub gaining: String,
    /// What the gaining provider publishes once the number moves.
    pub services: Vec<Service>,
    /// The key it publishes then, if known.
    pub key: Option<super::numbers::KeyBody>,
    /// `pending`, `completed`, `objected` or `cancelled`.
    pub state: PortState,
    /// The objection's reason.
    pub reason: Option<ObjectionReason>,
    /// Filed, Unix milliseconds.
    pub filed_at_ms: i64,
    /// The window's end, Unix milliseconds.
    pub window_ends_at_ms: i64,
    /// Closed, Unix milliseconds.
    pub closed_at_ms: Option<i64>,
}

/// `GET /v1/ports`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortList {
    /// Oldest first.
    pub ports: Vec<PortResponse>,
}

/// What the porting handlers share: the parts of [`super::ApiState`] settling a request touches.
#[derive(Clone)]
pub(crate) struct PortCtx {
    storage: Arc<dyn Storage>,
    zone: Arc<dyn ZoneWriter>,
    writes: WriteLock,
    porting: Arc<Porting>,
    clock: Arc<dyn Clock>,
}

impl FromRef<super::ApiState> for PortCtx {
    fn from_ref(s: &super::ApiState) -> Self {
        Self {
            storage: s.storage.clone(),
            zone: s.zone.clone(),
            writes: s.writes.clone(),
            porting: s.porting.clone(),
            clock: s.clock.clone(),
        }
    }
}

impl PortCtx {
    /// `port`, completed first when its window has ended.
    async fn settle(&self, port: PortRequest) -> Result<PortRequest, ApiError> {
        Ok(settle(&*self.storage, &*self.zone, &self.writes, &self.porting, &*self.clock, port).await?)
    }
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

async fn respond(storage: &dyn Storage, p: PortRequest) -> Result<PortResponse, ApiError> {
    let mut tx = storage.begin_read().await?;
    let name = |p: Option<crate::storage::Provider>| p.map(|p| p.name).unwrap_or_default();
    let losing = name(tx.providers().by_id(p.losing).await?);
    let gaining = name(tx.providers().by_id(p.gaining).await?);
    Ok(PortResponse {
        id: p.id,
        number: p.number,
        losing,
        gaining,
        services: p.services,
        key: p.key.map(Into::into),
        state: p.state,
        reason: p.reason,
        filed_at_ms: millis(p.filed_at),
        window_ends_at_ms: millis(p.window_ends_at),
        closed_at_ms: p.closed_at.map(millis),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRequest {
    number: String,
    services: Vec<RawService>,
    #[serde(default)]
    ed25519: Option<String>,
}

/// `POST /v1/ports`.
pub(crate) async fn file(
    State(ctx): State<PortCtx>,
    Authenticated(provider): Authenticated,
    body: Body,
) -> Result<(StatusCode, Json<PortResponse>), ApiError> {
    let bytes = body::read(body).await?;
    let req: FileRequest = serde_json::from_slice(&bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let number = canonical_number(&req.number)?;
    let services = validate_services(req.services)?;
    let key = req.ed25519.as_deref().map(MasterKey::from_base64).transpose()?;
    if provider.prefixes.is_empty() {
        return Err(ApiError::ProviderSuspended);
    }
    let _order = ctx.writes.lock().await;
    let mut tx = ctx.storage.begin().await?;
    let current = tx.numbers().get(&number).await?.ok_or(ApiError::NumberNotFound)?;
    if current.provider == provider.id {
        return Err(ApiError::NumberAlreadyHeld);
    }
    if let Some(open) = tx.ports().open_for(&number).await? {
        if open.gaining != provider.id {
            return Err(ApiError::PortInProgress);
        }
        tx.ports().amend(open.id, &services, key).await?;
        let amended = tx.ports().get(open.id).await?.unwrap_or(open);
        tx.commit().await?;
        let response = respond(&*ctx.storage, amended).await?;
        ctx.porting.notify(response.id, PortEvent::Amended, &[&response.losing]);
        return Ok((StatusCode::ACCEPTED, Json(response)));
    }
    let window_ends_at = ctx.clock.now() + ctx.porting.window;
    let new = NewPort { number, losing: current.provider, gaining: provider.id, services, key, window_ends_at };
    let filed = match tx.ports().file(&new).await {
        Ok(p) => p,
        // Filed by another node between our read and insert.
        Err(StorageError::Duplicate(_)) => return Err(ApiError::PortInProgress),
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    let response = respond(&*ctx.storage, filed).await?;
    let redacted = tincan_common::telemetry::redact_number(response.number.as_str());
    tracing::info!(number = %redacted, from = %response.losing, to = %response.gaining, id = response.id, "port filed");
    ctx.porting.notify(response.id, PortEvent::Filed, &[&response.losing]);
    Ok((StatusCode::ACCEPTED, Json(response)))
}

/// The request `id` if the caller is a party to it, settled (completed when its window has ended).
async fn party_port(ctx: &PortCtx, provider: &crate::storage::Provider, id: i64) -> Result<PortRequest, ApiError> {
    let port = ctx.storage.begin_read().await?.ports().get(id).await?.ok_or(ApiError::PortNotFound)?;
    side(&port, provider.id).ok_or(ApiError::PortNotFound)?;
    ctx.settle(port).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    open: bool,
}

/// `GET /v1/ports`.
pub(crate) async fn list(
    State(ctx): State<PortCtx>,
    Authenticated(provider): Authenticated,
    Query(q): Query<ListQuery>,
) -> Result<Json<PortList>, ApiError> {
    let ports = ctx.storage.begin_read().await?.ports().for_provider(provider.id, q.open, 1000).await?;
    let mut out = Vec::with_capacity(ports.len());
    for p in ports {
        let p = ctx.settle(p).await?;
        if q.open && p.state != PortState::Pending {
            continue;
        }
        out.push(respond(&*ctx.storage, p).await?);
    }
    Ok(Json(PortList { ports: out }))
}

/// `GET /v1/ports/{id}`.
pub(crate) async fn get(
    State(ctx): State<PortCtx>,
    Authenticated(provider): Authenticated,
    Path(id): Path<i64>,
) -> Result<Json<PortResponse>, ApiError> {
    let port = party_port(&ctx, &provider, id).await?;
    Ok(Json(respond(&*ctx.storage, port).await?))
}

/// `POST /v1/ports/{id}/release`.
pub(crate) async fn release(
    State(ctx): State<PortCtx>,
    Authenticated(provider): Authenticated,
    Path(id): Path<i64>,
) -> Result<Json<PortResponse>, ApiError> {
    let port = party_port(&ctx, &provider, id).await?;
    if port.losing != provider.id {
        return Err(ApiError::NotYourSide("losing"));
    }
    if port.state != PortState::Pending {
        return Err(ApiError::PortClosed(port.state.as_str()));
    }
    match complete(&*ctx.storage, &*ctx.zone, &ctx.writes, &ctx.porting, id).await? {
        Some(Closed::Completed(p)) => Ok(Json(respond(&*ctx.storage, p).await?)),
        Some(Closed::Cancelled(p) | Closed::NotPending(p)) => Err(ApiError::PortClosed(p.state.as_str())),
        None => Err(ApiError::PortNotFound),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectRequest {
    reason: ObjectionReason,
}

/// `POST /v1/ports/{id}/object`.
pub(crate) async fn object(
    State(ctx): State<PortCtx>,
    Authenticated(provider): Authenticated,
    Path(id): Path<i64>,
    body: Body,
) -> Result<Json<PortResponse>, ApiError> {
    let bytes = body::read(body).await?;
    let req: ObjectRequest = serde_json::from_slice(&bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    // Settled first: past the window the port completes, whatever the objection.
    let port = party_port(&ctx, &provider, id).await?;
    if port.losing != provider.id {
        return Err(ApiError::NotYourSide("losing"));
    }
    if port.state == PortState::Completed && port.closed_at.is_some_and(|c| c >= port.window_ends_at) {
        return Err(ApiError::ObjectionWindowClosed);
    }
    if port.state != PortState::Pending {
        return Err(ApiError::PortClosed(port.state.as_str()));
    }
    if ctx.clock.now() >= port.window_ends_at {
        return Err(ApiError::ObjectionWindowClosed);
    }
    let _order = ctx.writes.lock().await;
    let mut tx = ctx.storage.begin().await?;
    if !tx.ports().close(id, PortState::Objected, Some(req.reason)).await? {
        let now = tx.ports().get(id).await?.map_or(PortState::Cancelled, |p| p.state);
        return Err(ApiError::PortClosed(now.as_str()));
    }
    let objected = tx.ports().get(id).await?.ok_or(ApiError::PortNotFound)?;
    tx.commit().await?;
    let response = respond(&*ctx.storage, objected).await?;
    tracing::info!(id, reason = ?req.reason, from = %response.losing, to = %response.gaining, "port objected");
    ctx.porting.notify(id, PortEvent::Objected, &[&response.losing, &response.gaining]);
    Ok(Json(response))
}
