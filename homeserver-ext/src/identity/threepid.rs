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

/// Binds the number validated in a session to `mxid` (the caller's own Matrix ID).
pub async fn bind(
    State(app): State<Arc<App>>,
    IsUser(user): IsUser,
    Json(req): Json<Bind>,
) -> Result<axum::Json<Value>, ApiError> {
    if user != req.mxid {
        return Err(ApiError::Forbidden("mxid is not the token's user"));
    }
    let s = crate::sessions::find(&app, Purpose::Identity, &req.sid, &req.client_secret).await?;
    if s.validated_at.is_none() {
        return Err(ApiError::SessionNotValidated);
    }
    bind_number(&app, &Binding { number: s.number.clone(), user_id: req.mxid.clone() }).await?;
    let now_ms = app.now() * 1000;
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
