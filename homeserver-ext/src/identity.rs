//! Identity Service API for phone numbers (`/_matrix/identity/v2/…`, plus the `api/v1` paths Synapse's
//! `account_threepid_delegates.msisdn` calls).
//!
//! Numbers are bound to Matrix IDs by sign-up (automatically) and by `3pid/bind`; `lookup` answers hashed
//! queries (sha256 with the current pepper, or `none`) from those bindings and, for numbers other providers
//! registered in the directory, from the [`crate::mirror`] and DNSSEC-validated DNS.
//!
//! Every v2 endpoint but `account/register`, `GET terms` and the status ones requires an Identity Service
//! access token (spec: "Requires authentication"); the `api/v1` validation paths the homeserver's msisdn
//! delegate calls stay unauthenticated, as Synapse sends no token there.

mod account;
pub(crate) mod lookup;
pub(crate) mod threepid;
pub(crate) mod validate;

use crate::app::App;
use crate::error::ApiError;
use crate::store::{Binding, IsToken};
use axum::Router;
use axum::routing::{get, post};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Refuses a request without a valid Identity Service access token (`M_UNAUTHORIZED`/`M_MISSING_TOKEN`).
async fn require_token(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    authenticate(&app, req.headers()).await?;
    Ok(next.run(req).await)
}

/// The Identity Service routes.
pub fn router(app: Arc<App>) -> Router<Arc<App>> {
    let mut r = Router::new()
        .route("/_matrix/identity/versions", get(account::versions))
        .route("/_matrix/identity/v2", get(account::status))
        .route("/_matrix/identity/api/v1", get(account::status))
        .route("/_matrix/identity/v2/hash_details", get(lookup::hash_details))
        .route("/_matrix/identity/v2/lookup", post(lookup::lookup))
        .route("/_matrix/identity/v2/3pid/bind", post(threepid::bind))
        .route("/_matrix/identity/v2/3pid/unbind", post(threepid::unbind))
        .route("/_matrix/identity/v2/account/register", post(account::register))
        .route("/_matrix/identity/v2/account", get(account::account))
        .route("/_matrix/identity/v2/account/logout", post(account::logout))
        .route("/_matrix/identity/v2/terms", get(account::terms).post(account::accept_terms));
    // The homeserver's msisdn delegate calls the unauthenticated v1 paths; clients use v2, with a token.
    for v in ["v2", "api/v1"] {
        let mut paths = Router::new()
            .route(&format!("/_matrix/identity/{v}/validate/msisdn/requestToken"), post(validate::request_token))
            .route(
                &format!("/_matrix/identity/{v}/validate/msisdn/submitToken"),
                post(validate::submit_token).get(validate::submit_token_get),
            )
            .route(&format!("/_matrix/identity/{v}/3pid/getValidated3pid"), get(validate::get_validated));
        if v == "v2" {
            paths = paths.route_layer(axum::middleware::from_fn_with_state(app.clone(), require_token));
        }
        r = r.merge(paths);
    }
    r
}

/// The `address` of a phone number in the Identity Service API: its digits, no `+`.
pub fn msisdn_address(e164: &str) -> &str {
    e164.trim_start_matches('+')
}

/// `sha256` lookup hash: unpadded URL-safe base64 of SHA-256(`"<address> msisdn <pepper>"`).
pub fn lookup_hash(address: &str, pepper: &str) -> String {
    let digest = Sha256::digest(format!("{address} msisdn {pepper}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// The current pepper, created on first use.
pub async fn current_pepper(app: &App) -> Result<String, ApiError> {
    if let Some(p) = app.store.current_pepper().await? {
        return Ok(p);
    }
    let p = app.with_rng(crate::code::random_id);
    app.store.add_first_pepper(&p, app.now()).await?;
    // Two nodes (or requests) may race here: the first pepper stored is the one for both.
    Ok(app.store.current_pepper().await?.unwrap_or(p))
}

/// Makes a fresh pepper current and re-hashes every binding and mirrored number with it (one transaction);
/// clients holding the old one get `M_INVALID_PEPPER` and fetch `hash_details` again.
pub async fn rotate_pepper(app: &App) -> Result<String, ApiError> {
    let p = app.with_rng(crate::code::random_id);
    app.store.rotate_pepper(&p, app.now(), &|number| lookup_hash(msisdn_address(number), &p)).await?;
    Ok(p)
}

/// Binds a number to a Matrix ID (re-binding replaces the previous owner). Its hash is made with the pepper
/// current in the storage transaction that writes it, so a rotation running meanwhile cannot leave it hashed
/// with a pepper lookups no longer use.
pub async fn bind_number(app: &App, b: &Binding) -> Result<(), ApiError> {
    let hash = |number: &str, pepper: &str| lookup_hash(msisdn_address(number), pepper);
    match app.store.bind(b, &hash, app.now()).await {
        // Only before the first pepper (it is never deleted): make it, then bind under it.
        Err(crate::store::StoreError::NoPepper) => {
            current_pepper(app).await?;
            app.store.bind(b, &hash, app.now()).await?;
        }
        done => done?,
    }
    Ok(())
}

/// The Identity Service user of a request, from its access token; as an extractor it runs before the body is
/// read, so a request without a valid token is refused 401 whatever its body.
#[derive(Debug, Clone)]
pub struct IsUser(pub String);

impl axum::extract::FromRequestParts<Arc<App>> for IsUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        authenticate(app, &parts.headers).await.map(|c| IsUser(c.0.user_id))
    }
}

/// The owner of a request's Identity Service access token (the user and the homeserver that vouched for them),
/// and the token's digest (what budgets per token are keyed by; the token itself is kept nowhere).
#[derive(Debug, Clone)]
pub struct IsCaller(pub IsToken, pub String);

impl axum::extract::FromRequestParts<Arc<App>> for IsCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        authenticate(app, &parts.headers).await
    }
}

/// The owner of an Identity Service access token (`Authorization: Bearer` or `access_token` query) with the
/// token's digest, unless it is unknown or expired (`identity.token_ttl_secs` after `account/register`).
pub async fn authenticate(app: &App, headers: &axum::http::HeaderMap) -> Result<IsCaller, ApiError> {
    let token = crate::api::extract_bearer(headers).ok_or(ApiError::MissingToken)?;
    let digest = crate::code::digest(token);
    let owner = app.store.token_user(&digest, app.now()).await?.ok_or(ApiError::UnknownToken)?;
    Ok(IsCaller(owner, digest))
}

#[cfg(test)]
mod tests {
    #[test]
    fn spec_example_shape() {
        // The spec's example hashes "alice@example.com email matrixrocks"; ours uses the msisdn medium.
        let h = super::lookup_hash("15555550123", "matrixrocks");
        assert_eq!(h.len(), 43);
        assert!(!h.contains('=') && !h.contains('+') && !h.contains('/'));
    }
}
