//! `[oidc]`: the OpenID provider's issuer, signing keys, registered clients and limits.

use crate::config::BucketConfig;
use serde::{Deserialize, Serialize};
use tincan_common::Secret;

/// The OpenID provider. Disabled while `issuer` is empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// The issuer URL exactly as relying parties configure it (`https://ext.example.org`, or with a path, which
    /// then prefixes every provider route). Empty disables the provider.
    pub issuer: String,
    /// Signing keys. The first one not `retired` signs; every listed key is published in the JWKS, so a key
    /// being rotated out stays listed (`retired = true`) until the ID tokens it signed have expired.
    pub keys: Vec<SigningKeyConfig>,
    /// The relying parties (the homeserver, MAS).
    pub clients: Vec<ClientConfig>,
    /// How long an authorization code can be redeemed.
    pub code_ttl_secs: u64,
    /// Lifetime of ID tokens.
    pub id_token_ttl_secs: u64,
    /// Lifetime of access tokens (good for `userinfo` only).
    pub access_token_ttl_secs: u64,
    /// How long a sign-in page stays usable after the client sent the user to it.
    pub request_ttl_secs: u64,
    /// Provider requests (authorize, token, userinfo, page posts) per client IP. SMS sent and codes checked are
    /// also counted by the `[limits]` buckets, as for the API.
    pub per_ip: BucketConfig,
    /// Sign-ins in progress (stored in the database) at most; new sign-ins are refused beyond it. Codes and
    /// tokens are bounded by the SMS limits, since each one needs a number verified by code.
    pub max_pending: usize,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            keys: Vec::new(),
            clients: Vec::new(),
            code_ttl_secs: 60,
            id_token_ttl_secs: 300,
            access_token_ttl_secs: 300,
            request_ttl_secs: 900,
            per_ip: BucketConfig { burst: 60, refill: 60, period_secs: 60 },
            max_pending: 100_000,
        }
    }
}

/// A JWS algorithm the provider signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (the default of Synapse and MAS).
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

/// One signing key: a PEM private key read from a file (PKCS#8, or PKCS#1 for RSA).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    /// The key id (`kid`) published in the JWKS and put in token headers.
    pub kid: String,
    /// The algorithm.
    pub alg: SigningAlg,
    /// The PEM file.
    pub private_key_file: String,
    /// Published but no longer used to sign.
    #[serde(default)]
    pub retired: bool,
}

/// A registered relying party.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `client_id`.
    pub client_id: String,
    /// The client secret (`client_secret_basic` or `client_secret_post`); or use `client_secret_file`.
    #[serde(default)]
    pub client_secret: Secret,
    /// A file holding the client secret (trailing newline ignored).
    #[serde(default)]
    pub client_secret_file: String,
    /// Redirect URIs, compared exactly (no prefix or wildcard matching).
    pub redirect_uris: Vec<String>,
}

impl OidcConfig {
    /// Whether the provider is served.
    pub fn enabled(&self) -> bool {
        !self.issuer.is_empty()
    }

    /// Every problem, each naming its key; empty when disabled.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.enabled() {
            return p;
        }
        match url::Url::parse(&self.issuer) {
            Ok(u)
                if (u.scheme() == "https" || u.scheme() == "http") && u.query().is_none() && u.fragment().is_none() => {
            }
            _ => p.push(format!("oidc.issuer: {:?} must be an http(s) URL without query or fragment", self.issuer)),
        }
        if !self.keys.iter().any(|k| !k.retired) {
            p.push("oidc.keys: at least one key that is not retired is required".into());
        }
        for (i, k) in self.keys.iter().enumerate() {
            if k.kid.is_empty() || self.keys[..i].iter().any(|o| o.kid == k.kid) {
                p.push(format!("oidc.keys[{i}].kid: must be set and unique"));
            }
            if let Err(e) = super::keys::SigningKey::load(k) {
                p.push(format!("oidc.keys[{i}]: {e}"));
            }
        }
        if self.clients.is_empty() {
            p.push("oidc.clients: at least one client is required".into());
        }
        for (i, c) in self.clients.iter().enumerate() {
            if c.client_id.is_empty() || self.clients[..i].iter().any(|o| o.client_id == c.client_id) {
                p.push(format!("oidc.clients[{i}].client_id: must be set and unique"));
            }
            match super::clients::secret_of(c) {
                Ok(s) if s.expose().len() >= 16 => {}
                Ok(_) => p.push(format!(
                    "oidc.clients[{i}]: client_secret (or client_secret_file) of at least 16 characters required"
                )),
                Err(e) => p.push(format!("oidc.clients[{i}].client_secret_file: {e}")),
            }
            if c.redirect_uris.is_empty() {
                p.push(format!("oidc.clients[{i}].redirect_uris: at least one is required"));
            }
            for r in &c.redirect_uris {
                if url::Url::parse(r).map(|u| u.fragment().is_some()).unwrap_or(true) {
                    p.push(format!("oidc.clients[{i}].redirect_uris: {r:?} is not an absolute URL without fragment"));
                }
            }
        }
        if self.code_ttl_secs == 0
            || self.id_token_ttl_secs == 0
            || self.access_token_ttl_secs == 0
            || self.request_ttl_secs == 0
        {
            p.push(
                "oidc: code_ttl_secs, id_token_ttl_secs, access_token_ttl_secs and request_ttl_secs must be positive"
                    .into(),
            );
        }
        if self.max_pending == 0 {
            p.push("oidc.max_pending: must be positive".into());
        }
        p
    }
}
