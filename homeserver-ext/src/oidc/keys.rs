//! `GET /oauth2/keys.json` (the JWKS) and ID-token signing with the configured keys (jsonwebtoken on aws-lc-rs).

use super::Provider;
use super::config::{SigningAlg, SigningKeyConfig};
use axum::extract::State;
use axum::response::IntoResponse;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::sync::Arc;

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a PEM private key for the algorithm.
    #[error("{path} is not a PEM private key for {alg:?}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The algorithm it was meant for.
        alg: SigningAlg,
        /// What jsonwebtoken said.
        source: jsonwebtoken::errors::Error,
    },
}

/// A loaded signing key and its public half as a JWK.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Jwk,
    retired: bool,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads and parses the key file.
    pub fn load(conf: &SigningKeyConfig) -> Result<Self, KeyError> {
        let path = conf.private_key_file.clone();
        let pem = std::fs::read(&path).map_err(|source| KeyError::Read { path: path.clone(), source })?;
        let parse = |source| KeyError::Parse { path: path.clone(), alg: conf.alg, source };
        let (alg, key) = match conf.alg {
            SigningAlg::RS256 => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem).map_err(parse)?),
            SigningAlg::ES256 => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem).map_err(parse)?),
        };
        let mut jwk = Jwk::from_encoding_key(&key, alg).map_err(parse)?;
        jwk.common.key_id = Some(conf.kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        // A key that parses but cannot sign (a too-short RSA key) is refused here rather than at the first
        // sign-in.
        jsonwebtoken::encode(&Header::new(alg), &serde_json::json!({}), &key).map_err(parse)?;
        Ok(Self { kid: conf.kid.clone(), alg, key, jwk, retired: conf.retired })
    }
}

/// The provider's keys: one signs, all are published.
#[derive(Debug, Clone)]
pub struct Keys {
    keys: Vec<SigningKey>,
}

impl Keys {
    /// Loads every configured key.
    pub fn load(conf: &[SigningKeyConfig]) -> Result<Self, KeyError> {
        Ok(Self { keys: conf.iter().map(SigningKey::load).collect::<Result<_, _>>()? })
    }

    /// The published key set.
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: self.keys.iter().map(|k| k.jwk.clone()).collect() }
    }

    /// The algorithms of the published keys (for discovery).
    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut algs: Vec<&'static str> = Vec::new();
        for k in &self.keys {
            let name = match k.alg {
                Algorithm::ES256 => "ES256",
                _ => "RS256",
            };
            if !algs.contains(&name) {
                algs.push(name);
            }
        }
        algs
    }

    /// Signs `claims` with the current key.
    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        let k = self.keys.iter().find(|k| !k.retired).expect("validated: one key is not retired");
        let mut header = Header::new(k.alg);
        header.kid = Some(k.kid.clone());
        jsonwebtoken::encode(&header, claims, &k.key)
    }
}

/// `GET /oauth2/keys.json`.
pub async fn handler(State(p): State<Arc<Provider>>) -> impl IntoResponse {
    ([(axum::http::header::CACHE_CONTROL, "public, max-age=300")], axum::Json(p.keys.jwks()))
}
