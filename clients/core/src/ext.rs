//! HTTP client of the homeserver extension (`tincan-ext`): phone sign-up, the registration lock, master-key
//! publishing, closing an account left behind by a port, and the Identity Service v2 hashed lookup.

use crate::error::{ClientError, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use url::Url;

/// `POST /_tincan/client/v1/register/request` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestCodeResponse {
    /// The session id.
    pub sid: String,
    /// Seconds the code stays valid.
    pub expires_in: u64,
    /// Milliseconds before a resend is allowed.
    pub resend_after_ms: u64,
}

/// How to log in to the homeserver, as the extension returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Login {
    /// `org.matrix.login.jwt` with a signed token.
    #[serde(rename = "org.matrix.login.jwt")]
    Jwt {
        /// The JWT.
        token: String,
    },
    /// A session the extension created through the appservice API.
    #[serde(rename = "m.login.application_service")]
    Session {
        /// The access token.
        access_token: String,
        /// The device.
        device_id: String,
    },
}

/// `POST /_tincan/client/v1/register/verify` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyResponse {
    /// The account's Matrix ID.
    pub user_id: String,
    /// Where to log in.
    pub homeserver_url: String,
    /// How to log in.
    pub login: Login,
    /// Whether the account was created now.
    #[serde(default)]
    pub new_account: bool,
    /// When another provider held the number: the port this sign-in asked the directory for.
    #[serde(default)]
    pub port: Option<PortStatus>,
}

/// A port of the number to the provider we signed in at, as `register/verify` reports it: until it completes
/// the account exists but the number does not lead to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    /// The directory's id of the request.
    pub id: i64,
    /// `pending` while the provider holding the number may still answer; `completed`, `objected` or
    /// `cancelled` after.
    pub state: String,
    /// The other provider's objection reason, when it objected.
    #[serde(default)]
    pub reason: Option<String>,
    /// When the number moves at the latest if the other provider does not object, Unix milliseconds.
    pub window_ends_at_ms: i64,
}

/// `GET /_tincan/client/v1/registration_lock`: the account's registration lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationLock {
    /// Whether the account has a lock (a sign-in by SMS code then also needs its PIN).
    pub enabled: bool,
    /// How long the lock holds without further activity of a device of the account, milliseconds.
    #[serde(default)]
    pub lapses_in_ms: Option<u64>,
}

const REGISTRATION_LOCK: &str = "/_tincan/client/v1/registration_lock";

/// The extension's HTTP API.
#[derive(Debug, Clone)]
pub struct ExtClient {
    base: Url,
    http: reqwest::Client,
}

impl ExtClient {
    /// A client of the extension at `base` (e.g. `http://127.0.0.1:8090`).
    pub fn new(base: Url, http: reqwest::Client) -> Self {
        Self { base, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    /// Asks for an SMS code.
    pub async fn request_code(
        &self,
        phone: &str,
        client_secret: &str,
        send_attempt: u64,
    ) -> Result<RequestCodeResponse> {
        let body = json!({"phone": phone, "client_secret": client_secret, "send_attempt": send_attempt});
        decode(self.http.post(self.url("/_tincan/client/v1/register/request")).json(&body).send().await?).await
    }

    /// Exchanges the code (and the registration-lock PIN, when the account has a lock) for a homeserver login.
    pub async fn verify_code(
        &self,
        sid: &str,
        client_secret: &str,
        code: &str,
        pin: Option<&str>,
    ) -> Result<VerifyResponse> {
        let mut body = json!({"sid": sid, "client_secret": client_secret, "code": code});
        if let Some(pin) = pin {
            body["pin"] = json!(pin);
        }
        decode(self.http.post(self.url("/_tincan/client/v1/register/verify")).json(&body).send().await?).await
    }

    /// Sets (or replaces) the account's registration-lock PIN.
    pub async fn set_registration_lock(&self, access_token: &str, pin: &str) -> Result<()> {
        let r = self
            .http
            .put(self.url(REGISTRATION_LOCK))
            .bearer_auth(access_token)
            .json(&json!({"pin": pin}))
            .send()
            .await?;
        decode::<Value>(r).await.map(drop)
    }

    /// Removes the account's registration lock.
    pub async fn remove_registration_lock(&self, access_token: &str) -> Result<()> {
        decode::<Value>(self.http.delete(self.url(REGISTRATION_LOCK)).bearer_auth(access_token).send().await?)
            .await
            .map(drop)
    }

    /// Whether the account has a registration lock; the call is the activity that keeps it from lapsing.
    pub async fn registration_lock(&self, access_token: &str) -> Result<RegistrationLock> {
        decode(self.http.get(self.url(REGISTRATION_LOCK)).bearer_auth(access_token).send().await?).await
    }

    /// Closes (deactivates) the account whose token this is, once its number moved away to another provider
    /// by a completed port → its Matrix ID. The extension's refusals are typed (see
    /// [`ClientError::NotMovedAway`], [`ClientError::PortPending`], [`ClientError::CloseNotSupported`]).
    pub async fn close_account(&self, access_token: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Closed {
            closed: String,
        }
        let r = self
            .http
            .post(self.url("/_tincan/client/v1/account/close"))
            .bearer_auth(access_token)
            .json(&json!({}))
            .send()
            .await?;
        Ok(decode::<Closed>(r).await.map_err(ClientError::of_close)?.closed)
    }

    /// Publishes our master cross-signing key (unpadded base64) for our numbers.
    pub async fn publish_master_key(&self, access_token: &str, ed25519: &str) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Published {
            numbers: Vec<String>,
        }
        let r = self
            .http
            .put(self.url("/_tincan/client/v1/keys/master"))
            .bearer_auth(access_token)
            .json(&json!({"ed25519": ed25519}))
            .send()
            .await?;
        Ok(decode::<Published>(r).await?.numbers)
    }

    /// Identity Service `account/register` with an OpenID token from the homeserver → an IS access token.
    pub async fn is_register(&self, openid: &Value) -> Result<String> {
        #[derive(Deserialize)]
        struct Token {
            token: String,
        }
        let r = self.http.post(self.url("/_matrix/identity/v2/account/register")).json(openid).send().await?;
        Ok(decode::<Token>(r).await?.token)
    }

    /// Identity Service `hash_details` → the current pepper (and checks that `sha256` is offered).
    pub async fn is_pepper(&self, is_token: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Details {
            lookup_pepper: String,
        }
        let r = self.http.get(self.url("/_matrix/identity/v2/hash_details")).bearer_auth(is_token).send().await?;
        Ok(decode::<Details>(r).await?.lookup_pepper)
    }

    /// Identity Service `lookup` with `sha256` hashes → hash to Matrix ID, for the bound ones.
    pub async fn is_lookup(&self, is_token: &str, pepper: &str, hashes: &[String]) -> Result<BTreeMap<String, String>> {
        #[derive(Deserialize)]
        struct Mappings {
            mappings: BTreeMap<String, String>,
        }
        let body = json!({"algorithm": "sha256", "pepper": pepper, "addresses": hashes});
        let r =
            self.http.post(self.url("/_matrix/identity/v2/lookup")).bearer_auth(is_token).json(&body).send().await?;
        Ok(decode::<Mappings>(r).await?.mappings)
    }
}

/// A success body, or the Matrix error body as [`ClientError::Extension`].
async fn decode<T: DeserializeOwned>(r: reqwest::Response) -> Result<T> {
    let status = r.status();
    if status.is_success() {
        return Ok(r.json().await?);
    }
    let body: Value = r.json().await.unwrap_or(Value::Null);
    Err(ClientError::Extension {
        status: status.as_u16(),
        errcode: body["errcode"].as_str().unwrap_or("M_UNKNOWN").to_owned(),
        error: body["error"].as_str().unwrap_or(status.canonical_reason().unwrap_or("error")).to_owned(),
        retry_after_ms: body["retry_after_ms"].as_u64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_types_deserialize() {
        let v: VerifyResponse = serde_json::from_value(json!({
            "user_id": "@tc_x:hs.test", "homeserver_url": "http://127.0.0.1:1",
            "login": {"type": "org.matrix.login.jwt", "token": "t"}, "new_account": true
        }))
        .unwrap();
        assert!(matches!(v.login, Login::Jwt { token } if token == "t"));
        assert_eq!(v.port, None);
        let v: VerifyResponse = serde_json::from_value(json!({
            "user_id": "@tc_x:hs.test", "homeserver_url": "http://127.0.0.1:1",
            "login": {"type": "org.matrix.login.jwt", "token": "t"}, "new_account": true,
            "port": {"id": 7, "state": "pending", "window_ends_at_ms": 1000}
        }))
        .unwrap();
        let port = PortStatus { id: 7, state: "pending".into(), reason: None, window_ends_at_ms: 1000 };
        assert_eq!(v.port, Some(port));
        let l: Login = serde_json::from_value(
            json!({"type": "m.login.application_service", "access_token": "a", "device_id": "D"}),
        )
        .unwrap();
        assert!(matches!(l, Login::Session { .. }));
    }
}
