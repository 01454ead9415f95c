//! `GET /.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §3, RFC 8414).

use super::Provider;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Serialize;
use std::sync::Arc;

/// The provider metadata.
#[derive(Debug, Serialize)]
pub struct Metadata {
    /// The issuer, exactly as in ID tokens.
    pub issuer: String,
    /// `GET /oauth2/authorize`.
    pub authorization_endpoint: String,
    /// `POST /oauth2/token`.
    pub token_endpoint: String,
    /// `GET /oauth2/userinfo`.
    pub userinfo_endpoint: String,
    /// `GET /oauth2/keys.json`.
    pub jwks_uri: String,
    /// Only the authorization code flow.
    pub response_types_supported: &'static [&'static str],
    /// Only query responses.
    pub response_modes_supported: &'static [&'static str],
    /// Only `authorization_code`.
    pub grant_types_supported: &'static [&'static str],
    /// `public`: every client sees the same `sub` (the Matrix localpart).
    pub subject_types_supported: &'static [&'static str],
    /// The algorithms of the published keys.
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    /// `openid` and `phone`.
    pub scopes_supported: &'static [&'static str],
    /// Client authentication at the token endpoint.
    pub token_endpoint_auth_methods_supported: &'static [&'static str],
    /// Only S256.
    pub code_challenge_methods_supported: &'static [&'static str],
    /// The claims in ID tokens and userinfo.
    pub claims_supported: &'static [&'static str],
    /// `prompt` values understood.
    pub prompt_values_supported: &'static [&'static str],
}

/// Handler.
pub async fn handler(State(p): State<Arc<Provider>>) -> impl IntoResponse {
    let m = Metadata {
        issuer: p.config.issuer.clone(),
        authorization_endpoint: p.url("/oauth2/authorize"),
        token_endpoint: p.url("/oauth2/token"),
        userinfo_endpoint: p.url("/oauth2/userinfo"),
        jwks_uri: p.url("/oauth2/keys.json"),
        response_types_supported: &["code"],
        response_modes_supported: &["query"],
        grant_types_supported: &["authorization_code"],
        subject_types_supported: &["public"],
        id_token_signing_alg_values_supported: p.keys.algorithms(),
        scopes_supported: &["openid", "phone"],
        token_endpoint_auth_methods_supported: &["client_secret_basic", "client_secret_post"],
        code_challenge_methods_supported: &["S256"],
        claims_supported: &[
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "phone_number",
            "phone_number_verified",
        ],
        prompt_values_supported: &["none", "login"],
    };
    ([(axum::http::header::CACHE_CONTROL, "public, max-age=300")], axum::Json(m))
}
