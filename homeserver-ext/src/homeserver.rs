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
use ruma::UserId;
use ruma::api::auth_scheme::{AuthScheme, SendAccessToken};
use ruma::api::client::account::whoami;
use ruma::api::client::device::get_devices;
use ruma::api::{AppserviceUserIdentity, OutgoingRequest, SupportedVersions};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, LazyLock};
use tincan_common::Clock;
use tincan_common::matrix_client::{self, CallError, EndpointRefusal, PathInput, Refused, Target};

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
    /// The request could not be built, or the answer was not the endpoint's response.
    #[error("homeserver call failed: {0}")]
    Unexpected(String),
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

impl From<Refused> for HomeserverError {
    fn from(r: Refused) -> Self {
        Self::Refused { status: r.status(), errcode: r.errcode() }
    }
}

impl<E: EndpointRefusal> From<CallError<E>> for HomeserverError {
    fn from(e: CallError<E>) -> Self {
        match e {
            CallError::Server(e) => e.into_refused().into(),
            CallError::Transport(e) => Self::Http(e),
            CallError::Build(e) | CallError::Response(e) => Self::Unexpected(e),
        }
    }
}

/// The versions the extension builds request paths for.
static VERSIONS: LazyLock<SupportedVersions> = LazyLock::new(matrix_client::supported_versions);

/// Who a call to the homeserver is from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Caller<'a> {
    /// No token (`login`).
    Anonymous,
    /// A user's access token (a client's, or a session the extension signed in).
    User(&'a str),
    /// The extension's appservice token, for itself or, with `Some`, acting for one of its users
    /// (`?user_id=`: no login and no device).
    Appservice(&'a str, Option<&'a UserId>),
}

/// One call to the homeserver at `base_url` with ruma's request and response types
/// ([`tincan_common::matrix_client`]); an error answer is [`HomeserverError::Refused`].
pub(crate) async fn call<R>(
    http: &reqwest::Client,
    base_url: &str,
    caller: Caller<'_>,
    request: R,
) -> Result<R::IncomingResponse, HomeserverError>
where
    R: OutgoingRequest,
    R::EndpointError: EndpointRefusal,
    R::PathBuilder: PathInput,
    for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
{
    Ok(call_keeping_error(http, base_url, caller, request).await?)
}

/// [`call`], with an error answer as the endpoint's error type (a rate limit's `retry_after`, say); the other
/// failures become a [`HomeserverError`] with `?` or `.into()`.
pub(crate) async fn call_keeping_error<R>(
    http: &reqwest::Client,
    base_url: &str,
    caller: Caller<'_>,
    request: R,
) -> Result<R::IncomingResponse, CallError<R::EndpointError>>
where
    R: OutgoingRequest,
    R::PathBuilder: PathInput,
    for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
{
    let target = Target { http, base_url, versions: &VERSIONS };
    // `Always`: endpoints whose token is optional (`deactivate`, `login`) get it too.
    let (token, identity) = match caller {
        Caller::Anonymous => (SendAccessToken::None, AppserviceUserIdentity::default()),
        Caller::User(token) | Caller::Appservice(token, None) => {
            (SendAccessToken::Always(token), AppserviceUserIdentity::default())
        }
        Caller::Appservice(token, Some(user)) => (SendAccessToken::Always(token), AppserviceUserIdentity::new(user)),
    };
    matrix_client::send(target, request, token, identity).await
}

/// The user an access token belongs to (`GET /_matrix/client/v3/account/whoami`); `None` for an unknown token.
pub async fn whoami(
    http: &reqwest::Client,
    homeserver_url: &str,
    token: &str,
) -> Result<Option<String>, HomeserverError> {
    match call(http, homeserver_url, Caller::User(token), whoami::v3::Request::new()).await {
        Ok(r) => Ok(Some(r.user_id.into())),
        Err(HomeserverError::Refused { status: 401, .. }) => Ok(None),
        Err(e) => Err(e),
    }
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
    let h = &config.homeserver;
    let seen = match h.backend {
        HomeserverBackend::Appservice if !h.as_token.is_empty() => {
            let user = <&UserId>::try_from(user_id).map_err(|_| HomeserverError::Malformed("a user ID"))?;
            let caller = Caller::Appservice(h.as_token.expose(), Some(user));
            match call(http, &config.homeserver_url, caller, get_devices::v3::Request::new()).await {
                Ok(r) => r
                    .devices
                    .into_iter()
                    .filter(|d| d.device_id.as_str() != crate::porting::old_account::DEVICE_ID)
                    .filter_map(|d| d.last_seen_ts)
                    .map(|ts| i64::from(ts.get()))
                    .max(),
                Err(HomeserverError::Refused { status: 404, .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        HomeserverBackend::Jwt if !h.admin_token.is_empty() => admin_last_seen(http, config, user_id).await?,
        _ => return Ok(None),
    };
    Ok(seen.map(|ms| ms.div_euclid(1000)))
}

/// [`last_seen`] through Synapse's admin API (`GET /_synapse/admin/v2/users/{user_id}/devices`, which ruma does
/// not describe), in milliseconds.
async fn admin_last_seen(
    http: &reqwest::Client,
    config: &ExtConfig,
    user_id: &str,
) -> Result<Option<i64>, HomeserverError> {
    let base = config.homeserver_url.trim_end_matches('/');
    let mut url = url::Url::parse(base).map_err(|_| HomeserverError::Malformed("a homeserver_url that is a URL"))?;
    url.path_segments_mut()
        .map_err(|()| HomeserverError::Malformed("a homeserver_url that is a URL"))?
        .pop_if_empty()
        .extend(["_synapse", "admin", "v2", "users", user_id, "devices"]);
    let resp = http.get(url).bearer_auth(config.homeserver.admin_token.expose()).send().await?;
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
        .max())
}
