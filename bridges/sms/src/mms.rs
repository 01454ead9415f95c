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
//! - Incoming messages: the carrier `POST`s a form to the number's messaging webhook (the operator sets it to
//!   `{link_base_url}/mms/inbound`) with `MessageSid`, `AccountSid`, `From`, `To`, `Body`, `NumMedia` and, for
//!   each attachment `N`, `MediaUrlN` and `MediaContentTypeN`, signed as the callbacks are. The media are
//!   fetched from `MediaUrlN` with the account's HTTP Basic auth when the URL is the API's own (Twilio's media
//!   may require it), following redirects (reqwest drops the credentials on a redirect to another host). The
//!   answer is TwiML: an empty `<Response/>` (no automatic reply).

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

/// A message the carrier received for one of the provider's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMms {
    /// The carrier's id of the message (`MessageSid`): the same when the carrier sends the webhook again.
    pub id: String,
    /// The sender (E.164).
    pub from: String,
    /// The provider's number it was sent to (E.164).
    pub to: String,
    /// The text (may be empty).
    pub body: String,
    /// Its attachments, in order.
    pub media: Vec<IncomingMedia>,
}

/// An attachment of an [`IncomingMms`], to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMedia {
    /// Where the carrier serves it.
    pub url: String,
    /// Its MIME type as the carrier declared it.
    pub content_type: Option<String>,
}

/// Why an attachment could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Larger than the limit (the size when the carrier said it, else the limit).
    #[error("larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// The carrier refused it or it is gone; fetching again does not help.
    #[error("the carrier did not give it: {0}")]
    Refused(String),
    /// Unreachable or failed now.
    #[error("the carrier could not give it now: {0}")]
    Temporary(String),
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

    /// The message an incoming-message webhook's (verified) parameters carry; why not, when they carry none.
    fn incoming(&self, params: &[(String, String)]) -> Result<IncomingMms, String>;

    /// The bytes and MIME type of an incoming attachment at `url`, at most `max_bytes` of them.
    async fn fetch_media(&self, url: &str, max_bytes: u64) -> Result<(Option<String>, Vec<u8>), FetchError>;
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

    fn incoming(&self, params: &[(String, String)]) -> Result<IncomingMms, String> {
        let need = |name: &str| param(params, name).filter(|v| !v.is_empty()).ok_or(format!("no {name}"));
        let account = need("AccountSid")?;
        if account != self.account {
            return Err(format!("for another account ({account})"));
        }
        let count: usize = match param(params, "NumMedia").filter(|n| !n.is_empty()) {
            None => 0,
            Some(n) => n.parse().map_err(|_| format!("NumMedia {n:?} is not a count"))?,
        };
        if count > MAX_MEDIA {
            return Err(format!("{count} attachments (at most {MAX_MEDIA})"));
        }
        let media = (0..count)
            .map(|i| {
                Ok(IncomingMedia {
                    url: need(&format!("MediaUrl{i}"))?.to_owned(),
                    content_type: param(params, &format!("MediaContentType{i}"))
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(IncomingMms {
            id: need("MessageSid")?.to_owned(),
            from: need("From")?.to_owned(),
            to: need("To")?.to_owned(),
            body: param(params, "Body").unwrap_or_default().to_owned(),
            media,
        })
    }

    async fn fetch_media(&self, url: &str, max_bytes: u64) -> Result<(Option<String>, Vec<u8>), FetchError> {
        let parsed = url::Url::parse(url).map_err(|e| FetchError::Refused(format!("{url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(FetchError::Refused(format!("{url:?} is not an HTTP URL")));
        }
        let mut req = self.http.get(parsed.clone());
        // The credentials go only to the API itself, never to a host the webhook names.
        if url::Url::parse(&self.api_url).is_ok_and(|api| api.origin() == parsed.origin()) {
            req = req.basic_auth(&self.account, Some(self.token.expose()));
        }
        let mut resp = req.send().await.map_err(|e| FetchError::Temporary(e.without_url().to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            let why = format!("HTTP {}", status.as_u16());
            return Err(if status.as_u16() == 429 || status.is_server_error() {
                FetchError::Temporary(why)
            } else {
                FetchError::Refused(why)
            });
        }
        if resp.content_length().is_some_and(|n| n > max_bytes) {
            return Err(FetchError::TooLarge { max: max_bytes });
        }
        let mimetype = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned())
            .filter(|v| !v.is_empty());
        let mut data = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::Temporary(e.without_url().to_string()))? {
            if (data.len() + chunk.len()) as u64 > max_bytes {
                return Err(FetchError::TooLarge { max: max_bytes });
            }
            data.extend_from_slice(&chunk);
        }
        Ok((mimetype, data))
    }
}

/// The most attachments one incoming message may have (Twilio's limit is 10).
pub const MAX_MEDIA: usize = 10;

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
    fn an_incoming_message_is_read_from_the_webhooks_form() {
        let t = Twilio::new("http://127.0.0.1:9", "AC1", Secret::new("x")).unwrap();
        let base = [("MessageSid", "MM1"), ("AccountSid", "AC1"), ("From", "+447400123456"), ("To", "+447400000001")];
        let with = |more: &[(&str, &str)]| t.incoming(&p(&[&base[..], more].concat()));
        let m = with(&[
            ("Body", "hi"),
            ("NumMedia", "2"),
            ("MediaUrl0", "http://a/0"),
            ("MediaContentType0", "image/png"),
            ("MediaUrl1", "http://a/1"),
        ])
        .unwrap();
        assert_eq!(
            (m.id.as_str(), m.from.as_str(), m.to.as_str(), m.body.as_str()),
            ("MM1", "+447400123456", "+447400000001", "hi")
        );
        assert_eq!(
            m.media,
            [
                IncomingMedia { url: "http://a/0".into(), content_type: Some("image/png".into()) },
                IncomingMedia { url: "http://a/1".into(), content_type: None }
            ]
        );
        assert_eq!(with(&[]).unwrap().media, []);
        assert_eq!(with(&[("NumMedia", "1")]).unwrap_err(), "no MediaUrl0");
        assert_eq!(with(&[("NumMedia", "x")]).unwrap_err(), "NumMedia \"x\" is not a count");
        assert_eq!(with(&[("NumMedia", "11")]).unwrap_err(), "11 attachments (at most 10)");
        assert_eq!(t.incoming(&p(&base[1..])).unwrap_err(), "no MessageSid");
        let other = p(&[("MessageSid", "MM1"), ("AccountSid", "AC2"), ("From", "+1"), ("To", "+2")]);
        assert_eq!(t.incoming(&other).unwrap_err(), "for another account (AC2)");
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
