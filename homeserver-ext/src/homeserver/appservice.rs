//! Application-service backend: `POST /register` (`m.login.application_service`) in the extension's
//! namespace, then `POST /login` as that user for a fresh device.

use super::{HomeserverConnector, HomeserverError, Login, refused};
use crate::config::ExtConfig;
use serde_json::json;
use tincan_common::Secret;

/// Creates users and sessions with the appservice's `as_token`.
#[derive(Debug)]
pub struct AppserviceConnector {
    homeserver_url: String,
    as_token: Secret,
    http: reqwest::Client,
}

impl AppserviceConnector {
    /// A connector for the configured homeserver.
    pub fn new(config: &ExtConfig) -> Self {
        Self {
            homeserver_url: config.homeserver_url.trim_end_matches('/').to_owned(),
            as_token: config.homeserver.as_token.clone(),
            http: reqwest::Client::new(),
        }
    }
}

#[async_trait::async_trait]
impl HomeserverConnector for AppserviceConnector {
    async fn ensure_user(&self, localpart: &str) -> Result<(), HomeserverError> {
        let resp = self
            .http
            .post(format!("{}/_matrix/client/v3/register", self.homeserver_url))
            .bearer_auth(self.as_token.expose())
            .json(&json!({"type": "m.login.application_service", "username": localpart, "inhibit_login": true}))
            .send()
            .await?;
        if resp.status().is_success() {
            return Ok(());
        }
        match refused(resp).await {
            HomeserverError::Refused { errcode, .. } if errcode == "M_USER_IN_USE" => Ok(()),
            e => Err(e),
        }
    }

    async fn login(&self, localpart: &str) -> Result<Login, HomeserverError> {
        let resp = self
            .http
            .post(format!("{}/_matrix/client/v3/login", self.homeserver_url))
            .bearer_auth(self.as_token.expose())
            .json(&json!({
                "type": "m.login.application_service",
                "identifier": {"type": "m.id.user", "user": localpart},
            }))
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(refused(resp).await);
        }
        let body: serde_json::Value = resp.json().await?;
        Ok(Login::Session {
            access_token: body["access_token"].as_str().ok_or(HomeserverError::Malformed("access_token"))?.into(),
            device_id: body["device_id"].as_str().ok_or(HomeserverError::Malformed("device_id"))?.into(),
        })
    }
}

/// The appservice registration file for the homeserver (`tincan-ext registration`).
pub fn registration_yaml(config: &ExtConfig) -> String {
    let h = &config.homeserver;
    let user_regex = format!("@{}.*:{}", regex_escape(&h.localpart_prefix), regex_escape(&config.server_name));
    // JSON is valid YAML; serde_json keeps this free of a YAML dependency.
    let reg = json!({
        "id": h.appservice_id,
        "url": h.extension_url,
        "as_token": h.as_token.expose(),
        "hs_token": h.hs_token.expose(),
        "sender_localpart": h.sender_localpart,
        "rate_limited": false,
        "namespaces": {
            "users": [{"exclusive": true, "regex": user_regex}],
            "aliases": [],
            "rooms": [],
        },
    });
    serde_json::to_string_pretty(&reg).expect("JSON")
}

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_ascii_alphanumeric() || c == '_' { vec![c] } else { vec!['\\', c] }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_namespace() {
        let c = ExtConfig { server_name: "hs.test".into(), ..Default::default() };
        let v: serde_json::Value = serde_json::from_str(&registration_yaml(&c)).unwrap();
        assert_eq!(v["namespaces"]["users"][0]["regex"], "@tc_.*:hs\\.test");
        assert_eq!(v["namespaces"]["users"][0]["exclusive"], true);
    }
}
