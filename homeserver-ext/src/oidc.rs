//! An OpenID Provider for stock Matrix clients: "continue with your phone number". The homeserver (Synapse
//! `oidc_providers`) or MAS (`upstream_oauth2`) sends the user here; the user enters a number and the SMS code
//! (the sign-up's own code sessions and limits), and comes back with an authorization code the relying party
//! redeems for an ID token whose `sub` is the localpart the sign-up API gives that number, so one number is one
//! Matrix account whichever way it signs in.
//!
//! - [`discovery`]: `GET /.well-known/openid-configuration`; [`keys`]: `GET /oauth2/keys.json` and signing.
//! - [`authorize`]: `GET /oauth2/authorize` (authorization code, PKCE S256 only, exact redirect URIs) and the
//!   sign-in pages. [`token`]: `POST /oauth2/token`. [`userinfo`]: `GET|POST /oauth2/userinfo`.
//! - [`clients`]: the registered relying parties. Sign-ins in progress, codes and access tokens are in the
//!   extension's database ([`crate::store::oidc`]), so every node serves every step.
//!
//! Every route sits under the issuer's path, so an issuer `https://ext.example/oidc` serves
//! `https://ext.example/oidc/.well-known/openid-configuration`.

pub mod authorize;
pub mod clients;
pub mod config;
pub mod discovery;
pub mod keys;
mod page;
pub mod token;
pub mod userinfo;

use crate::app::App;
use crate::limits::{Draw, Limited, Limiter, Scope};
use axum::Router;
use axum::routing::get;
use std::net::IpAddr;
use std::sync::Arc;

/// The provider's state: the extension's (its store holds sign-ins, codes and tokens), plus keys and clients.
#[derive(Debug)]
pub struct Provider {
    /// The extension (code sessions, accounts, limits, clock, RNG).
    pub app: Arc<App>,
    /// `[oidc]`.
    pub config: config::OidcConfig,
    /// Signing keys.
    pub keys: keys::Keys,
    /// Registered clients.
    pub clients: Vec<clients::Client>,
    /// The provider's own per-IP buckets (apart from the SMS and code buckets of `app.limiter`).
    limiter: Limiter,
}

/// Why the provider could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A key file.
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// A client secret file.
    #[error("client secret file: {0}")]
    ClientSecret(#[from] std::io::Error),
}

impl Provider {
    /// Loads keys and client secrets from `app.config.oidc`.
    pub fn new(app: Arc<App>) -> Result<Self, SetupError> {
        let config = app.config.oidc.clone();
        let keys = keys::Keys::load(&config.keys)?;
        let clients = config.clients.iter().map(clients::Client::load).collect::<Result<_, _>>()?;
        let limiter = Limiter::new(app.config.limits.clone(), app.clock.clone());
        Ok(Self { app, config, keys, clients, limiter })
    }

    /// The registered client `id`.
    pub fn client(&self, id: &str) -> Option<&clients::Client> {
        self.clients.iter().find(|c| c.id == id)
    }

    /// An endpoint's URL: the issuer plus `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.issuer.trim_end_matches('/'))
    }

    /// One request from `ip` to the provider: one token from its bucket.
    pub fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), Limited> {
        let Some(ip) = ip else { return Ok(()) };
        self.limiter.take(&[Draw { scope: Scope::Ip, conf: &self.config.per_ip, key: ip.to_string() }], 1)
    }

    /// Now, Unix seconds.
    pub fn now(&self) -> i64 {
        self.app.now()
    }
}

/// The provider's routes (empty when `oidc.issuer` is not set), under the issuer's path.
pub fn router<S: Clone + Send + Sync + 'static>(app: Arc<App>) -> Router<S> {
    if !app.config.oidc.enabled() {
        return Router::new();
    }
    let provider = match Provider::new(app.clone()) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            // The config check loads the same files, so this is a file changed since.
            tracing::error!(error = %e, "OpenID provider disabled");
            return Router::new();
        }
    };
    let routes = Router::new()
        .route("/.well-known/openid-configuration", get(discovery::handler))
        .route("/oauth2/keys.json", get(keys::handler))
        .route("/oauth2/authorize", get(authorize::start))
        .route("/oauth2/authorize/phone", axum::routing::post(authorize::phone))
        .route("/oauth2/authorize/code", axum::routing::post(authorize::code))
        .route("/oauth2/token", axum::routing::post(token::handler))
        .route("/oauth2/userinfo", get(userinfo::handler).post(userinfo::handler))
        .with_state(provider);
    let prefix = url::Url::parse(&app.config.oidc.issuer).map(|u| u.path().trim_end_matches('/').to_owned());
    match prefix {
        Ok(p) if !p.is_empty() => Router::new().nest(&p, routes),
        _ => routes,
    }
}

/// The client IP as the extension sees it: the peer, or behind `limits.trusted_proxies` the rightmost
/// untrusted `X-Forwarded-For` hop (the same rule as the rest of the API, [`crate::net::client_ip`]).
pub(crate) fn client_ip(p: &Provider, parts: &axum::http::request::Parts) -> Option<IpAddr> {
    let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())?;
    let forwarded: Vec<&str> =
        parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    Some(p.app.limiter.client_ip(peer, &forwarded))
}

/// PKCE S256 (RFC 7636 §4.2): whether `verifier` hashes to `challenge`.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    use base64::Engine;
    use sha2::Digest;
    use subtle::ConstantTimeEq;
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

/// A PKCE verifier or S256 challenge: 43 to 128 unreserved characters (RFC 7636 §4.1).
pub fn pkce_well_formed(s: &str) -> bool {
    (43..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_well_formed(verifier) && pkce_well_formed(challenge));
        assert!(pkce_s256_matches(verifier, challenge));
        assert!(!pkce_s256_matches(challenge, challenge));
        assert!(!pkce_well_formed("short"));
        assert!(!pkce_well_formed(&"a".repeat(129)));
        assert!(!pkce_well_formed(&format!("{}+", "a".repeat(43))));
    }
}
