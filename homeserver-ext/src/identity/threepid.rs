//! `POST /_matrix/identity/v2/3pid/bind` and `…/3pid/unbind`.

use super::{IsUser, bind_number, msisdn_address};
use crate::api::Json;
use crate::app::App;
use crate::error::ApiError;
use crate::number::E164;
use crate::store::{Binding, Purpose};
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// `bind` body.
#[derive(Debug, Deserialize)]
pub struct Bind {
    sid: String,
    client_secret: String,
    mxid: String,
}

/// Binds the number validated in a session to `mxid` (the caller's own Matrix ID). The validation must be
/// usable (`codes.validated_ttl_secs`) and is used up by the bind; moving a number bound to another Matrix ID
/// needs a validation made after that binding and within `codes.rebind_within_secs`, so a validation kept
/// from before the number changed hands cannot take it.
pub async fn bind(
    State(app): State<Arc<App>>,
    IsUser(user): IsUser,
    Json(req): Json<Bind>,
) -> Result<axum::Json<Value>, ApiError> {
    if user != req.mxid {
        return Err(ApiError::Forbidden("mxid is not the token's user"));
    }
    let s = crate::sessions::find(&app, Purpose::Identity, &req.sid, &req.client_secret).await?;
    let validated_at = crate::sessions::validation(&app, &s)?;
    let now = app.now();
    if let Some((owner, since)) = app.store.binding_since(&s.number).await?
        && owner.user_id != req.mxid
        && (validated_at < since || now - validated_at > app.config.codes.rebind_within_secs as i64)
    {
        return Err(ApiError::FreshValidationNeeded);
    }
    // A number bound to an account with a registration lock does not move by SMS validation alone.
    if let Some(owner) = app.store.binding(&s.number).await?
        && owner.user_id != req.mxid
        && crate::registration_lock::holds(&app, &owner.user_id).await?
    {
        return Err(ApiError::RegistrationLocked);
    }
    if !app.store.consume(&s.sid, now).await? {
        return Err(ApiError::NoValidSession);
    }
    bind_number(&app, &Binding { number: s.number.clone(), user_id: req.mxid.clone() }).await?;
    let now_ms = now * 1000;
    Ok(axum::Json(json!({
        "address": msisdn_address(&s.number),
        "medium": "msisdn",
        "mxid": req.mxid,
        "not_before": now_ms,
        "not_after": now_ms + 100 * 365 * 86_400_000i64,
        "ts": now_ms,
        "signatures": {},
    })))
}

/// A third-party identifier in `unbind`.
#[derive(Debug, Deserialize)]
pub struct Threepid {
    medium: String,
    address: String,
}

/// `unbind` body.
#[derive(Debug, Deserialize)]
pub struct Unbind {
    mxid: String,
    threepid: Threepid,
}

/// Removes the caller's own binding.
pub async fn unbind(
    State(app): State<Arc<App>>,
    IsUser(user): IsUser,
    Json(req): Json<Unbind>,
) -> Result<axum::Json<Value>, ApiError> {
    if user != req.mxid {
        return Err(ApiError::Forbidden("mxid is not the token's user"));
    }
    if req.threepid.medium != "msisdn" {
        return Err(ApiError::InvalidParam("threepid.medium"));
    }
    let number = E164::parse(&format!("+{}", msisdn_address(&req.threepid.address)))?;
    if !app.store.unbind(number.as_str(), &req.mxid).await? {
        return Err(ApiError::NotFound);
    }
    Ok(axum::Json(json!({})))
}
