//! The ENUM directory's registrar API with this provider's bearer token: publishing (`PUT /v1/numbers/{e164}`,
//! `…/key`, `DELETE`), the number listing the lookup mirror syncs from (`GET /v1/numbers`), and number ports
//! (`/v1/ports`, see [`crate::porting`]).

use crate::config::DirectoryConfig;
use crate::number::E164;
use serde_json::json;
use std::time::Duration;
use tincan_common::Secret;
use tincan_enum_core::{MasterKey, Service, ServiceType};

/// Why the directory refused or could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Network failure.
    #[error("directory unreachable: {0}")]
    Http(#[from] reqwest::Error),
    /// The registrar answered with an error status.
    #[error("directory answered {0}")]
    Refused(u16),
    /// Another provider holds the number (409 `number_held_by_other_provider`): it can only come here by a port.
    #[error("another provider holds the number")]
    HeldByOther,
    /// A port request could not be filed or answered (409 `port_in_progress`, `port_closed`,
    /// `objection_window_closed`…): the directory's code.
    #[error("the directory refused the port: {0}")]
    PortRefused(String),
    /// `directory.url` does not make a URL.
    #[error("directory.url is not a URL")]
    BadUrl,
    /// The registrar asks us to slow down (429).
    #[error("directory rate limit; retry in {0:?}")]
    RateLimited(Duration),
    /// The Matrix ID does not make a valid `matrix:` service URI.
    #[error("cannot publish: {0}")]
    Service(#[from] tincan_enum_core::ServiceError),
}

/// A registrar API client.
#[derive(Debug, Clone)]
pub struct DirectoryClient {
    base: String,
    token: Secret,
    http: reqwest::Client,
}

impl DirectoryClient {
    /// `None` when publishing is not configured.
    pub fn from_config(c: &DirectoryConfig) -> Option<Self> {
        if c.url.is_empty() {
            return None;
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("HTTP client");
        Some(Self { base: c.url.trim_end_matches('/').to_owned(), token: c.token.clone(), http })
    }

    /// The Matrix URI published for a user: `matrix:u/localpart:server`.
    pub fn matrix_uri(user_id: &str) -> String {
        format!("matrix:u/{}", user_id.trim_start_matches('@'))
    }

    async fn check(resp: reqwest::Response) -> Result<(), DirectoryError> {
        Self::checked(resp).await.map(drop)
    }

    /// The response if it succeeded; else the error its status and code say.
    async fn checked(resp: reqwest::Response) -> Result<reqwest::Response, DirectoryError> {
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(resp);
        }
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let code = body["error"]["code"].as_str().unwrap_or_default();
        Err(match (status, code) {
            (409, "number_held_by_other_provider") => DirectoryError::HeldByOther,
            (403 | 409, c) if c.starts_with("port_") || c == "objection_window_closed" || c == "not_your_side" => {
                DirectoryError::PortRefused(c.to_owned())
            }
            (409, "number_already_held") => DirectoryError::PortRefused(code.to_owned()),
            _ => DirectoryError::Refused(status),
        })
    }

    /// `POST /v1/ports`: asks for `number`, held by another provider, for `user_id` here (and its master key
    /// when known). Filing again while the request is pending amends it.
    pub async fn file_port(
        &self,
        number: &E164,
        user_id: &str,
        key: Option<&MasterKey>,
    ) -> Result<PortView, DirectoryError> {
        let service = Service::new(ServiceType::Matrix, &Self::matrix_uri(user_id))?;
        let mut body = json!({ "number": number.as_str(), "services": [service] });
        if let Some(key) = key {
            body["ed25519"] = json!(key.to_base64());
        }
        let resp = self
            .http
            .post(format!("{}/v1/ports", self.base))
            .bearer_auth(self.token.expose())
            .json(&body)
            .send()
            .await?;
        Ok(Self::checked(resp).await?.json().await?)
    }

    /// `GET /v1/ports/{id}` (completed first by the directory if its window has ended).
    pub async fn port(&self, id: i64) -> Result<PortView, DirectoryError> {
        let resp =
            self.http.get(format!("{}/v1/ports/{id}", self.base)).bearer_auth(self.token.expose()).send().await?;
        Ok(Self::checked(resp).await?.json().await?)
    }

    /// `GET /v1/ports?open=true`: the pending ports we are a party of, either side.
    pub async fn open_ports(&self) -> Result<Vec<PortView>, DirectoryError> {
        #[derive(serde::Deserialize)]
        struct List {
            ports: Vec<PortView>,
        }
        let resp =
            self.http.get(format!("{}/v1/ports?open=true", self.base)).bearer_auth(self.token.expose()).send().await?;
        Ok(Self::checked(resp).await?.json::<List>().await?.ports)
    }

    /// `POST /v1/ports/{id}/release` (the losing side): the number moves at once.
    pub async fn release_port(&self, id: i64) -> Result<PortView, DirectoryError> {
        let resp = self
            .http
            .post(format!("{}/v1/ports/{id}/release", self.base))
            .bearer_auth(self.token.expose())
            .send()
            .await?;
        Ok(Self::checked(resp).await?.json().await?)
    }

    /// `POST /v1/ports/{id}/object` (the losing side) with a reason from the directory's list.
    pub async fn object_port(&self, id: i64, reason: &str) -> Result<PortView, DirectoryError> {
        let resp = self
            .http
            .post(format!("{}/v1/ports/{id}/object", self.base))
            .bearer_auth(self.token.expose())
            .json(&json!({ "reason": reason }))
            .send()
            .await?;
        Ok(Self::checked(resp).await?.json().await?)
    }

    /// Publishes number → Matrix user.
    pub async fn publish(&self, number: &E164, user_id: &str) -> Result<(), DirectoryError> {
        let service = Service::new(ServiceType::Matrix, &Self::matrix_uri(user_id))?;
        let body = json!({ "services": [service] });
        let resp = self
            .http
            .put(format!("{}/v1/numbers/{}", self.base, number.as_str()))
            .bearer_auth(self.token.expose())
            .json(&body)
            .send()
            .await?;
        Self::check(resp).await
    }

    /// Publishes the user's master cross-signing key (unpadded base64 ed25519).
    pub async fn publish_key(&self, number: &E164, key: &MasterKey) -> Result<(), DirectoryError> {
        let resp = self
            .http
            .put(format!("{}/v1/numbers/{}/key", self.base, number.as_str()))
            .bearer_auth(self.token.expose())
            .json(&json!({"ed25519": key.to_base64()}))
            .send()
            .await?;
        Self::check(resp).await
    }

    /// One page of the directory's number list (every provider's numbers, ordered), after `after`.
    pub async fn list(&self, after: Option<&str>, limit: u32) -> Result<ListPage, DirectoryError> {
        let mut url = url::Url::parse(&format!("{}/v1/numbers", self.base)).map_err(|_| DirectoryError::BadUrl)?;
        url.query_pairs_mut().append_pair("limit", &limit.to_string());
        if let Some(after) = after {
            url.query_pairs_mut().append_pair("after", after);
        }
        let req = self.http.get(url).bearer_auth(self.token.expose());
        let resp = req.send().await?;
        if resp.status().as_u16() == 429 {
            let secs = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            return Err(DirectoryError::RateLimited(Duration::from_secs(secs)));
        }
        if !resp.status().is_success() {
            return Err(DirectoryError::Refused(resp.status().as_u16()));
        }
        Ok(resp.json().await?)
    }

    /// Removes the number's record.
    pub async fn remove(&self, number: &E164) -> Result<(), DirectoryError> {
        let resp = self
            .http
            .delete(format!("{}/v1/numbers/{}", self.base, number.as_str()))
            .bearer_auth(self.token.expose())
            .send()
            .await?;
        Self::check(resp).await
    }
}

/// A port request as the directory returns it (the fields the extension reads).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PortView {
    /// Its id.
    pub id: i64,
    /// The number.
    pub number: String,
    /// The losing provider's name.
    pub losing: String,
    /// The gaining provider's name.
    pub gaining: String,
    /// `pending`, `completed`, `objected` or `cancelled`.
    pub state: String,
    /// The objection's reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// The end of the losing provider's window, Unix milliseconds.
    pub window_ends_at_ms: i64,
    /// What the gaining provider publishes once the number moves (its Matrix user among them).
    #[serde(default)]
    pub services: Vec<tincan_enum_core::Service>,
    /// The key published with the move, when the request carries one (`{"ed25519": …}`).
    #[serde(default)]
    pub key: Option<serde_json::Value>,
    /// When the request was filed, Unix milliseconds.
    #[serde(default)]
    pub filed_at_ms: i64,
}

/// One page of `GET /v1/numbers`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ListPage {
    /// The numbers, ordered.
    pub numbers: Vec<Listed>,
    /// The cursor of the next page; `None` on the last.
    pub next: Option<String>,
}

/// A registered number and the zone version of its last change.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Listed {
    /// E.164.
    pub number: String,
    /// Zone version.
    pub version: i64,
}
