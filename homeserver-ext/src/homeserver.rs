//! The homeserver connection: how an account is created and how its owner logs in, behind one trait.
//!
//! - [`JwtConnector`] (default): signs a short-lived HS256 JWT the client exchanges at the homeserver's
//!   `/login` as `org.matrix.login.jwt` (Synapse `jwt_config`, which creates the user on first login).
//! - [`AppserviceConnector`]: registers the user in the extension's exclusive appservice namespace and logs
//!   in with `m.login.application_service`, handing the client a ready session. Cost: the homeserver then
//!   pushes the extension every event of every room those users are in (appservice transactions), which the
//!   extension acknowledges and drops.

mod appservice;
mod jwt;

pub use appservice::{AppserviceConnector, registration_yaml};
pub use jwt::JwtConnector;

use crate::config::{ExtConfig, HomeserverBackend};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tincan_common::Clock;

/// A failure talking to the homeserver.
#[derive(Debug, thiserror::Error)]
pub enum HomeserverError {
    /// The homeserver could not be reached.
    #[error("homeserver unreachable: {0}")]
    Http(#[from] reqwest::Error),
    /// The homeserver answered with an error.
    #[error("homeserver answered {status}: {errcode}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Matrix `errcode` (or empty).
        errcode: String,
    },
    /// The homeserver's answer lacked a field.
    #[error("homeserver answer without {0}")]
    Malformed(&'static str),
}

/// What a client needs to log in to the homeserver itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Login {
    /// `POST /_matrix/client/v3/login {"type": "org.matrix.login.jwt", "token": …}`.
    #[serde(rename = "org.matrix.login.jwt")]
    Jwt {
        /// The signed JWT.
        token: String,
    },
    /// A session already created through the appservice; use it as is.
    #[serde(rename = "m.login.application_service")]
    Session {
        /// The access token.
        access_token: String,
        /// The new device.
        device_id: String,
    },
}

/// Creates accounts and logins on the homeserver.
#[async_trait::async_trait]
pub trait HomeserverConnector: Send + Sync + std::fmt::Debug {
    /// Makes sure `@localpart:server` exists (a no-op where the first login creates it).
    async fn ensure_user(&self, localpart: &str) -> Result<(), HomeserverError>;
    /// Issues a login for `@localpart:server`; every call yields a new device.
    async fn login(&self, localpart: &str) -> Result<Login, HomeserverError>;
}

/// Builds the configured connector.
pub fn from_config(config: &ExtConfig, clock: Arc<dyn Clock>) -> Arc<dyn HomeserverConnector> {
    match config.homeserver.backend {
        HomeserverBackend::Jwt => Arc::new(JwtConnector::new(&config.homeserver, clock)),
        HomeserverBackend::Appservice => Arc::new(AppserviceConnector::new(config)),
    }
}

/// Reads a Matrix error answer.
pub(crate) async fn refused(resp: reqwest::Response) -> HomeserverError {
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    HomeserverError::Refused { status, errcode: body["errcode"].as_str().unwrap_or_default().to_owned() }
}

/// The user an access token belongs to (`GET /_matrix/client/v3/account/whoami`); `None` for an unknown token.
pub async fn whoami(
    http: &reqwest::Client,
    homeserver_url: &str,
    token: &str,
) -> Result<Option<String>, HomeserverError> {
    let resp = http
        .get(format!("{}/_matrix/client/v3/account/whoami", homeserver_url.trim_end_matches('/')))
        .bearer_auth(token)
        .send()
        .await?;
    if resp.status().as_u16() == 401 {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(refused(resp).await);
    }
    let body: serde_json::Value = resp.json().await?;
    Ok(Some(body["user_id"].as_str().ok_or(HomeserverError::Malformed("user_id"))?.to_owned()))
}

/// When a device of `user_id` last used the homeserver (Unix seconds), as the homeserver records it
/// (`last_seen_ts`, which every client's requests update, a stock client's too), not counting the extension's
/// own watch of a moved-away account (its [`crate::porting::old_account::DEVICE_ID`] with the JWT backend; with
/// the appservice backend the watch makes no device). Asked with the appservice's token for its users
/// (`GET /_matrix/client/v3/devices?user_id=…`), or with `homeserver.admin_token` through Synapse's admin API
/// (`GET /_synapse/admin/v2/users/{user_id}/devices`); `None` when neither is configured, the homeserver does
/// not know the user, or no device was ever seen.
pub async fn last_seen(
    http: &reqwest::Client,
    config: &ExtConfig,
    user_id: &str,
) -> Result<Option<i64>, HomeserverError> {
    let base = config.homeserver_url.trim_end_matches('/');
    let h = &config.homeserver;
    let malformed = |_| HomeserverError::Malformed("a homeserver_url that is a URL");
    let request = match h.backend {
        HomeserverBackend::Appservice if !h.as_token.is_empty() => {
            let mut url = url::Url::parse(&format!("{base}/_matrix/client/v3/devices")).map_err(malformed)?;
            url.query_pairs_mut().append_pair("user_id", user_id);
            http.get(url).bearer_auth(h.as_token.expose())
        }
        HomeserverBackend::Jwt if !h.admin_token.is_empty() => {
            let mut url = url::Url::parse(base).map_err(malformed)?;
            url.path_segments_mut()
                .map_err(|()| HomeserverError::Malformed("a homeserver_url that is a URL"))?
                .pop_if_empty()
                .extend(["_synapse", "admin", "v2", "users", user_id, "devices"]);
            http.get(url).bearer_auth(h.admin_token.expose())
        }
        _ => return Ok(None),
    };
    let resp = request.send().await?;
    if resp.status().as_u16() == 404 {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(refused(resp).await);
    }
    let body: serde_json::Value = resp.json().await?;
    let devices = body["devices"].as_array().ok_or(HomeserverError::Malformed("devices"))?;
    Ok(devices
        .iter()
        .filter(|d| d["device_id"].as_str() != Some(crate::porting::old_account::DEVICE_ID))
        .filter_map(|d| d["last_seen_ts"].as_i64())
        .max()
        .map(|ms| ms.div_euclid(1000)))
}
