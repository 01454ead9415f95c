//! `GET|POST /oauth2/userinfo` (OpenID Connect Core §5.3): the access token's subject and verified number.

use super::{Provider, client_ip, page};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The claims.
#[derive(Debug, Serialize, Deserialize)]
pub struct UserInfo {
    /// The account's Matrix localpart.
    pub sub: String,
    /// E.164 (with the `phone` scope).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// True (with the `phone` scope).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_verified: Option<bool>,
}

fn refuse(status: StatusCode, challenge: &'static str) -> Response {
    let mut r = (status, page::no_store()).into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    r
}

/// Handler (RFC 6750 errors: a missing token gets a bare challenge, a bad one `invalid_token`).
pub async fn handler(State(p): State<Arc<Provider>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    if let Err(l) = p.check_ip(client_ip(&p, &parts)) {
        let mut r = (StatusCode::TOO_MANY_REQUESTS, page::no_store()).into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(l.retry_after.as_secs().max(1)));
        return r;
    }
    let Some(token) = crate::api::extract_bearer(&parts.headers) else {
        return refuse(StatusCode::UNAUTHORIZED, "Bearer realm=\"tincan\"");
    };
    let g = match p.app.store.oidc_token(&crate::code::digest(token), p.now()).await {
        Ok(Some(g)) => g,
        Ok(None) => return refuse(StatusCode::UNAUTHORIZED, "Bearer realm=\"tincan\", error=\"invalid_token\""),
        Err(e) => {
            tracing::error!(error = %e, "OpenID provider storage failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, page::no_store()).into_response();
        }
    };
    let phone = g.scope.split(' ').any(|s| s == "phone");
    let info = UserInfo {
        sub: g.sub,
        phone_number: phone.then_some(g.phone_number),
        phone_number_verified: phone.then_some(true),
    };
    (page::no_store(), axum::Json(info)).into_response()
}
