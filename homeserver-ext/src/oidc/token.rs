//! `POST /oauth2/token` (RFC 6749 §4.1.3, OpenID Connect Core §3.1.3): an authorization code, the PKCE
//! verifier and the client's credentials → an ID token (and an access token for `userinfo`).

use super::authorize::parse_params;
use super::clients::{Credentials, parse_basic};
use super::{Provider, client_ip, page, pkce_s256_matches, pkce_well_formed};
use crate::store::{OidcAccessToken, OidcCode};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

const MAX_BODY: usize = 16 * 1024;

/// A token endpoint error (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// A parameter is missing, repeated or malformed, or the body is not a form.
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// Unknown client or wrong secret. `basic` when the client used HTTP Basic (answered with a challenge).
    #[error("invalid_client")]
    InvalidClient {
        /// The client tried `client_secret_basic`.
        basic: bool,
    },
    /// The code is unknown, expired, replayed, issued to another client or for another redirect URI, or the
    /// PKCE verifier does not match.
    #[error("invalid_grant: {0}")]
    InvalidGrant(&'static str),
    /// Not `authorization_code`.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// Too many requests from this address.
    #[error("rate limited")]
    RateLimited(Duration),
    /// Signing or storing failed.
    #[error("server_error: {0}")]
    Server(&'static str),
}

/// The error body.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The RFC 6749 code.
    pub error: String,
    /// Human-readable detail.
    pub error_description: String,
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let (status, error, description) = match &self {
            TokenError::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", *d),
            TokenError::InvalidClient { .. } => {
                (StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed")
            }
            TokenError::InvalidGrant(d) => (StatusCode::BAD_REQUEST, "invalid_grant", *d),
            TokenError::UnsupportedGrantType => {
                (StatusCode::BAD_REQUEST, "unsupported_grant_type", "only authorization_code is supported")
            }
            // RFC 6749 has no code for this; the status says it and `Retry-After` when to come back.
            TokenError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "slow_down", "too many requests"),
            TokenError::Server(d) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", *d),
        };
        let body = ErrorBody { error: error.into(), error_description: description.into() };
        let mut r = (status, page::no_store(), axum::Json(body)).into_response();
        match self {
            TokenError::InvalidClient { basic: true } => {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"tincan\""));
            }
            TokenError::RateLimited(wait) => {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
            }
            _ => {}
        }
        r
    }
}

/// The success body.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenResponse {
    /// For `userinfo`.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// The signed ID token.
    pub id_token: String,
    /// The granted scope.
    pub scope: String,
}

/// The ID token's claims.
#[derive(Debug, Serialize, Deserialize)]
pub struct IdTokenClaims {
    /// The issuer.
    pub iss: String,
    /// The account's Matrix localpart.
    pub sub: String,
    /// The client.
    pub aud: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// When the number was verified.
    pub auth_time: i64,
    /// The request's nonce.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// E.164.
    pub phone_number: String,
    /// Always true: the number was verified by SMS code.
    pub phone_number_verified: bool,
}

fn stored(e: crate::store::StoreError) -> TokenError {
    tracing::error!(error = %e, "OpenID provider storage failed");
    TokenError::Server("storage failed")
}

/// A code presented again: the token it gave is revoked (RFC 6749 §4.1.2).
async fn replayed(p: &Provider, g: &OidcCode) -> TokenError {
    if let Some(token) = &g.redeemed_token
        && let Err(e) = p.app.store.delete_oidc_token(token).await
    {
        return stored(e);
    }
    tracing::warn!(client = %g.client_id, "an authorization code was presented again; its token is revoked");
    TokenError::InvalidGrant("the code was already used; its tokens are revoked")
}

/// Handler.
pub async fn handler(State(p): State<Arc<Provider>>, req: Request) -> Result<Response, TokenError> {
    let (parts, body) = req.into_parts();
    p.check_ip(client_ip(&p, &parts)).map_err(|l| TokenError::RateLimited(l.retry_after))?;
    let ctype = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ctype.starts_with("application/x-www-form-urlencoded") {
        return Err(TokenError::InvalidRequest("the body must be application/x-www-form-urlencoded"));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| TokenError::InvalidRequest("body too large"))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| TokenError::InvalidRequest("the body is not UTF-8"))?;
    let f = parse_params(text).ok_or(TokenError::InvalidRequest("a parameter is repeated"))?;
    let field = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());

    // Client authentication: exactly one method.
    let basic = parts.headers.get(header::AUTHORIZATION).map(|v| v.to_str().ok().and_then(parse_basic));
    let creds = match (basic, field("client_secret")) {
        (Some(_), Some(_)) => return Err(TokenError::InvalidRequest("more than one client authentication method")),
        (Some(None), None) => return Err(TokenError::InvalidClient { basic: true }),
        (Some(Some((id, secret))), None) => {
            if field("client_id").is_some_and(|body_id| body_id != id) {
                return Err(TokenError::InvalidRequest("client_id differs from the authenticated client"));
            }
            Credentials::Basic { id, secret }
        }
        (None, Some(secret)) => {
            let id = field("client_id").ok_or(TokenError::InvalidRequest("client_id is required"))?;
            Credentials::Post { id: id.to_owned(), secret: secret.to_owned() }
        }
        (None, None) => return Err(TokenError::InvalidClient { basic: false }),
    };
    let is_basic = matches!(creds, Credentials::Basic { .. });
    let client = p
        .client(creds.id())
        .filter(|c| c.secret_matches(creds.secret()))
        .ok_or(TokenError::InvalidClient { basic: is_basic })?;

    if field("grant_type").ok_or(TokenError::InvalidRequest("grant_type is required"))? != "authorization_code" {
        return Err(TokenError::UnsupportedGrantType);
    }
    let code = field("code").ok_or(TokenError::InvalidRequest("code is required"))?;
    let redirect_uri = field("redirect_uri").ok_or(TokenError::InvalidRequest("redirect_uri is required"))?;
    let verifier = field("code_verifier").ok_or(TokenError::InvalidRequest("code_verifier is required (PKCE)"))?;
    if !pkce_well_formed(verifier) {
        return Err(TokenError::InvalidRequest("code_verifier must be 43 to 128 unreserved characters"));
    }

    let now = p.now();
    let store = &p.app.store;
    let code_digest = crate::code::digest(code);
    let grant = match store.oidc_code(&code_digest).await.map_err(stored)? {
        // Another client cannot revoke this one's token by presenting its code.
        Some(g) if g.client_id != client.id => {
            return Err(TokenError::InvalidGrant("the code was issued to another client"));
        }
        Some(g) if g.redeemed_token.is_some() => return Err(replayed(&p, &g).await),
        Some(g) if g.expires_at > now => g,
        _ => return Err(TokenError::InvalidGrant("the code is unknown or expired")),
    };
    // Checked before the code is used up: someone else's guess must not burn the legitimate holder's code.
    if grant.redirect_uri != redirect_uri {
        return Err(TokenError::InvalidGrant("redirect_uri differs from the authorization request"));
    }
    if !pkce_s256_matches(verifier, &grant.code_challenge) {
        return Err(TokenError::InvalidGrant("code_verifier does not match the code_challenge"));
    }

    let claims = IdTokenClaims {
        iss: p.config.issuer.clone(),
        sub: grant.sub.clone(),
        aud: client.id.clone(),
        exp: now + p.config.id_token_ttl_secs as i64,
        iat: now,
        auth_time: grant.auth_time,
        nonce: grant.nonce.clone(),
        phone_number: grant.phone_number.clone(),
        phone_number_verified: true,
    };
    let id_token = p.keys.sign(&claims).map_err(|e| {
        tracing::error!(error = %e, "ID token signing failed");
        TokenError::Server("signing failed")
    })?;
    let expires_in = p.config.access_token_ttl_secs;
    let access_token = p.app.with_rng(crate::code::random_id);
    let access = OidcAccessToken {
        digest: crate::code::digest(&access_token),
        sub: grant.sub.clone(),
        phone_number: grant.phone_number.clone(),
        scope: grant.scope.clone(),
        expires_at: now + expires_in as i64,
    };
    // The token is stored before the code is marked redeemed with it, so that a redemption losing the race
    // below always finds the winner's token to revoke.
    store.insert_oidc_token(&access, now).await.map_err(stored)?;
    if !store.redeem_oidc_code(&code_digest, &access.digest, now, access.expires_at).await.map_err(stored)? {
        store.delete_oidc_token(&access.digest).await.map_err(stored)?;
        return Err(match store.oidc_code(&code_digest).await.map_err(stored)? {
            Some(g) if g.redeemed_token.is_some() => replayed(&p, &g).await,
            _ => TokenError::InvalidGrant("the code is unknown or expired"),
        });
    }
    let body = TokenResponse { access_token, token_type: "Bearer".into(), expires_in, id_token, scope: grant.scope };
    Ok((page::no_store(), axum::Json(body)).into_response())
}
