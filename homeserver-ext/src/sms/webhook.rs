//! Generic HTTP webhook: `POST {url}` with `{"to": "+…", "text": "…"}` and an optional bearer token.

use super::{SmsError, SmsSender};
use crate::number::E164;
use std::time::Duration;
use tincan_common::Secret;

/// Sends SMS through an HTTP endpoint (an SMS provider's API or a small adapter in front of one).
#[derive(Debug)]
pub struct WebhookSender {
    url: String,
    token: Secret,
    http: reqwest::Client,
}

impl WebhookSender {
    /// A sender posting to `url`.
    pub fn new(url: &str, token: Secret) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("HTTP client");
        Self { url: url.to_owned(), token, http }
    }
}

#[async_trait::async_trait]
impl SmsSender for WebhookSender {
    async fn send(&self, to: &E164, text: &str) -> Result<(), SmsError> {
        let mut req = self.http.post(&self.url).json(&serde_json::json!({"to": to.as_str(), "text": text}));
        if !self.token.is_empty() {
            req = req.bearer_auth(self.token.expose());
        }
        req.send().await?.error_for_status()?;
        Ok(())
    }
}
