//! `PUT /_tincan/client/v1/keys/master`: publishes the caller's master cross-signing key to the directory
//! for each of their numbers, after checking with the homeserver's `/keys/query` that it is really theirs.

use super::Json;
use super::extract::bearer;
use crate::app::App;
use crate::error::ApiError;
use crate::homeserver::{Caller, HomeserverError, call, whoami};
use crate::number::E164;
use axum::extract::State;
use axum::http::HeaderMap;
use ruma::OwnedUserId;
use ruma::api::client::keys::get_keys;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The master key, unpadded standard base64 of the 32-byte ed25519 public key.
    pub ed25519: String,
}

/// Response body.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    /// The numbers whose directory record now carries the key.
    pub numbers: Vec<String>,
    /// The numbers still being ported here: their pending port now carries the key, which the directory
    /// publishes when the number moves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub porting: Vec<String>,
}

/// The key the body names (`M_INVALID_PARAM` when it is not one).
pub(crate) fn master_key(req: &Request) -> Result<tincan_enum_core::MasterKey, ApiError> {
    tincan_enum_core::MasterKey::from_base64(&req.ed25519).map_err(|_| ApiError::InvalidParam("ed25519"))
}

/// Handler; the caller authenticates with their homeserver access token.
pub async fn handler(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(req): Json<Request>,
) -> Result<axum::Json<Response>, ApiError> {
    let token = bearer(&headers).ok_or(ApiError::MissingToken)?;
    let key = master_key(&req)?;
    let hs = app.config.homeserver_url.trim_end_matches('/');
    let user_id = whoami(&app.http, hs, token).await?.ok_or(ApiError::UnknownToken)?;

    let user = OwnedUserId::try_from(user_id.as_str()).map_err(|_| HomeserverError::Malformed("a user ID"))?;
    let mut query = get_keys::v3::Request::new();
    query.device_keys.insert(user.clone(), Vec::new());
    let answer = call(&app.http, hs, Caller::User(token), query).await?;
    // The key's ID is `ed25519:<the key>`; its value is the key.
    let keys = answer.master_keys.get(&user).map(|k| k.get_field::<BTreeMap<String, String>>("keys"));
    let theirs = matches!(keys, Some(Ok(Some(k))) if k.values().any(|v| *v == req.ed25519));
    if !theirs {
        return Err(ApiError::Forbidden("this is not the user's master key on the homeserver"));
    }
    let accounts = app.store.accounts_by_user(&user_id).await?;
    if accounts.is_empty() {
        return Err(ApiError::NotFound);
    }
    let (mut numbers, mut porting) = (Vec::new(), Vec::new());
    for a in accounts {
        let number = E164::parse(&a.number)?;
        if let Some(dir) = &app.directory {
            match dir.publish_key(&number, &key).await {
                Ok(()) => {}
                Err(crate::directory::DirectoryError::HeldByOther) => {
                    // Not ours yet: our pending port carries the key instead (none: the number is not ours).
                    if crate::porting::amend_key(&app, &number, &a, &key).await? {
                        porting.push(a.number);
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        numbers.push(a.number);
    }
    Ok(axum::Json(Response { numbers, porting }))
}
