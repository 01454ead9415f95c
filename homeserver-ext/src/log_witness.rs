//! The directory's transparency log, as the mirror checks each answer against it before serving it: the
//! number's inclusion proof must verify under the pinned log key (`directory.log_key`) and say what DNS said,
//! and its tree head must be consistent with the last head this extension accepted, which is then advanced. A
//! directory that serves a record its log does not hold, or a log that forks for this extension (one tree for
//! it, another for everyone else), is caught here; the number is left out of the answer.
//!
//! The last accepted head is kept in the extension's database (`log_heads`, per log key) once a store is attached
//! ([`LogWitness::with_store`], as the server does), so a restart does not trust the first head it meets again;
//! a head that cannot be stored is not accepted (the answer is left out).

use crate::config::DirectoryConfig;
use crate::store::{LogHeadRepository, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tincan_enum_lookup::Resolution;
use tincan_enum_lookup::log::{LogCheckError, check_consistent, check_logged, fetch_consistency, fetch_inclusion};
use tincan_translog::{SignedTreeHead, TreeHeadVerifier};

/// How long one request to the log API may take.
const LOG_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the log settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum LogConfigError {
    /// No key is configured although lookups are on.
    #[error("directory.log_key: required when directory.dns_servers is set (the directory's GET /v1/log/sth log_key)")]
    MissingKey,
    /// The key is not an Ed25519 public key in base64.
    #[error("directory.log_key: {0}")]
    Key(tincan_translog::Error),
    /// The log URL is not a URL.
    #[error("directory.log_url: {0:?} is not a URL")]
    Url(String),
}

/// Why an answer was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The log does not back the answer, or forked.
    #[error(transparent)]
    Log(#[from] LogCheckError),
    /// The last accepted head could not be read or stored.
    #[error("the last accepted tree head: {0}")]
    Store(#[from] StoreError),
}

/// The last accepted head, and whether it was read from the store yet.
#[derive(Debug, Default)]
struct Seen {
    loaded: bool,
    head: Option<SignedTreeHead>,
}

/// The log's address and key, and the last tree head accepted from it.
#[derive(Debug)]
pub struct LogWitness {
    url: String,
    key: TreeHeadVerifier,
    http: reqwest::Client,
    /// Held while a new head is compared with it, so two checks never both advance it from the same head.
    seen: tokio::sync::Mutex<Seen>,
    /// Where the last accepted head is kept across restarts.
    store: Option<Arc<dyn LogHeadRepository>>,
}

/// `Authorization: Bearer <directory.token>` for the log API when it is the registrar API's own server (same
/// scheme, host and port as `directory.url`): the directory then counts this provider's proof requests against
/// the provider's limit instead of the public per-address one, which a busy extension would exhaust. Never sent to
/// a log API elsewhere (a mirror or proxy must not learn the provider's token); `None` without a token.
fn provider_auth(d: &DirectoryConfig, log_url: &str) -> Option<reqwest::header::HeaderValue> {
    if d.token.is_empty() {
        return None;
    }
    let (log, registrar) = (url::Url::parse(log_url).ok()?, url::Url::parse(&d.url).ok()?);
    if log.origin() != registrar.origin() {
        return None;
    }
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", d.token.expose())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

impl LogWitness {
    /// The witness for `d`: `None` when directory lookups are off (`dns_servers` empty); with lookups on, the
    /// key is required. The log API is at `log_url`, or at the registrar API's `url` when that is empty.
    pub fn from_config(d: &DirectoryConfig) -> Result<Option<LogWitness>, LogConfigError> {
        if d.dns_servers.is_empty() {
            return Ok(None);
        }
        if d.log_key.trim().is_empty() {
            return Err(LogConfigError::MissingKey);
        }
        let key = TreeHeadVerifier::from_base64(d.log_key.trim()).map_err(LogConfigError::Key)?;
        let url = if d.log_url.is_empty() { &d.url } else { &d.log_url };
        if url::Url::parse(url).is_err() {
            return Err(LogConfigError::Url(url.clone()));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(auth) = provider_auth(d, url) {
            headers.insert(reqwest::header::AUTHORIZATION, auth);
        }
        let http = reqwest::Client::builder()
            .timeout(LOG_REQUEST_TIMEOUT)
            .default_headers(headers)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Ok(Some(LogWitness { url: url.clone(), key, http, seen: tokio::sync::Mutex::default(), store: None }))
    }

    /// Keeps the last accepted head in `store` (read on the first check, written whenever it advances).
    pub fn with_store(mut self, store: Arc<dyn LogHeadRepository>) -> Self {
        self.store = Some(store);
        self
    }

    /// Checks `resolution` against the log (see the module doc). `Ok` means the answer may be served.
    pub async fn check(&self, resolution: &Resolution) -> Result<(), WitnessError> {
        let proof = fetch_inclusion(&self.http, &self.url, &resolution.number).await?;
        check_logged(resolution, proof.as_ref(), &self.key)?;
        // No entry and an unregistered answer: nothing served, nothing to compare.
        let Some(new) = proof.map(|p| p.sth) else { return Ok(()) };
        let mut seen = self.seen.lock().await;
        if !seen.loaded {
            if let Some(store) = &self.store
                && let Some(json) = store.log_head(&self.key.to_base64()).await?
            {
                seen.head = Some(serde_json::from_str(&json).map_err(|_| StoreError::Corrupt("log_heads.sth"))?);
            }
            seen.loaded = true;
        }
        if let Some(old) = seen.head.as_ref() {
            let (from, to) = (old.head.tree_size.min(new.head.tree_size), old.head.tree_size.max(new.head.tree_size));
            let proof = if from == to || from == 0 {
                None
            } else {
                Some(fetch_consistency(&self.http, &self.url, from, to).await?)
            };
            check_consistent(old, &new, proof.as_ref())?;
            if new.head.tree_size <= old.head.tree_size {
                return Ok(());
            }
        }
        if let Some(store) = &self.store {
            let json = serde_json::to_string(&new).expect("a tree head serialises");
            store.set_log_head(&self.key.to_base64(), &json).await?;
        }
        seen.head = Some(new);
        Ok(())
    }

    /// The last tree head accepted, if any.
    pub async fn seen(&self) -> Option<SignedTreeHead> {
        self.seen.lock().await.head.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_token_goes_only_to_the_registrars_own_log_api() {
        let mut d = config("", "");
        d.url = "https://directory.example/".into();
        d.token = tincan_common::Secret::new("provider-token");
        let auth = provider_auth(&d, "https://directory.example").expect("same origin");
        assert_eq!(auth.to_str().unwrap(), "Bearer provider-token");
        assert!(auth.is_sensitive());
        assert!(provider_auth(&d, "https://log-mirror.example/").is_none(), "another host");
        assert!(provider_auth(&d, "http://directory.example/").is_none(), "another scheme");
        assert!(provider_auth(&d, "https://directory.example:8443/").is_none(), "another port");
        d.token = tincan_common::Secret::default();
        assert!(provider_auth(&d, "https://directory.example/").is_none(), "no token");
    }

    fn config(log_key: &str, log_url: &str) -> DirectoryConfig {
        DirectoryConfig {
            url: "http://127.0.0.1:9/".into(),
            dns_servers: vec!["127.0.0.1:53".into()],
            log_key: log_key.into(),
            log_url: log_url.into(),
            ..DirectoryConfig::default()
        }
    }

    #[test]
    fn the_key_is_required_with_lookups_and_the_url_defaults_to_the_registrar_api() {
        let key = tincan_translog::TreeHeadSigner::from_seed(&[3; 32]).verifier().to_base64();
        assert!(LogWitness::from_config(&DirectoryConfig::default()).unwrap().is_none(), "lookups off: no log");
        assert!(matches!(LogWitness::from_config(&config("", "")), Err(LogConfigError::MissingKey)));
        assert!(matches!(LogWitness::from_config(&config("short", "")), Err(LogConfigError::Key(_))));
        assert!(matches!(LogWitness::from_config(&config(&key, "not a url")), Err(LogConfigError::Url(_))));
        let w = LogWitness::from_config(&config(&key, "")).unwrap().unwrap();
        assert_eq!(w.url, "http://127.0.0.1:9/");
        let w = LogWitness::from_config(&config(&key, "http://127.0.0.1:8/")).unwrap().unwrap();
        assert_eq!((w.url.as_str(), w.key.to_base64()), ("http://127.0.0.1:8/", key));
    }
}
