//! `POST /_matrix/identity/v2/account/register` (OpenID token checked with the user's homeserver),
//! `GET …/account`, `POST …/account/logout`, `…/terms`, and the status endpoints.

use super::IsUser;
use crate::api::{Json, Ruma};
use crate::app::App;
use crate::error::ApiError;
use crate::homeserver::HomeserverError;
use crate::store::IsToken;
use axum::extract::State;
use axum::http::HeaderMap;
use ruma::api::identity_service::{authentication, discovery, tos};
use ruma::{OwnedUserId, ServerName};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// `GET /_matrix/identity/versions`.
pub async fn versions() -> Ruma<discovery::get_supported_versions::Response> {
    Ruma(discovery::get_supported_versions::Response::new(
        ["v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6"].map(String::from).to_vec(),
    ))
}

/// `GET /_matrix/identity/v2`: the server is up.
pub async fn status() -> Ruma<discovery::get_server_status::v2::Response> {
    Ruma(discovery::get_server_status::v2::Response::new())
}

/// `account/register` body: an OpenID token from `POST /_matrix/client/v3/user/{userId}/openid/request_token`.
#[derive(Debug, Deserialize)]
pub struct Register {
    access_token: String,
    #[allow(dead_code)]
    token_type: String,
    matrix_server_name: String,
    #[allow(dead_code)]
    expires_in: u64,
}

/// `account/register` answer: the spec's `token`, and the same value as `access_token`, the name Sydent also
/// answers with and older clients read (ruma's type has only `token`).
#[derive(Debug, Serialize)]
pub struct Registered {
    token: String,
    access_token: String,
}

/// Exchanges an OpenID token for an Identity Service access token.
pub async fn register(
    State(app): State<Arc<App>>,
    Json(req): Json<Register>,
) -> Result<axum::Json<Registered>, ApiError> {
    // Our own homeserver is reached at its configured URL; others by Matrix server discovery from their server
    // name, which the client chose: fetched without redirects, within `identity.homeserver_timeout_secs`, and
    // only at public addresses (or those the operator allowed), so a client cannot make us call into our own
    // network.
    let path = "/_matrix/federation/v1/openid/userinfo";
    let query =
        url::form_urlencoded::Serializer::new(String::new()).append_pair("access_token", &req.access_token).finish();
    let resp = if req.matrix_server_name == app.config.server_name {
        let base = app.config.homeserver_url.trim_end_matches('/');
        let url = url::Url::parse(&format!("{base}{path}?{query}"))
            .map_err(|_| ApiError::InvalidParam("matrix_server_name"))?;
        // The URL holds the user's OpenID token: keep it out of the error (and the log).
        app.http.get(url).send().await.map_err(|e| HomeserverError::from(e.without_url()))?
    } else {
        let name = <&ServerName>::try_from(req.matrix_server_name.as_str())
            .map_err(|_| ApiError::InvalidParam("matrix_server_name"))?;
        app.federation.get(name, &format!("{path}?{query}")).await?
    };
    if !resp.status().is_success() {
        return Err(ApiError::UnknownToken);
    }
    let body = crate::federation::read_limited(resp).await?;
    let info: Value = serde_json::from_slice(&body).map_err(|_| HomeserverError::Malformed("a JSON body"))?;
    let user_id = info["sub"].as_str().ok_or(HomeserverError::Malformed("sub"))?;
    // The homeserver must only vouch for its own users.
    if !user_id.ends_with(&format!(":{}", req.matrix_server_name)) {
        return Err(ApiError::Forbidden("the homeserver vouched for another server's user"));
    }
    // The token names the homeserver that vouched (lookups from other homeservers' users share its budget)
    // and expires.
    let owner = IsToken { user_id: user_id.to_owned(), server_name: req.matrix_server_name.clone() };
    let token = app.with_rng(crate::code::random_id);
    let expires_at = app.now().saturating_add(i64::try_from(app.config.identity.token_ttl_secs).unwrap_or(i64::MAX));
    app.store.add_token(&crate::code::digest(&token), &owner, app.now(), expires_at).await?;
    Ok(axum::Json(Registered { access_token: token.clone(), token }))
}

/// `GET …/account`: the token's user.
pub async fn account(
    IsUser(user_id): IsUser,
) -> Result<Ruma<authentication::get_account_information::v2::Response>, ApiError> {
    let user_id = OwnedUserId::try_from(user_id).map_err(|_| ApiError::Internal("a stored token's user ID"))?;
    Ok(Ruma(authentication::get_account_information::v2::Response::new(user_id)))
}

/// `POST …/account/logout`: forgets the token.
pub async fn logout(
    State(app): State<Arc<App>>,
    _user: IsUser,
    headers: HeaderMap,
) -> Result<Ruma<authentication::logout::v2::Response>, ApiError> {
    let token = crate::api::extract_bearer(&headers).ok_or(ApiError::MissingToken)?;
    app.store.delete_token(&crate::code::digest(token)).await?;
    Ok(Ruma(authentication::logout::v2::Response::new()))
}

/// `GET …/terms`: no terms to accept.
pub async fn terms() -> Ruma<tos::get_terms_of_service::v2::Response> {
    Ruma(tos::get_terms_of_service::v2::Response::new(Default::default()))
}

/// `POST …/terms`: accepting nothing is always fine.
pub async fn accept_terms(_user: IsUser) -> Ruma<tos::accept_terms_of_service::v2::Response> {
    Ruma(tos::accept_terms_of_service::v2::Response::new())
}
