//! `POST /_tincan/client/v1/register/verify`: code → the Matrix account of the number and a login for a new
//! device. A number seen before gets the same account.

use super::{ClientIp, Json};
use crate::app::App;
use crate::error::ApiError;
use crate::homeserver::Login;
use crate::number::E164;
use crate::store::{Account, Binding, Purpose};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// From `register/request`.
    pub sid: String,
    /// The client's secret from `register/request`.
    pub client_secret: String,
    /// The code from the SMS.
    pub code: String,
    /// The registration lock PIN, when the account has one (`IO.TINCAN.REGISTRATION_LOCKED` says so).
    #[serde(default)]
    pub pin: Option<String>,
}

/// Response body.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    /// The account's Matrix ID.
    pub user_id: String,
    /// Where to log in.
    pub homeserver_url: String,
    /// How to log in.
    pub login: Login,
    /// True when the account was created by this request.
    pub new_account: bool,
    /// When another provider holds the number: the port this sign-in asked the directory for (see
    /// [`crate::porting`]). `state` is `pending` until the other provider releases the number or its window
    /// ends (`window_ends_at_ms`); until then the account exists but the number does not lead to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<crate::porting::PortStatus>,
}

/// Handler.
pub async fn handler(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    Json(req): Json<Request>,
) -> Result<axum::Json<Response>, ApiError> {
    let session =
        crate::sessions::check_code(&app, Purpose::Register, &req.sid, &req.client_secret, &req.code, ip).await?;
    let number = E164::parse(&session.number)?;
    let now = app.now();
    // A locked account needs its PIN too; a refusal leaves the session usable for the retry with the PIN.
    let known = app.store.account_by_number(number.as_str()).await?;
    if let Some(a) = &known {
        crate::registration_lock::check(&app, &a.user_id, req.pin.as_deref()).await?;
    }
    // Used up before anything is created or minted: of concurrent or replayed verifies with the right code,
    // only the one that consumes the session gets a login (a homeserver failure after this needs a new code).
    if !app.store.consume(&session.sid, now).await? {
        return Err(ApiError::NoValidSession);
    }
    let (account, new_account) = account_for(&app, &number, known).await?;
    let login = app.homeserver.login(&account.localpart).await?;
    let port = after_sign_in(&app, &number, &account).await?;
    tracing::info!(number = %number.redacted(), user_id = %account.user_id, new_account, porting = port.is_some(), "signed in");
    Ok(axum::Json(Response {
        user_id: account.user_id,
        homeserver_url: app.config.homeserver_url.clone(),
        login,
        new_account,
        port,
    }))
}

/// The Matrix account of `number`, created (with a random localpart) the first time the number signs in; true
/// when this call created it. Sign-up and the OpenID provider share it, so a number is one account either way.
/// `known` is the number's account as the caller read it for the registration lock (not read again); when it
/// had none, a concurrent sign-in that created one meanwhile wins the insert and its account is returned.
pub(crate) async fn account_for(app: &App, number: &E164, known: Option<Account>) -> Result<(Account, bool), ApiError> {
    if let Some(a) = known {
        return Ok((a, false));
    }
    let localpart = app.with_rng(|r| random_localpart(&app.config.homeserver.localpart_prefix, r));
    let user_id = format!("@{localpart}:{}", app.config.server_name);
    app.homeserver.ensure_user(&localpart).await?;
    let wanted =
        Account { number: number.as_str().into(), localpart, user_id, created_at: app.now(), published_at: None };
    let stored = app.store.insert_account(&wanted).await?;
    let new = stored.localpart == wanted.localpart;
    Ok((stored, new))
}

/// What follows a verified sign-in: the number is published to the directory if it was not yet, and becomes a
/// verified identity of the user (findable through the Identity Service lookup). When another provider holds
/// it, the sign-in's SMS verification is our proof of possession: a port is filed instead (the number is bound
/// here when it completes) and returned.
pub(crate) async fn after_sign_in(
    app: &App,
    number: &E164,
    account: &Account,
) -> Result<Option<crate::porting::PortStatus>, ApiError> {
    if account.published_at.is_none() && publish(app, number, account).await == Published::HeldByOther {
        return match crate::porting::file(app, number, account).await {
            Ok(port) => Ok(Some(port)),
            Err(e) => {
                tracing::warn!(error = %e, number = %number.redacted(), "filing a port failed; retried at the next sign-in");
                Ok(None)
            }
        };
    }
    crate::identity::bind_number(app, &Binding { number: account.number.clone(), user_id: account.user_id.clone() })
        .await?;
    Ok(None)
}

#[derive(Debug, PartialEq, Eq)]
enum Published {
    /// Published now, or not (no directory, a failure: logged, retried at the next sign-in).
    Tried,
    /// Another provider holds the number.
    HeldByOther,
}

/// Publishes to the directory; a failure is logged and retried at the next sign-in.
async fn publish(app: &App, number: &E164, account: &Account) -> Published {
    let Some(dir) = &app.directory else { return Published::Tried };
    match dir.publish(number, &account.user_id).await {
        Ok(()) => {
            if let Err(e) = app.store.mark_published(&account.number, Some(app.now())).await {
                tracing::warn!(error = %e, "could not record directory publication");
            }
        }
        Err(crate::directory::DirectoryError::HeldByOther) => return Published::HeldByOther,
        Err(e) => tracing::warn!(error = %e, number = %number.redacted(), "directory publication failed"),
    }
    Published::Tried
}

/// `prefix` + 16 random base32 characters (lowercase, valid in Matrix localparts); never derived from the
/// number.
pub fn random_localpart<R: rand::Rng + ?Sized>(prefix: &str, rng: &mut R) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let tail: String = (0..16).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("{prefix}{tail}")
}
