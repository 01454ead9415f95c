//! Application-service backend: `POST /register` (`m.login.application_service`) in the extension's
//! namespace, then `POST /login` as that user for a fresh device.

use super::{HomeserverConnector, HomeserverError, Login, refused};
use crate::config::ExtConfig;
use serde_json::json;
use tincan_common::Secret;
use tincan_common::appservice::{Registration, users_with_prefix};

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

/// The appservice registration file for the homeserver (`tincan-ext registration`): the extension's users
/// (`@<localpart_prefix>.*`) exclusively, nothing else.
pub fn registration_yaml(config: &ExtConfig) -> String {
    let h = &config.homeserver;
    Registration {
        id: &h.appservice_id,
        url: &h.extension_url,
        as_token: h.as_token.expose(),
        hs_token: h.hs_token.expose(),
        sender_localpart: &h.sender_localpart,
        users: vec![users_with_prefix(&h.localpart_prefix, &config.server_name)],
        ..Default::default()
    }
    .to_yaml()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_namespace() {
        let c = ExtConfig { server_name: "hs.test".into(), ..Default::default() };
        let y = registration_yaml(&c);
        assert!(y.contains("  users:\n    - exclusive: true\n      regex: \"@tc_.*:hs\\\\.test\"\n"), "{y}");
        assert_eq!(y.matches("regex:").count(), 1, "{y}");
    }
}
