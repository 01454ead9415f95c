//! `POST …/validate/msisdn/requestToken`, `…/submitToken` and `GET …/3pid/getValidated3pid`.

use crate::api::{ClientIp, Json};
use crate::app::App;
use crate::error::ApiError;
use crate::number::E164;
use crate::store::Purpose;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// `requestToken` body (spec: `client_secret`, `country`, `phone_number`, `send_attempt`, `next_link`).
#[derive(Debug, Deserialize)]
pub struct RequestToken {
    client_secret: String,
    country: String,
    phone_number: String,
    send_attempt: u64,
    #[serde(default)]
    #[allow(dead_code)]
    next_link: Option<String>,
}

/// Sends a code; the number may be national (`country` says how to read it) or international.
pub async fn request_token(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    Json(req): Json<RequestToken>,
) -> Result<axum::Json<Value>, ApiError> {
    let number = E164::parse_in(&req.phone_number, &req.country)?;
    let s = crate::sessions::start(&app, Purpose::Identity, &number, &req.client_secret, req.send_attempt, ip).await?;
    Ok(axum::Json(json!({
        "sid": s.sid,
        "msisdn": number.digits(),
        "intl_fmt": number.as_str(),
        "success": true,
    })))
}

/// `submitToken` body: the spec's fields, and the registration-lock PIN when the number has a lock (an
/// extension; a homeserver proxying the code cannot pass it, so the owner's client sends it here directly).
#[derive(Debug, Deserialize)]
pub struct SubmitToken {
    sid: String,
    client_secret: String,
    token: String,
    #[serde(default)]
    pin: Option<String>,
}

/// Checks the code and marks the session validated. A validated number is what a homeserver attaches to an
/// account (Synapse's msisdn delegate: registration and `3pid/add`), so a number under a registration lock is
/// a new sign-in with it: without its PIN the right code is refused (`IO.TINCAN.REGISTRATION_LOCKED`, nothing
/// stored as validated), and wrong PINs count against the lock as at every sign-in.
pub async fn submit_token(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    Json(req): Json<SubmitToken>,
) -> Result<axum::Json<Value>, ApiError> {
    let s = crate::sessions::check_code(&app, Purpose::Identity, &req.sid, &req.client_secret, &req.token, ip).await?;
    crate::registration_lock::check_number(&app, &s.number, req.pin.as_deref()).await?;
    app.store.validate(&s.sid, app.now()).await?;
    Ok(axum::Json(json!({"success": true})))
}

/// `GET submitToken?sid=…&client_secret=…&token=…` (links in messages).
pub async fn submit_token_get(
    state: State<Arc<App>>,
    ip: ClientIp,
    Query(req): Query<SubmitToken>,
) -> Result<axum::Json<Value>, ApiError> {
    submit_token(state, ip, Json(req)).await
}

/// `getValidated3pid` query.
#[derive(Debug, Deserialize)]
pub struct Validated {
    sid: String,
    client_secret: String,
}

/// The validated number of a session (what the homeserver adds to the account), while the validation is usable
/// (`codes.validated_ttl_secs`).
pub async fn get_validated(
    State(app): State<Arc<App>>,
    Query(q): Query<Validated>,
) -> Result<axum::Json<Value>, ApiError> {
    let s = crate::sessions::find(&app, Purpose::Identity, &q.sid, &q.client_secret).await?;
    let validated_at = crate::sessions::validation(&app, &s)?;
    Ok(axum::Json(json!({
        "medium": "msisdn",
        "address": crate::identity::msisdn_address(&s.number),
        "validated_at": validated_at * 1000,
    })))
}
