//! Application-service backend: `POST /register` (`m.login.application_service`) in the extension's
//! namespace, then `POST /login` as that user for a fresh device.

use super::{Caller, HomeserverConnector, HomeserverError, Login, call};
use crate::config::ExtConfig;
use ruma::api::client::account::register::{self, LoginType};
use ruma::api::client::session::login::{self, v3::LoginInfo};
use ruma::api::client::uiaa::{MatrixUserIdentifier, UserIdentifier};
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

    fn caller(&self) -> Caller<'_> {
        Caller::Appservice(self.as_token.expose(), None)
    }
}

#[async_trait::async_trait]
impl HomeserverConnector for AppserviceConnector {
    async fn ensure_user(&self, localpart: &str) -> Result<(), HomeserverError> {
        let mut request = register::v3::Request::new();
        request.login_type = Some(LoginType::ApplicationService);
        request.username = Some(localpart.to_owned());
        request.inhibit_login = true;
        match call(&self.http, &self.homeserver_url, self.caller(), request).await {
            Ok(_) => Ok(()),
            Err(HomeserverError::Refused { errcode, .. }) if errcode == "M_USER_IN_USE" => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn login(&self, localpart: &str) -> Result<Login, HomeserverError> {
        let identifier = UserIdentifier::Matrix(MatrixUserIdentifier::new(localpart.to_owned()));
        let request =
            login::v3::Request::new(LoginInfo::ApplicationService(login::v3::ApplicationService::new(identifier)));
        let r = call(&self.http, &self.homeserver_url, self.caller(), request).await?;
        Ok(Login::Session { access_token: r.access_token, device_id: r.device_id.into() })
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
