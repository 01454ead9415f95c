//! MMS through a carrier's HTTP API (`sms.mms.api_url`): images that SMPP cannot carry.
//!
//! [`MmsCarrier`] is what the bridge needs of such an API: send one message with media from one of the
//! provider's numbers, and read the carrier's status callbacks. [`Twilio`] implements it for Twilio's
//! Programmable Messaging API (the form many carriers copy; documented at
//! <https://www.twilio.com/docs/messaging/api/message-resource>):
//!
//! - `POST {api_url}/2010-04-01/Accounts/{account}/Messages.json`, HTTP Basic auth `account:token`, a form with
//!   `From`, `To`, `Body`, `MediaUrl` (the carrier fetches the image from it: the bridge's image link) and
//!   `StatusCallback`; `201` with `{"sid": …, "status": "queued"}`, or an error `{"code": …, "message": …}`.
//!   4xx refusals are permanent (the carrier's message is the reason), 429 and 5xx temporary.
//! - Status callbacks: `POST` of a form with `MessageSid`, `MessageStatus` (`queued`, `sending`, `sent`,
//!   `delivered`, `undelivered`, `failed`…) and `ErrorCode`, signed in `X-Twilio-Signature`: Base64 of
//!   HMAC-SHA1 keyed with the auth token over the callback URL followed by every form parameter's name and
//!   value, sorted by name. The callback URL carries the Matrix user, the number and the event, so a restart
//!   loses nothing; an unsigned or wrongly signed callback is refused.

use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use std::time::Duration;
use tincan_common::Secret;

/// One MMS to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMms {
    /// The provider's number it is sent from (E.164).
    pub from: String,
    /// The recipient (E.164).
    pub to: String,
    /// The caption (may be empty).
    pub body: String,
    /// Where the carrier fetches the media.
    pub media_url: String,
    /// Where the carrier reports what became of the message.
    pub status_callback: String,
}

/// Why the carrier did not take an MMS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MmsError {
    /// It refused it; sending again does not help.
    #[error("the carrier refused the MMS: {0}")]
    Rejected(String),
    /// It could not take it now (unreachable, overloaded, rate-limited).
    #[error("the carrier could not take the MMS now: {0}")]
    Temporary(String),
}

/// What a status callback says of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MmsStatus {
    /// Still on its way (`queued`, `sending`, `accepted`…): nothing to show.
    Pending,
    /// Handed to the recipient's network.
    Sent,
    /// On the recipient's phone.
    Delivered,
    /// Not delivered, and why.
    Failed(String),
}

/// A carrier's HTTP messaging API.
#[async_trait]
pub trait MmsCarrier: Send + Sync + std::fmt::Debug + 'static {
    /// Sends `mms`; the carrier's id of the message.
    async fn send(&self, mms: &OutgoingMms) -> Result<String, MmsError>;

    /// Whether a callback to `url` (as the carrier called it) with `params` and `signature` comes from the
    /// carrier.
    fn verify_callback(&self, url: &str, params: &[(String, String)], signature: &str) -> bool;

    /// What a callback's parameters say.
    fn callback_status(&self, params: &[(String, String)]) -> MmsStatus;
}

/// Twilio's Programmable Messaging API.
#[derive(Debug)]
pub struct Twilio {
    http: reqwest::Client,
    api_url: String,
    account: String,
    token: Secret,
}

impl Twilio {
    /// A client of the API at `api_url` (`https://api.twilio.com`) for `account`, authenticated with `token`.
    pub fn new(api_url: &str, account: &str, token: Secret) -> Result<Twilio, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Twilio { http, api_url: api_url.trim_end_matches('/').to_owned(), account: account.to_owned(), token })
    }
}

/// `X-Twilio-Signature` of a request to `url` with form `params`, for `token`.
pub fn twilio_signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[async_trait]
impl MmsCarrier for Twilio {
    async fn send(&self, mms: &OutgoingMms) -> Result<String, MmsError> {
        let url = format!("{}/2010-04-01/Accounts/{}/Messages.json", self.api_url, self.account);
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("From", &mms.from)
            .append_pair("To", &mms.to)
            .append_pair("Body", &mms.body)
            .append_pair("MediaUrl", &mms.media_url)
            .append_pair("StatusCallback", &mms.status_callback)
            .finish();
        let resp = self
            .http
            .post(url)
            .basic_auth(&self.account, Some(self.token.expose()))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| MmsError::Temporary(e.without_url().to_string()))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        if status.is_success() {
            return body
                .get("sid")
                .and_then(|s| s.as_str())
                .map(str::to_owned)
                .ok_or_else(|| MmsError::Temporary(format!("the carrier answered {status} without a sid")));
        }
        let message = body.get("message").and_then(|m| m.as_str()).unwrap_or("no reason given");
        let why = match body.get("code").and_then(|c| c.as_u64()) {
            Some(code) => format!("{message} (error {code})"),
            None => format!("{message} (HTTP {})", status.as_u16()),
        };
        if status.as_u16() == 429 || status.is_server_error() {
            Err(MmsError::Temporary(why))
        } else {
            Err(MmsError::Rejected(why))
        }
    }

    fn verify_callback(&self, url: &str, params: &[(String, String)], signature: &str) -> bool {
        let want = twilio_signature(self.token.expose(), url, params);
        // Equal length, compared in full (the signature is public once sent; this avoids an early exit).
        want.len() == signature.len() && want.bytes().zip(signature.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
    }

    fn callback_status(&self, params: &[(String, String)]) -> MmsStatus {
        match param(params, "MessageStatus").unwrap_or_default() {
            "sent" => MmsStatus::Sent,
            "delivered" | "read" => MmsStatus::Delivered,
            "undelivered" | "failed" | "canceled" => {
                let status = param(params, "MessageStatus").unwrap_or_default();
                MmsStatus::Failed(match param(params, "ErrorCode").filter(|c| !c.is_empty()) {
                    Some(code) => format!("{status} (carrier error {code})"),
                    None => status.to_owned(),
                })
            }
            _ => MmsStatus::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    #[test]
    fn the_signature_is_twilios() {
        // The example of Twilio's webhook security documentation: auth token 12345, this URL and form.
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(twilio_signature("12345", url, &params), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        let t = Twilio::new("http://127.0.0.1:9", "AC1", Secret::new("12345")).unwrap();
        assert!(t.verify_callback(url, &params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        assert!(!t.verify_callback(url, &params, "0/KCTR6DLpKmkAf8muzZqo1nDgR="));
        assert!(!t.verify_callback(
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }

    #[test]
    fn callback_statuses() {
        let t = Twilio::new("http://127.0.0.1:9", "AC1", Secret::new("x")).unwrap();
        let s = |pairs: &[(&str, &str)]| t.callback_status(&p(pairs));
        assert_eq!(s(&[("MessageStatus", "queued")]), MmsStatus::Pending);
        assert_eq!(s(&[("MessageStatus", "sent")]), MmsStatus::Sent);
        assert_eq!(s(&[("MessageStatus", "delivered")]), MmsStatus::Delivered);
        assert_eq!(
            s(&[("MessageStatus", "undelivered"), ("ErrorCode", "30003")]),
            MmsStatus::Failed("undelivered (carrier error 30003)".into())
        );
        assert_eq!(s(&[("MessageStatus", "failed")]), MmsStatus::Failed("failed".into()));
        assert_eq!(s(&[]), MmsStatus::Pending);
    }
}
