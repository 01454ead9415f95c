//! `org.matrix.login.jwt`: HS256 tokens signed with the secret shared with the homeserver.

use super::{HomeserverConnector, HomeserverError, Login};
use crate::config::HomeserverConfig;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use tincan_common::{Clock, Secret};

/// Issues JWT logins; the homeserver creates the user on first login.
#[derive(Debug)]
pub struct JwtConnector {
    secret: Secret,
    issuer: String,
    ttl_secs: u64,
    clock: Arc<dyn Clock>,
}

impl JwtConnector {
    /// A connector signing with `config.jwt_secret`.
    pub fn new(config: &HomeserverConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            secret: config.jwt_secret.clone(),
            issuer: config.jwt_issuer.clone(),
            ttl_secs: config.jwt_ttl_secs,
            clock,
        }
    }

    /// The compact JWS for `sub = localpart`, valid from now for the configured lifetime.
    pub fn token(&self, localpart: &str) -> String {
        let now = self.clock.unix_seconds();
        let mut claims = serde_json::json!({"sub": localpart, "iat": now, "nbf": now, "exp": now + self.ttl_secs});
        if !self.issuer.is_empty() {
            claims["iss"] = self.issuer.clone().into();
        }
        sign_hs256(self.secret.expose().as_bytes(), &claims)
    }
}

/// `base64url(header).base64url(claims).base64url(HMAC-SHA256)`.
pub fn sign_hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

#[async_trait::async_trait]
impl HomeserverConnector for JwtConnector {
    async fn ensure_user(&self, _localpart: &str) -> Result<(), HomeserverError> {
        Ok(())
    }

    async fn login(&self, localpart: &str) -> Result<Login, HomeserverError> {
        Ok(Login::Jwt { token: self.token(localpart) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tincan_common::MockClock;

    #[test]
    fn token_shape_and_signature() {
        let c = HomeserverConfig {
            jwt_secret: Secret::new("0123456789abcdef0123"),
            jwt_issuer: "tincan".into(),
            ..Default::default()
        };
        let j = JwtConnector::new(&c, Arc::new(MockClock::at(1_000)));
        let t = j.token("tc_abc");
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "tc_abc");
        assert_eq!(claims["exp"], 1_120);
        assert_eq!(claims["iss"], "tincan");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef0123").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    }
}
