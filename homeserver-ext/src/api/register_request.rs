//! `POST /_tincan/client/v1/register/request`: phone number → SMS with a 6-digit code.

use super::{ClientIp, Json};
use crate::app::App;
use crate::error::ApiError;
use crate::number::E164;
use crate::store::Purpose;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The number in international form.
    pub phone: String,
    /// A secret the client generated; needed to verify.
    pub client_secret: String,
    /// Increase to have the SMS sent again; repeating a value is idempotent.
    pub send_attempt: u64,
}

/// Response body.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    /// The session id.
    pub sid: String,
    /// Seconds the code stays valid.
    pub expires_in: u64,
    /// Milliseconds before a resend is allowed.
    pub resend_after_ms: u64,
}

/// Handler.
pub async fn handler(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    Json(req): Json<Request>,
) -> Result<axum::Json<Response>, ApiError> {
    let number = E164::parse(&req.phone)?;
    let s = crate::sessions::start(&app, Purpose::Register, &number, &req.client_secret, req.send_attempt, ip).await?;
    Ok(axum::Json(Response { sid: s.sid, expires_in: s.expires_in, resend_after_ms: s.resend_after_ms }))
}
