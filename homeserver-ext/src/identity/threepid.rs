//! `POST /_matrix/identity/v2/3pid/bind` and `…/3pid/unbind`.

use super::{IsUser, bind_number, msisdn_address};
use crate::api::Ruma;
use crate::app::App;
use crate::error::ApiError;
use crate::number::E164;
use crate::store::{Binding, Purpose};
use axum::extract::State;
use ruma::api::identity_service::association::{bind_3pid, unbind_3pid};
use ruma::thirdparty::Medium;
use ruma::{MilliSecondsSinceUnixEpoch, ServerSignatures, UInt};
use std::sync::Arc;

/// Binds the number validated in a session to `mxid` (the caller's own Matrix ID). The validation must be
/// usable (`codes.validated_ttl_secs`) and is used up by the bind; moving a number bound to another Matrix ID
/// needs a validation made after that binding and within `codes.rebind_within_secs`, so a validation kept
/// from before the number changed hands cannot take it.
pub async fn bind(
    State(app): State<Arc<App>>,
    IsUser(user): IsUser,
    Ruma(req): Ruma<bind_3pid::v2::Request>,
) -> Result<Ruma<bind_3pid::v2::Response>, ApiError> {
    if user != req.mxid.as_str() {
        return Err(ApiError::Forbidden("mxid is not the token's user"));
    }
    let s = crate::sessions::find(&app, Purpose::Identity, req.sid.as_str(), req.client_secret.as_str()).await?;
    let validated_at = crate::sessions::validation(&app, &s)?;
    let now = app.now();
    if let Some((owner, since)) = app.store.binding_since(&s.number).await?
        && owner.user_id != req.mxid.as_str()
        && (validated_at < since || now - validated_at > app.config.codes.rebind_within_secs as i64)
    {
        return Err(ApiError::FreshValidationNeeded);
    }
    // A number bound to an account with a registration lock does not move by SMS validation alone.
    if let Some(owner) = app.store.binding(&s.number).await?
        && owner.user_id != req.mxid.as_str()
        && crate::registration_lock::holds(&app, &owner.user_id).await?
    {
        return Err(ApiError::RegistrationLocked);
    }
    if !app.store.consume(&s.sid, now).await? {
        return Err(ApiError::NoValidSession);
    }
    bind_number(&app, &Binding { number: s.number.clone(), user_id: req.mxid.to_string() }).await?;
    let ms = |t: i64| UInt::try_from(t).map(MilliSecondsSinceUnixEpoch).map_err(|_| ApiError::Internal("a time"));
    let now_ms = now.saturating_mul(1000);
    Ok(Ruma(bind_3pid::v2::Response::new(
        msisdn_address(&s.number).to_owned(),
        Medium::Msisdn,
        req.mxid,
        ms(now_ms)?,
        ms(now_ms.saturating_add(100 * 365 * 86_400_000))?,
        ms(now_ms)?,
        ServerSignatures::new(),
    )))
}

/// Removes the caller's own binding.
pub async fn unbind(
    State(app): State<Arc<App>>,
    IsUser(user): IsUser,
    Ruma(req): Ruma<unbind_3pid::v2::Request>,
) -> Result<Ruma<unbind_3pid::v2::Response>, ApiError> {
    if user != req.mxid.as_str() {
        return Err(ApiError::Forbidden("mxid is not the token's user"));
    }
    let number = unbound_number(&req)?;
    if !app.store.unbind(number.as_str(), req.mxid.as_str()).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Ruma(unbind_3pid::v2::Response::new()))
}

/// The number an `unbind` names: an msisdn `threepid` whose address is a valid number (digits, `+` optional).
pub(crate) fn unbound_number(req: &unbind_3pid::v2::Request) -> Result<E164, ApiError> {
    if req.threepid.medium != Medium::Msisdn {
        return Err(ApiError::InvalidParam("threepid.medium"));
    }
    Ok(E164::parse(&format!("+{}", msisdn_address(&req.threepid.address)))?)
}
