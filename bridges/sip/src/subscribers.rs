//! Who holds which number here, and the SIP devices they registered: answered by the sign-up extension
//! (`tincan-ext`, the authority on accounts and their per-device SIP passwords) through its internal API, or
//! by fixed config for development.
//!
//! The extension's internal API (bearer `subscribers.ext_token`):
//! - `GET /_tincan/internal/v1/numbers/{e164}` → `{"user_id": "@…"}` (404: nobody here holds it);
//! - `GET /_tincan/internal/v1/users/{user_id}/numbers` → `{"numbers": ["+…"]}`;
//! - `GET /_tincan/internal/v1/sip/devices/{username}` → `{"username", "number", "user_id", "ha1_md5",
//!   "ha1_sha256"}` (404: no such device, or revoked).
//!
//! Answers are cached for a few seconds: a revoked device stops registering and ringing within that time.

use crate::config::SubscribersConfig;
use async_trait::async_trait;
use ruma::{OwnedUserId, UserId};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tincan_sip_core::digest::Algorithm;

/// Why the subscriber lookup failed (as opposed to answering "nobody").
#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    /// The extension could not be reached or answered with an error.
    #[error("sign-up extension: {0}")]
    Ext(String),
}

/// Lookup result.
pub type Result<T, E = SubscriberError> = std::result::Result<T, E>;

/// A SIP device's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The digest username.
    pub username: String,
    /// The number it registers under.
    pub number: String,
    /// Its owner.
    pub user_id: OwnedUserId,
    /// HA1 per algorithm.
    pub ha1: Vec<(Algorithm, String)>,
}

/// The subscriber directory.
#[async_trait]
pub trait Subscribers: Send + Sync + std::fmt::Debug {
    /// The Matrix user who holds `number` (E.164) here.
    async fn user_of(&self, number: &str) -> Result<Option<OwnedUserId>>;
    /// The numbers `user` holds here; the first is the one their messages and calls go out from.
    async fn numbers_of(&self, user: &UserId) -> Result<Vec<String>>;
    /// A device by digest username (`None`: unknown or revoked).
    async fn device(&self, username: &str) -> Result<Option<Device>>;
}

/// Fixed bindings from config.
#[derive(Debug)]
pub struct StaticSubscribers {
    numbers: Vec<(String, OwnedUserId)>,
    devices: HashMap<String, Device>,
}

impl StaticSubscribers {
    /// From `subscribers.static_numbers` and `static_devices` (validated), digest realm `realm`.
    pub fn from_config(c: &SubscribersConfig, realm: &str) -> Self {
        let numbers: Vec<(String, OwnedUserId)> =
            c.static_numbers.iter().filter_map(|(n, u)| Some((n.clone(), UserId::parse(u.as_str()).ok()?))).collect();
        let devices = c
            .static_devices
            .iter()
            .filter_map(|(name, d)| {
                let user_id = numbers.iter().find(|(n, _)| *n == d.number)?.1.clone();
                let pw = d.password.expose();
                Some((
                    name.clone(),
                    Device {
                        username: name.clone(),
                        number: d.number.clone(),
                        user_id,
                        ha1: vec![
                            (Algorithm::Md5, Algorithm::Md5.ha1(name, realm, pw)),
                            (Algorithm::Sha256, Algorithm::Sha256.ha1(name, realm, pw)),
                        ],
                    },
                ))
            })
            .collect();
        Self { numbers, devices }
    }
}

#[async_trait]
impl Subscribers for StaticSubscribers {
    async fn user_of(&self, number: &str) -> Result<Option<OwnedUserId>> {
        Ok(self.numbers.iter().find(|(n, _)| n == number).map(|(_, u)| u.clone()))
    }

    async fn numbers_of(&self, user: &UserId) -> Result<Vec<String>> {
        Ok(self.numbers.iter().filter(|(_, u)| u == user).map(|(n, _)| n.clone()).collect())
    }

    async fn device(&self, username: &str) -> Result<Option<Device>> {
        Ok(self.devices.get(username).cloned())
    }
}

/// The extension's internal API, with a short cache.
#[derive(Debug)]
pub struct ExtSubscribers {
    http: reqwest::Client,
    base: String,
    token: String,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Cached)>>,
}

#[derive(Debug, Clone)]
enum Cached {
    User(Option<OwnedUserId>),
    Numbers(Vec<String>),
    Device(Option<Device>),
}

#[derive(Deserialize)]
struct UserOf {
    user_id: OwnedUserId,
}

#[derive(Deserialize)]
struct NumbersOf {
    numbers: Vec<String>,
}

#[derive(Deserialize)]
struct DeviceOf {
    username: String,
    number: String,
    user_id: OwnedUserId,
    ha1_md5: String,
    ha1_sha256: String,
}

impl ExtSubscribers {
    /// A client of the extension at `base` presenting `token`; answers cached for `ttl`.
    pub fn new(base: &str, token: &str, ttl: Duration) -> Self {
        Self {
            http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default(),
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            ttl,
            cache: Mutex::default(),
        }
    }

    /// The cached answer for `key`, else `fetch`'s (then cached).
    async fn cached<F>(&self, key: String, fetch: F) -> Result<Cached>
    where
        F: std::future::Future<Output = Result<Cached>>,
    {
        {
            let cache = self.cache.lock().expect("not poisoned");
            if let Some((at, v)) = cache.get(&key)
                && at.elapsed() < self.ttl
            {
                return Ok(v.clone());
            }
        }
        let v = fetch.await?;
        let mut cache = self.cache.lock().expect("not poisoned");
        if cache.len() > 50_000 {
            cache.retain(|_, (at, _)| at.elapsed() < self.ttl);
        }
        cache.insert(key, (Instant::now(), v.clone()));
        Ok(v)
    }

    /// `GET` of the internal API path made of `segments` (each percent-encoded).
    async fn get<T: serde::de::DeserializeOwned>(&self, segments: &[&str]) -> Result<Option<T>> {
        let mut url = reqwest::Url::parse(&self.base).map_err(|e| SubscriberError::Ext(format!("ext_url: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| SubscriberError::Ext("ext_url cannot have a path".into()))?
            .pop_if_empty()
            .extend(["_tincan", "internal", "v1"])
            .extend(segments);
        let path = url.path().to_owned();
        let resp = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| SubscriberError::Ext(e.to_string()))?;
        match resp.status() {
            s if s.is_success() => resp.json().await.map(Some).map_err(|e| SubscriberError::Ext(e.to_string())),
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            s => Err(SubscriberError::Ext(format!("{path}: HTTP {s}"))),
        }
    }
}

#[async_trait]
impl Subscribers for ExtSubscribers {
    async fn user_of(&self, number: &str) -> Result<Option<OwnedUserId>> {
        let fetch = async { Ok(Cached::User(self.get::<UserOf>(&["numbers", number]).await?.map(|u| u.user_id))) };
        match self.cached(format!("n:{number}"), fetch).await? {
            Cached::User(u) => Ok(u),
            _ => Ok(None),
        }
    }

    async fn numbers_of(&self, user: &UserId) -> Result<Vec<String>> {
        let fetch = async {
            let n = self.get::<NumbersOf>(&["users", user.as_str(), "numbers"]).await?;
            Ok(Cached::Numbers(n.map(|n| n.numbers).unwrap_or_default()))
        };
        match self.cached(format!("u:{user}"), fetch).await? {
            Cached::Numbers(n) => Ok(n),
            _ => Ok(Vec::new()),
        }
    }

    async fn device(&self, username: &str) -> Result<Option<Device>> {
        let fetch = async {
            let d = self.get::<DeviceOf>(&["sip", "devices", username]).await?;
            Ok(Cached::Device(d.map(|d| Device {
                username: d.username,
                number: d.number,
                user_id: d.user_id,
                ha1: vec![(Algorithm::Md5, d.ha1_md5), (Algorithm::Sha256, d.ha1_sha256)],
            })))
        };
        match self.cached(format!("d:{username}"), fetch).await? {
            Cached::Device(d) => Ok(d),
            _ => Ok(None),
        }
    }
}

/// The subscriber directory the config asks for: the extension when `ext_url` is set, with the static
/// bindings consulted first.
pub fn from_config(c: &SubscribersConfig, realm: &str) -> Arc<dyn Subscribers> {
    let fixed = StaticSubscribers::from_config(c, realm);
    if c.ext_url.is_empty() {
        Arc::new(fixed)
    } else {
        Arc::new(Layered {
            first: fixed,
            then: ExtSubscribers::new(&c.ext_url, c.ext_token.expose(), Duration::from_secs(5)),
        })
    }
}

#[derive(Debug)]
struct Layered {
    first: StaticSubscribers,
    then: ExtSubscribers,
}

#[async_trait]
impl Subscribers for Layered {
    async fn user_of(&self, number: &str) -> Result<Option<OwnedUserId>> {
        match self.first.user_of(number).await? {
            Some(u) => Ok(Some(u)),
            None => self.then.user_of(number).await,
        }
    }

    async fn numbers_of(&self, user: &UserId) -> Result<Vec<String>> {
        let mut n = self.first.numbers_of(user).await?;
        for m in self.then.numbers_of(user).await? {
            if !n.contains(&m) {
                n.push(m);
            }
        }
        Ok(n)
    }

    async fn device(&self, username: &str) -> Result<Option<Device>> {
        match self.first.device(username).await? {
            Some(d) => Ok(Some(d)),
            None => self.then.device(username).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StaticDevice;
    use tincan_common::Secret;

    #[tokio::test]
    async fn static_bindings() {
        let mut c = SubscribersConfig::default();
        c.static_numbers.insert("+442079460001".into(), "@alice:hs.test".into());
        c.static_devices
            .insert("alice-desk".into(), StaticDevice { number: "+442079460001".into(), password: Secret::new("pw") });
        let s = StaticSubscribers::from_config(&c, "sip.test");
        let alice = UserId::parse("@alice:hs.test").unwrap();
        assert_eq!(s.user_of("+442079460001").await.unwrap().as_deref(), Some(alice.as_ref()));
        assert_eq!(s.user_of("+442079460002").await.unwrap(), None);
        assert_eq!(s.numbers_of(&alice).await.unwrap(), ["+442079460001"]);
        let d = s.device("alice-desk").await.unwrap().unwrap();
        assert_eq!(d.ha1[0], (Algorithm::Md5, Algorithm::Md5.ha1("alice-desk", "sip.test", "pw")));
        assert!(s.device("mallory").await.unwrap().is_none());
    }
}
