//! `POST …/validate/msisdn/requestToken`, `…/submitToken` and `GET …/3pid/getValidated3pid`.

use crate::api::{ClientIp, Json, Ruma};
use crate::app::App;
use crate::error::ApiError;
use crate::number::E164;
use crate::store::Purpose;
use axum::extract::{Query, State};
use ruma::UInt;
use ruma::api::identity_service::association::check_3pid_validity;
use ruma::api::identity_service::association::msisdn::{create_msisdn_validation_session, validate_msisdn};
use ruma::thirdparty::Medium;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `requestToken` answer: the spec's `sid`, and what Sydent also answers and clients show ("a code was sent to
/// …"): the number's digits, its international form, `success` (ruma's type has only `sid`).
#[derive(Debug, Serialize)]
pub struct TokenRequested {
    sid: String,
    msisdn: String,
    intl_fmt: String,
    success: bool,
}

/// Sends a code; the number may be national (`country` says how to read it) or international.
pub async fn request_token(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    Ruma(req): Ruma<create_msisdn_validation_session::v2::Request>,
) -> Result<axum::Json<TokenRequested>, ApiError> {
    let number = E164::parse_in(&req.phone_number, &req.country)?;
    let (secret, attempt) = (req.client_secret.as_str(), req.send_attempt.into());
    let s = crate::sessions::start(&app, Purpose::Identity, &number, secret, attempt, ip).await?;
    Ok(axum::Json(TokenRequested {
        sid: s.sid,
        msisdn: number.digits().to_owned(),
        intl_fmt: number.as_str().to_owned(),
        success: true,
    }))
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
) -> Result<Ruma<validate_msisdn::v2::Response>, ApiError> {
    let s = crate::sessions::check_code(&app, Purpose::Identity, &req.sid, &req.client_secret, &req.token, ip).await?;
    crate::registration_lock::check_number(&app, &s.number, req.pin.as_deref()).await?;
    app.store.validate(&s.sid, app.now()).await?;
    Ok(Ruma(validate_msisdn::v2::Response::new(true)))
}

/// `GET submitToken?sid=…&client_secret=…&token=…` (links in messages).
pub async fn submit_token_get(
    state: State<Arc<App>>,
    ip: ClientIp,
    Query(req): Query<SubmitToken>,
) -> Result<Ruma<validate_msisdn::v2::Response>, ApiError> {
    submit_token(state, ip, Json(req)).await
}

/// The validated number of a session (what the homeserver adds to the account), while the validation is usable
/// (`codes.validated_ttl_secs`).
pub async fn get_validated(
    State(app): State<Arc<App>>,
    Ruma(q): Ruma<check_3pid_validity::v2::Request>,
) -> Result<Ruma<check_3pid_validity::v2::Response>, ApiError> {
    let s = crate::sessions::find(&app, Purpose::Identity, q.sid.as_str(), q.client_secret.as_str()).await?;
    let validated_at = crate::sessions::validation(&app, &s)?;
    let validated_at_ms =
        UInt::try_from(validated_at.saturating_mul(1000)).map_err(|_| ApiError::Internal("a validation time"))?;
    Ok(Ruma(check_3pid_validity::v2::Response::new(
        Medium::Msisdn,
        crate::identity::msisdn_address(&s.number).to_owned(),
        validated_at_ms,
    )))
}
